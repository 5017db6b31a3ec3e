"""Group heatmap peaks into people with part affinity fields (the OpenPose bottom-up method), numpy only.

1. Peaks: local maxima of each joint heatmap above a threshold, refined to sub-cell precision.
2. Limbs: every candidate pair (a, b) of a limb is scored by the mean dot product between the PAF and
   the unit vector a→b, sampled along the segment; pairs are accepted greedily by score.
3. People: limbs are merged into skeletons following the tree rooted at the neck.
"""

from __future__ import annotations

import numpy as np

from ..people import JOINTS, LIMBS
from .targets import STRIDE

PEAK_THRESHOLD = 0.15
PAF_SAMPLES = 10
PAF_MIN_SCORE = 0.05
PAF_MIN_FRACTION = 0.7


def find_peaks(heat: np.ndarray, threshold: float = PEAK_THRESHOLD) -> list[np.ndarray]:
    """Per joint: K x 3 array (x, y in pixels, score)."""
    peaks = []
    for k in range(len(JOINTS)):
        m = heat[k]
        padded = np.pad(m, 1, constant_values=-np.inf)
        neighbours = np.stack([padded[1 + dy:1 + dy + m.shape[0], 1 + dx:1 + dx + m.shape[1]]
                               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
        is_peak = (m >= neighbours.max(0)) & (m > threshold)
        ys, xs = np.nonzero(is_peak)
        found = []
        for y, x in zip(ys, xs):
            # quadratic sub-cell refinement along each axis
            dx = dy = 0.0
            if 0 < x < m.shape[1] - 1:
                den = m[y, x - 1] - 2 * m[y, x] + m[y, x + 1]
                dx = 0.5 * (m[y, x - 1] - m[y, x + 1]) / den if den < 0 else 0.0
            if 0 < y < m.shape[0] - 1:
                den = m[y - 1, x] - 2 * m[y, x] + m[y + 1, x]
                dy = 0.5 * (m[y - 1, x] - m[y + 1, x]) / den if den < 0 else 0.0
            found.append(((x + 0.5 + np.clip(dx, -0.5, 0.5)) * STRIDE, (y + 0.5 + np.clip(dy, -0.5, 0.5)) * STRIDE,
                          m[y, x]))
        peaks.append(np.array(found, np.float32).reshape(-1, 3))
    return peaks


def _limb_score(paf_x: np.ndarray, paf_y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    d = (b[:2] - a[:2]) / STRIDE
    length = float(np.hypot(*d))
    if length < 1e-3:
        return -1.0
    u = d / length
    ts = np.linspace(0, 1, PAF_SAMPLES)
    xs = np.clip(((a[0] / STRIDE + ts * d[0]) - 0.5).round().astype(int), 0, paf_x.shape[1] - 1)
    ys = np.clip(((a[1] / STRIDE + ts * d[1]) - 0.5).round().astype(int), 0, paf_x.shape[0] - 1)
    dots = paf_x[ys, xs] * u[0] + paf_y[ys, xs] * u[1]
    if np.mean(dots > PAF_MIN_SCORE) < PAF_MIN_FRACTION:
        return -1.0
    return float(dots.mean())


def group_people(heat: np.ndarray, paf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """heat: 15 x h x w, paf: 26 x h x w (one image) → people P x 14 x 3 (x, y, score), person scores P."""
    peaks = find_peaks(heat)
    people: list[dict[int, int]] = []  # joint → peak index
    limb_scores: list[float] = []
    for li, (ja, jb) in enumerate(LIMBS):
        pa, pb = peaks[ja], peaks[jb]
        candidates = []
        for i in range(len(pa)):
            for j in range(len(pb)):
                s = _limb_score(paf[2 * li], paf[2 * li + 1], pa[i], pb[j])
                if s > 0:
                    candidates.append((s, i, j))
        candidates.sort(reverse=True)
        used_a, used_b = set(), set()
        for s, i, j in candidates:
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            owner = next((p for p in people if p.get(ja) == i), None)
            if owner is None:
                owner = next((p for p in people if p.get(jb) == j), None)
            if owner is None:
                owner = {}
                people.append(owner)
                limb_scores.append(0.0)
            owner.setdefault(ja, i)
            owner.setdefault(jb, j)
            limb_scores[people.index(owner)] += s
    out = np.zeros((len(people), len(JOINTS), 3), np.float32)
    scores = np.zeros(len(people), np.float32)
    for n, person in enumerate(people):
        for joint, idx in person.items():
            out[n, joint] = peaks[joint][idx]
        scores[n] = float(np.mean([peaks[j][i][2] for j, i in person.items()])) * len(person) / len(JOINTS)
    keep = [n for n, p in enumerate(people) if len(p) >= 4]
    return out[keep], scores[keep]
