"""Faces with 68 landmarks in the iBUG-300W layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
mouth 48-67). A parametric 3-D face (random proportions) is rotated (yaw up to three-quarter, pitch,
roll), projected and painted: skin with directional lighting, hair, eyes, brows, nose, lips. The
landmarks are the projected model points, and the face silhouette is drawn through the jaw points,
so the labels are exact."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .draw import Canvas, background, capsule, ellipse, finish, polygon, skin_tone, smooth_noise

LANDMARKS = 68
CROP = 128          # the landmark model's input: a 128x128 face crop
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45


@dataclass
class FaceScene:
    image: np.ndarray        # H x W x 3 float32
    landmarks: np.ndarray    # 68 x 2 pixels
    skin: np.ndarray         # base skin colour (for the fusion demo's tone normalisation)


def canonical_face(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """68 3-D points of a random face (x right, y down, z towards the camera; face half-width ~1)
    and 9 forehead points that close the silhouette."""
    wj, hj = rng.uniform(0.85, 1.0), rng.uniform(1.05, 1.3)
    pts = []
    for t in np.linspace(-np.pi / 2, np.pi / 2, 17):                           # jaw 0-16
        pts.append((wj * np.sin(t) * (0.8 + 0.2 * np.cos(t) ** 0.5), -0.1 + hj * np.cos(t), 0.55 * np.cos(t)))
    brow_y, brow_arch = rng.uniform(-0.55, -0.42), rng.uniform(0.04, 0.12)
    for side in (-1, 1):                                                        # brows 17-21, 22-26
        xs = np.linspace(-0.75, -0.15, 5) if side < 0 else np.linspace(0.15, 0.75, 5)
        for x in xs:
            u = (abs(x) - 0.45) / 0.3
            pts.append((x, brow_y - brow_arch * (1 - u * u), 0.75))
    nose_len = rng.uniform(0.45, 0.6)
    for k in range(4):                                                          # nose bridge 27-30
        pts.append((0.0, -0.3 + nose_len * k / 3, 0.85 + 0.35 * k / 3))
    nw = rng.uniform(0.16, 0.24)
    for x in np.linspace(-nw, nw, 5):                                           # nostrils 31-35
        pts.append((x, -0.3 + nose_len + 0.1 - 0.03 * (1 - (x / nw) ** 2), 0.95 - 0.2 * abs(x / nw)))
    ew, eh, ex, ey = rng.uniform(0.13, 0.18), rng.uniform(0.05, 0.08), rng.uniform(0.36, 0.45), -0.22
    for side in (-1, 1):                                                        # eyes 36-41, 42-47
        cx = side * ex
        ring = [(-ew, 0), (-ew / 3, -eh), (ew / 3, -eh), (ew, 0), (ew / 3, eh), (-ew / 3, eh)]
        for dx, dy in ring:
            pts.append((cx + dx, ey + dy, 0.75))
    mw, mh, my = rng.uniform(0.3, 0.42), rng.uniform(0.08, 0.14), -0.1 + hj * 0.62
    opening = rng.uniform(0, 0.08) if rng.random() < 0.4 else 0.0
    outer = [(-1, 0), (-0.6, -0.8), (-0.25, -1), (0, -0.85), (0.25, -1), (0.6, -0.8), (1, 0),
             (0.6, 0.9), (0.25, 1.1), (0, 1.15), (-0.25, 1.1), (-0.6, 0.9)]
    for u, v in outer:                                                          # mouth outer 48-59
        pts.append((u * mw, my + v * mh + (opening if v > 0 else -opening * 0.3), 0.8 - 0.15 * abs(u)))
    inner = [(-0.8, 0), (-0.3, -0.3), (0, -0.3), (0.3, -0.3), (0.8, 0), (0.3, 0.3), (0, 0.3), (-0.3, 0.3)]
    for u, v in inner:                                                          # mouth inner 60-67
        pts.append((u * mw, my + v * mh * 0.6 + (opening if v > 0 else -opening * 0.3), 0.8))
    forehead = [(wj * np.sin(t), -0.1 - hj * 0.95 * np.cos(t) * 0.9, 0.55 * np.cos(t))
                for t in np.linspace(np.pi / 2, -np.pi / 2, 11)[1:-1]]
    return np.array(pts, np.float64), np.array(forehead, np.float64)


def _cross(a, b) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain; returns hull vertices in order."""
    pts = sorted(map(tuple, np.asarray(points, np.float64)))

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and _cross(np.subtract(out[-1], out[-2]), np.subtract(p, out[-2])) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(half(pts) + half(pts[::-1]))


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def render(rng: np.random.Generator, size: int, yaw_limit: float = 0.6) -> FaceScene:
    pts3, forehead3 = canonical_face(rng)
    rot = rotation(rng.uniform(-yaw_limit, yaw_limit), rng.uniform(-0.2, 0.2), rng.uniform(-0.3, 0.3))
    scale = size * rng.uniform(0.25, 0.33)
    centre = np.array([size / 2, size / 2 + size * 0.03]) + rng.normal(0, size * 0.04, 2)
    project = lambda p: (p @ rot.T)[:, :2] * scale + centre  # noqa: E731
    lm, forehead = project(pts3), project(forehead3)
    canvas = Canvas(size, size)
    canvas.image[:] = background(rng, size, size, clutter=int(rng.integers(2, 8)))
    skin = skin_tone(rng)
    hair = rng.random(3) * np.array([0.45, 0.35, 0.25])
    # hair mass behind the head, then the face silhouette (jaw + forehead) with directional light
    top = forehead.mean(0)
    box, m = ellipse(size, size, top, (scale * 1.15, scale * rng.uniform(0.7, 1.0)), rng.uniform(-0.2, 0.2))
    canvas.paint(box, m, hair)
    # the silhouette is the convex hull of jaw and forehead points, so every jaw landmark lies on the face
    box, m = polygon(size, size, convex_hull(np.concatenate([lm[0:17], forehead])))
    if box is not None:
        y0, y1, x0, x1 = box
        light = rng.normal(0, 1, 2)
        light /= np.linalg.norm(light)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        shade = 1 + 0.25 * (((xx - centre[0]) * light[0] + (yy - centre[1]) * light[1]) / scale)
        tex = skin[None, None, :] * shade[..., None] * (0.95 + 0.1 * smooth_noise(rng, y1 - y0, x1 - x0, 4))
        canvas.paint(box, m, np.clip(tex, 0, 1))
    if rng.random() < 0.7:
        fr = forehead[[0, 2, 4, 6, 8]]
        fb = np.array([lm[24] + (lm[24] - lm[29]) * 0.25, lm[19] + (lm[19] - lm[29]) * 0.25])
        box, m = polygon(size, size, np.concatenate([fr, fb]))
        canvas.paint(box, m, hair)
    brow_c = np.clip(hair * 0.8, 0, 1)
    r = scale * 0.035
    for a, b in zip(range(17, 21), range(18, 22)):
        canvas.paint(*capsule(size, size, lm[a], lm[b], r), brow_c)
    for a, b in zip(range(22, 26), range(23, 27)):
        canvas.paint(*capsule(size, size, lm[a], lm[b], r), brow_c)
    iris = rng.random(3) * 0.5
    for base in (36, 42):
        eye = lm[base:base + 6]
        if _cross(eye[3] - eye[0], eye[1] - eye[0]) == 0:
            continue
        canvas.paint(*polygon(size, size, eye), np.array([0.95, 0.95, 0.92]))
        c = eye.mean(0)
        canvas.paint(*ellipse(size, size, c, (scale * 0.045, scale * 0.045)), iris)
    nose_c = np.clip(skin * 0.75, 0, 1)
    for a, b in zip(range(27, 30), range(28, 31)):
        canvas.paint(*capsule(size, size, lm[a], lm[b], scale * 0.02), np.clip(skin * 0.9, 0, 1))
    for a, b in zip(range(31, 35), range(32, 36)):
        canvas.paint(*capsule(size, size, lm[a], lm[b], scale * 0.025), nose_c)
    lip = np.array([rng.uniform(0.55, 0.8), rng.uniform(0.25, 0.4), rng.uniform(0.3, 0.45)])
    canvas.paint(*polygon(size, size, lm[48:60]), lip)
    canvas.paint(*polygon(size, size, lm[60:68]), np.array([0.25, 0.08, 0.08]))
    return FaceScene(finish(rng, canvas.image, noise=rng.uniform(0.01, 0.06)), lm.astype(np.float32), skin)


def sample(seed: int, index: int, size: int) -> FaceScene:
    return render(np.random.default_rng([seed, index]), size)


def interocular(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks)
    return np.linalg.norm(lm[..., LEFT_EYE_OUTER, :] - lm[..., RIGHT_EYE_OUTER, :], axis=-1)
