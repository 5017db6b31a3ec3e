"""Weight rounding that minimises each layer's output error on the calibration data instead of each
weight's own error (GPTQ, Frantar et al. 2022, the closed-form relative of AdaRound): weights are
rounded one input column at a time and the rounding error of a column is pushed onto the columns not yet
rounded, weighted by the inverse second moment of the layer's inputs. Scales stay per-channel symmetric
max|w|/127, so the result is an int8 grid the quantizer reproduces exactly."""

from __future__ import annotations

import numpy as np

QMAX = 127


def channel_scales(weight: np.ndarray) -> np.ndarray:
    """Per output channel symmetric scales of a (groups, out, k) weight: (groups, out, 1)."""
    scale = np.abs(weight).max(axis=2, keepdims=True) / QMAX
    return np.where(scale > 0, scale, 1.0)


def _round(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.round(w / scale), -QMAX, QMAX) * scale


def _inverse_cholesky(h: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of H⁻¹ with H damped by `damp`·mean(diag H) (GPTQ's stabiliser)."""
    h = h.copy()
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h)))
    return np.linalg.cholesky(np.linalg.inv(h)).T


def gptq_round(weight: np.ndarray, hessian: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """Rounded (groups, out, k) weight on the grid of `channel_scales(weight)`."""
    scale = channel_scales(weight)
    out = np.empty_like(weight)
    for g in range(weight.shape[0]):
        w = weight[g].copy()
        u = _inverse_cholesky(hessian[g], damp)
        for i in range(w.shape[1]):
            q = _round(w[:, i:i + 1], scale[g])
            out[g, :, i:i + 1] = q
            err = (w[:, i:i + 1] - q) / u[i, i]
            w[:, i + 1:] -= err * u[i, i + 1:]
    return out


def nearest_round(weight: np.ndarray) -> np.ndarray:
    return _round(weight, channel_scales(weight))
