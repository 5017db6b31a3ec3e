"""What each Conv and Gemm sees on the calibration data, reduced to what weight rounding needs: the
second moment H = Σ x xᵀ of its input patches, one matrix per group (per channel for a depthwise Conv).

The patches are the im2col columns of the layer's own input (optkit/graph/im2col.py), so that `w @ x` is
the layer's output before bias."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from optkit.core.resources import bounded_ort_run
from optkit.graph.im2col import conv_patches
from optkit.graph.index import GraphIndex, attr
from optkit.graph.numerics import ort_session, with_intermediate_outputs


@dataclass
class Layer:
    node: onnx.NodeProto
    weight: np.ndarray          # (out, k) per group stacked: (groups, out/groups, k)
    groups: int
    hessian: np.ndarray         # (groups, k, k), float64, summed over samples
    kernel: tuple[int, ...]     # a Conv's (kh, kw); () for a Gemm
    count: int = 0              # patch columns summed into the hessian


def _weight_rows(node: onnx.NodeProto, w: np.ndarray) -> tuple[np.ndarray, int] | None:
    if node.op_type == "Conv":
        groups = int(attr(node, "group", 1))
        if w.ndim != 4 or w.shape[0] % groups:
            return None
        return w.reshape(groups, w.shape[0] // groups, -1), groups
    if node.op_type == "Gemm" and not attr(node, "transA", 0) and w.ndim == 2:
        rows = w if attr(node, "transB", 0) else w.T
        return rows[None], 1
    return None


def collect(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], op_types=("Conv", "Gemm")) -> list[Layer]:
    """Every Conv/Gemm with a constant weight, with the second moment of its float inputs over `feeds` (no
    feeds: the weights alone, nothing run)."""
    index = GraphIndex(model.graph)
    layers = []
    for node in model.graph.node:
        if node.op_type not in op_types or len(node.input) < 2:
            continue
        w = index.constant(node.input[1])
        rows = _weight_rows(node, w) if w is not None else None
        if rows is None or index.constant(node.input[0]) is not None:
            continue
        weight, groups = rows
        k = weight.shape[2]
        layers.append(Layer(node, weight.astype(np.float64), groups, np.zeros((groups, k, k)), w.shape[2:]))
    if not feeds:
        return layers
    wanted = sorted({layer.node.input[0] for layer in layers})
    session = ort_session(with_intermediate_outputs(model, wanted))
    computed = [name for name in wanted if name not in feeds[0]]
    for sample in feeds:
        values = {**sample, **bounded_ort_run(session, sample, "calibration run", computed)}
        for layer in layers:
            x = values[layer.node.input[0]].astype(np.float64)
            if layer.node.op_type == "Conv":
                cols = conv_patches(x, layer.node, layer.kernel, layer.groups)
            else:
                cols = x.reshape(-1, x.shape[-1]).T[None]
            layer.hessian += np.einsum("gip,gjp->gij", cols, cols, optimize=True)
            layer.count += cols.shape[2]
    return layers
