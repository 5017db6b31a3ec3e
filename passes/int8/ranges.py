"""Activation ranges chosen per tensor by error: for each tensor the quantizer will see, the clipping range
[lo, hi] (always holding 0, as the uint8/int8 grids need) that minimises the expected squared error of
quantizing that tensor's calibration values, rounding noise and clipping together. The min/max range is
one candidate, so no tensor gets worse than min/max on its own error; a tensor with a few outliers gets a
tighter grid for the values that matter."""

from __future__ import annotations

import numpy as np
import onnx

from optkit.core.resources import bounded_ort_run
from optkit.graph.numerics import ort_session, with_intermediate_outputs

BINS = 2048
GRID = np.linspace(0.05, 1.0, 39)        # fractions of the observed min and max tried as clipping points


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """Float tensors computed by the graph or fed to it: the candidates for activation quantization."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    names = [i.name for i in model.graph.input if i.name not in constants]
    names += [o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o]
    return names


def observe(model: onnx.ModelProto, feeds: list[dict], names: list[str]):
    """Per float tensor of `names`: its (min, max) over `feeds` (widened to hold 0) and a histogram over it."""
    probe = with_intermediate_outputs(model, names)
    session = ort_session(probe)
    inputs = {i.name: i for i in probe.graph.input}
    float_names = [o.name for o in [*inputs.values(), *probe.graph.output]
                   if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and o.name in set(names)]

    def run(sample):
        computed = [n for n in float_names if n not in inputs]
        return {**sample, **bounded_ort_run(session, sample, "calibration run", computed)}

    bounds = {n: [np.inf, -np.inf] for n in float_names}
    for sample in feeds:
        values = run(sample)
        for n in float_names:
            v = values[n]
            if v.size:
                bounds[n][0] = min(bounds[n][0], float(v.min()))
                bounds[n][1] = max(bounds[n][1], float(v.max()))
    bounds = {n: (min(lo, 0.0), max(hi, 0.0)) for n, (lo, hi) in bounds.items() if np.isfinite(lo)}
    hists = {n: np.zeros(BINS) for n in bounds}
    for sample in feeds:
        values = run(sample)
        for n, (lo, hi) in bounds.items():
            if hi > lo:
                hists[n] += np.histogram(values[n], BINS, (lo, hi))[0]
    return bounds, hists


def expected_error(centers: np.ndarray, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, levels: int) -> np.ndarray:
    """Mean squared error of quantizing the histogram to `levels` steps over each [lo, hi] (vectors)."""
    step = (hi - lo) / (levels - 1)
    clipped = np.clip(centers[None, :], lo[:, None], hi[:, None])
    outside = (centers[None, :] - clipped) ** 2
    inside = np.where(outside == 0, step[:, None] ** 2 / 12, 0.0)
    return (counts[None, :] * (outside + inside)).sum(axis=1) / max(counts.sum(), 1)


def best_range(bounds: tuple[float, float], hist: np.ndarray, symmetric: bool, levels: int = 256):
    lo, hi = bounds
    edges = np.linspace(lo, hi, len(hist) + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    if symmetric:
        absmax = max(-lo, hi) * GRID
        los, his = -absmax, absmax
    else:
        los, his = (g.ravel() for g in np.meshgrid(lo * GRID, hi * GRID))
    errors = expected_error(centers, hist, los, his, levels)
    best = int(np.argmin(errors))
    return float(los[best]), float(his[best])


def choose_ranges(model: onnx.ModelProto, feeds: list[dict], symmetric: bool = False) -> dict[str, tuple[float, float]]:
    """Per-tensor (rmin, rmax) minimising each tensor's own quantization error on `feeds`."""
    bounds, hists = observe(model, feeds, activation_tensors(model))
    return {n: best_range(b, hists[n], symmetric) if b[1] > b[0] else b for n, b in bounds.items()}
