"""Hands showing rock, paper or scissors: a palm with fingers as tapered capsules, extended or folded by
gesture, at varied scale, rotation and skin tone, with a forearm leaving the hand, on clutter.
Labels: one box (the pixel extent of palm and fingers) and class per hand; 0 to 3 hands per image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .draw import Canvas, background, capsule, ellipse, finish, skin_tone, texture

CLASSES = ("rock", "paper", "scissors")
# Which fingers (thumb, index, middle, ring, little) are extended for each gesture.
EXTENDED = {0: (False, False, False, False, False), 1: (True, True, True, True, True),
            2: (False, True, True, False, False)}


@dataclass
class HandScene:
    image: np.ndarray       # H x W x 3 float32
    boxes: np.ndarray       # N x 4 (x0, y0, x1, y1) pixels
    labels: np.ndarray      # N, indexes CLASSES


def _rot(v, a):
    c, s = np.cos(a), np.sin(a)
    return np.array([v[0] * c - v[1] * s, v[0] * s + v[1] * c])


def draw_hand(rng, canvas: Canvas, centre, size: float, angle: float, gesture: int) -> np.ndarray | None:
    """Paint one hand; returns its box from the painted mask (None if it fell outside the image)."""
    h, w = canvas.h, canvas.w
    skin = skin_tone(rng)
    up = _rot(np.array([0.0, -1.0]), angle)
    side = np.array([-up[1], up[0]])
    c = np.asarray(centre, float)
    palm_w, palm_h = size * 0.36, size * 0.42
    mask = np.zeros((h, w), bool)

    def paint(shape, colour):
        box, m = shape
        if box is None:
            return
        y0, y1, x0, x1 = box
        canvas.paint(box, m, texture(rng, y1 - y0, x1 - x0, colour) * 0.5 + colour * 0.5)
        mask[y0:y1, x0:x1] |= m

    # forearm (not part of the box): drawn first, leaving the palm downwards
    sleeve = rng.random(3)
    box, m = capsule(h, w, c - up * palm_h * 0.6, c - up * size * 1.6, palm_w * 0.75)
    if box is not None:
        y0, y1, x0, x1 = box
        canvas.paint(box, m, texture(rng, y1 - y0, x1 - x0, sleeve if rng.random() < 0.6 else skin))
    paint(ellipse(h, w, c, (palm_w, palm_h), angle), skin)
    extended = EXTENDED[gesture]
    spread = rng.uniform(0.05, 0.18) if gesture == 1 else rng.uniform(0.08, 0.25)
    finger_len = size * rng.uniform(0.42, 0.5)
    finger_r = size * rng.uniform(0.055, 0.07)
    shade = np.clip(skin * 0.85, 0, 1)
    for k in range(1, 5):
        base = c + up * palm_h * 0.75 + side * palm_w * (-0.75 + 0.5 * (k - 1))
        length = finger_len * (1.0, 1.08, 1.0, 0.8)[k - 1]
        if extended[k]:
            direction = _rot(up, (k - 2.5) * spread)
            paint(capsule(h, w, base, base + direction * length, finger_r, finger_r * 0.85), skin)
        else:  # folded: a knuckle bump
            paint(ellipse(h, w, base + up * finger_r * 0.3, (finger_r * 1.1, finger_r * 0.9), angle), shade)
    thumb_base = c - side * palm_w * 0.8 + up * palm_h * 0.1
    if extended[0]:
        paint(capsule(h, w, thumb_base, thumb_base + _rot(up, -0.9 - spread) * finger_len * 0.8, finger_r * 1.1), skin)
    else:
        paint(capsule(h, w, thumb_base, thumb_base + side * palm_w * 0.9 + up * palm_h * 0.3, finger_r * 1.1), shade)
    ys, xs = np.nonzero(mask)
    if len(xs) < 30:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def render(rng: np.random.Generator, h: int, w: int, hands: int) -> HandScene:
    canvas = Canvas(h, w)
    canvas.image[:] = background(rng, h, w, clutter=int(rng.integers(3, 10)))
    boxes, labels = [], []
    for _ in range(hands):
        for _attempt in range(10):
            size = min(h, w) * rng.uniform(0.18, 0.45)
            centre = (rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h)
            # keep hands apart so that boxes overlap little (IoU < 0.3)
            if all(np.hypot(centre[0] - (b[0] + b[2]) / 2, centre[1] - (b[1] + b[3]) / 2) > size * 0.9 for b in boxes):
                break
        gesture = int(rng.integers(len(CLASSES)))
        box = draw_hand(rng, canvas, centre, size, rng.uniform(-0.9, 0.9), gesture)
        if box is not None:
            boxes.append(box)
            labels.append(gesture)
    return HandScene(finish(rng, canvas.image), np.array(boxes, np.float32).reshape(-1, 4),
                     np.array(labels, np.int64))


def sample(seed: int, index: int, h: int, w: int) -> HandScene:
    rng = np.random.default_rng([seed, index])
    n = int(rng.choice([0, 1, 1, 1, 2, 2, 3]))
    return render(rng, h, w, n)
