"""Training targets for the pose model: Gaussian keypoint heatmaps and part affinity fields at stride 8."""

from __future__ import annotations

import numpy as np

from ..people import JOINTS, LIMBS

STRIDE = 8
SIGMA = 1.0          # in heatmap cells
PAF_WIDTH = 1.0      # half-width of a limb's field, in cells


def make_targets(keypoints: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """keypoints: P x 14 x 3 in pixels → heatmaps (15, h/8, w/8) with background last, pafs (26, h/8, w/8)."""
    gh, gw = h // STRIDE, w // STRIDE
    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float32)
    cx, cy = xs + 0.5, ys + 0.5
    heat = np.zeros((len(JOINTS) + 1, gh, gw), np.float32)
    paf = np.zeros((2 * len(LIMBS), gh, gw), np.float32)
    count = np.zeros((len(LIMBS), gh, gw), np.float32)
    for person in keypoints:
        p = person[:, :2] / STRIDE
        vis = person[:, 2] > 0
        for k in range(len(JOINTS)):
            if vis[k]:
                g = np.exp(-((cx - p[k, 0]) ** 2 + (cy - p[k, 1]) ** 2) / (2 * SIGMA ** 2))
                heat[k] = np.maximum(heat[k], g)
        for li, (a, b) in enumerate(LIMBS):
            if not (vis[a] and vis[b]):
                continue
            d = p[b] - p[a]
            length = float(np.hypot(*d))
            if length < 1e-3:
                continue
            u = d / length
            rx, ry = cx - p[a, 0], cy - p[a, 1]
            along = rx * u[0] + ry * u[1]
            across = np.abs(rx * u[1] - ry * u[0])
            m = (along >= -PAF_WIDTH) & (along <= length + PAF_WIDTH) & (across <= PAF_WIDTH)
            paf[2 * li][m] += u[0]
            paf[2 * li + 1][m] += u[1]
            count[li][m] += 1
    nz = count > 0
    for li in range(len(LIMBS)):
        paf[2 * li][nz[li]] /= count[li][nz[li]]
        paf[2 * li + 1][nz[li]] /= count[li][nz[li]]
    heat[-1] = 1 - heat[:-1].max(0)
    return heat, paf
