"""Articulated people: figures with head, hair, torso, arms and legs in varied proportions, poses,
colours and textures, on cluttered backgrounds, sometimes occluded. Exact labels come from the
same masks that paint the pixels: per-pixel part labels (parsing) and 14 keypoints (pose)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .draw import Canvas, background, capsule, ellipse, finish, skin_tone, texture

PARTS = ("background", "hair", "face", "torso", "arms", "legs")
JOINTS = ("head_top", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
          "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")
# Limbs as joint pairs: the skeleton drawn in pictures and the part-affinity fields of the pose model.
LIMBS = ((0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13))
HAIR, FACE, TORSO, ARMS, LEGS = 1, 2, 3, 4, 5


@dataclass
class Scene:
    image: np.ndarray        # H x W x 3 float32 in [0, 1]
    parts: np.ndarray        # H x W uint8, values index PARTS
    keypoints: np.ndarray    # P x 14 x 3: x, y, visibility (0 outside, 1 occluded, 2 visible)


def _rot(v, ang):
    c, s = np.cos(ang), np.sin(ang)
    return np.array([v[0] * c - v[1] * s, v[0] * s + v[1] * c])


def _skeleton(rng: np.random.Generator, cx: float, cy: float, height: float) -> np.ndarray:
    """Joint positions (14 x 2) for a figure whose pelvis centre is (cx, cy) and height ~ `height`."""
    s = height * rng.uniform(0.9, 1.1)
    torso_len, neck_len, head_len = s * rng.uniform(0.26, 0.32), s * 0.05, s * rng.uniform(0.12, 0.15)
    shoulder_w, hip_w = s * rng.uniform(0.09, 0.13), s * rng.uniform(0.05, 0.08)
    upper_arm, forearm = s * rng.uniform(0.14, 0.17), s * rng.uniform(0.13, 0.16)
    thigh, shin = s * rng.uniform(0.2, 0.24), s * rng.uniform(0.2, 0.24)
    lean = rng.normal(0, 0.15)
    up = _rot(np.array([0.0, -1.0]), lean)
    side = np.array([-up[1], up[0]])          # points to the figure's left in image space
    pelvis = np.array([cx, cy])
    neck = pelvis + up * torso_len
    j = np.zeros((14, 2))
    j[1] = neck
    j[0] = neck + _rot(up, rng.normal(0, 0.2)) * (neck_len + head_len)
    for sh, el, wr, sign in ((2, 3, 4, -1), (5, 6, 7, 1)):
        j[sh] = neck + side * sign * shoulder_w - up * s * 0.02
        a1 = rng.uniform(-0.3, 2.6) * sign      # from hanging down to raised overhead
        j[el] = j[sh] + _rot(-up, a1) * upper_arm
        j[wr] = j[el] + _rot(-up, a1 + rng.uniform(-2.0, 2.0)) * forearm
    for hp, kn, an, sign in ((8, 9, 10, -1), (11, 12, 13, 1)):
        j[hp] = pelvis + side * sign * hip_w
        a1 = rng.uniform(-0.2, 0.8) * sign + rng.normal(0, 0.1)
        j[kn] = j[hp] + _rot(-up, a1) * thigh
        j[an] = j[kn] + _rot(-up, a1 + rng.uniform(-0.9, 0.3) * sign) * shin
    return j


def _draw_person(rng: np.random.Generator, canvas: Canvas, j: np.ndarray, height: float) -> None:
    h, w = canvas.h, canvas.w
    s = height
    skin, hair_c = skin_tone(rng), rng.random(3) * np.array([0.5, 0.4, 0.3])
    shirt, pants = rng.random(3), rng.random(3)
    sleeves = rng.random() < 0.5
    limb_r = s * rng.uniform(0.04, 0.055)
    leg_r = s * rng.uniform(0.05, 0.065)

    def fill(box, base):
        y0, y1, x0, x1 = box
        return texture(rng, y1 - y0, x1 - x0, base)

    def draw(mask_fn, base, label):
        box, m = mask_fn
        if box is not None:
            canvas.paint(box, m, fill(box, base), label)

    legs = [(8, 9, 10), (11, 12, 13)]
    arms = [(2, 3, 4), (5, 6, 7)]
    for hp, kn, an in legs:
        draw(capsule(h, w, j[hp], j[kn], leg_r * 1.15, leg_r), pants, LEGS)
        draw(capsule(h, w, j[kn], j[an], leg_r, leg_r * 0.8), pants, LEGS)
        foot = j[an] + np.array([rng.choice([-1, 1]) * leg_r * 1.2, leg_r * 0.3])
        draw(capsule(h, w, j[an], foot, leg_r * 0.6), rng.random(3) * 0.3, LEGS)
    arms_behind = rng.random() < 0.3
    if arms_behind:
        for sh, el, wr in arms:
            draw(capsule(h, w, j[sh], j[el], limb_r), shirt if sleeves else skin, ARMS)
            draw(capsule(h, w, j[el], j[wr], limb_r * 0.9, limb_r * 0.75), skin, ARMS)
    # torso: a tapered capsule from pelvis to neck, as wide as the shoulders
    pelvis = (j[8] + j[11]) / 2
    shoulder_w = np.linalg.norm(j[2] - j[5]) / 2
    draw(capsule(h, w, pelvis, j[1] + (pelvis - j[1]) * 0.1, shoulder_w * 0.85, shoulder_w * 1.05), shirt, TORSO)
    if not arms_behind:
        for sh, el, wr in arms:
            draw(capsule(h, w, j[sh], j[el], limb_r), shirt if sleeves else skin, ARMS)
            draw(capsule(h, w, j[el], j[wr], limb_r * 0.9, limb_r * 0.75), skin, ARMS)
    # head: face ellipse centred between neck and head top, hair cap over its top part
    centre = j[1] + (j[0] - j[1]) * 0.55
    head_h = np.linalg.norm(j[0] - j[1]) * 0.5
    ang = np.arctan2(j[0][1] - j[1][1], j[0][0] - j[1][0]) + np.pi / 2
    draw(ellipse(h, w, centre, (head_h * rng.uniform(0.7, 0.85), head_h), ang), skin, FACE)
    hair_centre = centre + (j[0] - j[1]) / max(np.linalg.norm(j[0] - j[1]), 1e-3) * head_h * rng.uniform(0.3, 0.5)
    draw(ellipse(h, w, hair_centre, (head_h * 0.85, head_h * rng.uniform(0.5, 0.75)), ang), hair_c, HAIR)


def _occlude(rng: np.random.Generator, canvas: Canvas, count: int) -> np.ndarray:
    """Foreground objects over the people (label background); returns the occlusion mask."""
    h, w = canvas.h, canvas.w
    occ = np.zeros((h, w), bool)
    for _ in range(count):
        cx, cy = rng.uniform(0, w), rng.uniform(h * 0.3, h)
        box, m = ellipse(h, w, (cx, cy), (rng.uniform(0.05, 0.15) * w, rng.uniform(0.05, 0.15) * h),
                         rng.uniform(0, np.pi))
        if box is not None:
            y0, y1, x0, x1 = box
            canvas.paint(box, m, texture(rng, y1 - y0, x1 - x0, rng.random(3)), 0)
            occ[y0:y1, x0:x1] |= m
    return occ


def render(rng: np.random.Generator, h: int, w: int, people: int = 1, occluders: int | None = None) -> Scene:
    canvas = Canvas(h, w, labels=True)
    canvas.image[:] = background(rng, h, w, clutter=int(rng.integers(3, 12)))
    skeletons = []
    for k in range(people):
        if people == 1:
            height = h * rng.uniform(0.6, 0.9)
            cx, cy = w * rng.uniform(0.35, 0.65), h * 0.5 + height * rng.uniform(0.05, 0.12)
        else:
            height = h * rng.uniform(0.35, 0.7)
            cx = w * (k + rng.uniform(0.3, 0.7)) / people
            cy = h * rng.uniform(0.45, 0.6) + height * 0.1
        j = _skeleton(rng, cx, cy, height)
        _draw_person(rng, canvas, j, height)
        skeletons.append(j)
    occ = _occlude(rng, canvas, int(rng.integers(0, 3)) if occluders is None else occluders)
    kps = np.zeros((people, len(JOINTS), 3), np.float32)
    for p, j in enumerate(skeletons):
        for k, (x, y) in enumerate(j):
            inside = 0 <= x < w and 0 <= y < h
            vis = 0 if not inside else (1 if occ[int(y), int(x)] else 2)
            kps[p, k] = (x, y, vis)
    return Scene(finish(rng, canvas.image), canvas.labels, kps)


def sample(seed: int, index: int, h: int, w: int, people: int | None = None) -> Scene:
    """Sample `index` of the data set with this seed: deterministic and independent of other samples."""
    rng = np.random.default_rng([seed, index])
    n = people if people is not None else int(rng.integers(1, 4))
    return render(rng, h, w, people=n)
