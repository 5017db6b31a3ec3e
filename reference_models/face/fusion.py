"""Face fusion in numpy: put a source face onto a target face.

1. Landmarks for both faces from the landmark model (any runner: onnxruntime or a compiled artifact).
2. Alignment: the least-squares similarity transform (Umeyama) taking source landmarks onto target ones.
3. Warp: every target pixel samples the source at the inverse-transformed position (bilinear).
4. Skin tone: a per-channel 256-entry lookup table that matches the histogram of the warped source face
   region to the target's, so the pasted face takes the target's lighting and tone.
5. Blend inside the target's face hull (jaw and brows), feathered at the edge.
"""

from __future__ import annotations

import numpy as np

from ..draw import polygon
from ..faces import convex_hull


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix M with dst ≈ M @ [src, 1] (Umeyama 1991: rotation, uniform scale, translation)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / s.var(0).sum()
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def warp(image: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Warp `image` (H x W x C) by the forward transform `matrix` into an output of `shape` (bilinear)."""
    h, w = shape
    inv = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs)], -1) @ inv.T - 0.5
    x, y = pts[..., 0], pts[..., 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    src_h, src_w = image.shape[:2]

    def at(yy, xx):
        return image[np.clip(yy, 0, src_h - 1), np.clip(xx, 0, src_w - 1)]

    out = (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy) + at(y0 + 1, x0) * (1 - fx) * fy
           + at(y0 + 1, x0 + 1) * fx * fy)
    return out.astype(image.dtype)


def tone_lut(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """3 x 256 lookup table mapping source values (0..255) so their histogram matches the target's."""
    lut = np.zeros((3, 256), np.float32)
    for c in range(3):
        s_hist = np.bincount(source[:, c], minlength=256).astype(np.float64)
        t_hist = np.bincount(target[:, c], minlength=256).astype(np.float64)
        s_cdf, t_cdf = np.cumsum(s_hist) / max(s_hist.sum(), 1), np.cumsum(t_hist) / max(t_hist.sum(), 1)
        # each source level goes to the first target level whose cumulative share reaches its own
        lut[c] = np.minimum(np.searchsorted(t_cdf, s_cdf - 1e-12, side="left"), 255)
    return lut


def face_mask(landmarks: np.ndarray, shape: tuple[int, int], feather: int = 3) -> np.ndarray:
    h, w = shape
    mask = np.zeros((h, w), np.float32)
    box, m = polygon(h, w, convex_hull(landmarks[:27]))  # jaw and brows
    if box is not None:
        y0, y1, x0, x1 = box
        mask[y0:y1, x0:x1][m] = 1.0
    for _ in range(feather):  # box-blur passes soften the seam
        p = np.pad(mask, 1, mode="edge")
        mask = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9
    return mask


def fuse(source: np.ndarray, source_lm: np.ndarray, target: np.ndarray, target_lm: np.ndarray) -> np.ndarray:
    """Images H x W x 3 float in [0, 1], landmarks 68 x 2 pixels → the fused image."""
    matrix = similarity_transform(source_lm, target_lm)
    warped = warp(source, matrix, target.shape[:2])
    mask = face_mask(target_lm, target.shape[:2])
    inside = mask > 0.5
    w8, t8 = (warped * 255).astype(np.uint8), (target * 255).astype(np.uint8)
    lut = tone_lut(w8[inside], t8[inside])
    toned = np.stack([lut[c][w8[..., c]] for c in range(3)], -1) / 255.0
    return (mask[..., None] * toned + (1 - mask[..., None]) * target).astype(np.float32)
