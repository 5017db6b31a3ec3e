"""Model statistics the pass manager reports before and after each pass: size, parameters, FLOPs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from optkit.graph.index import static_shapes


@dataclass(frozen=True)
class ModelStats:
    nodes: int
    params: int
    size_bytes: int
    flops: int  # multiply-adds counted as 2 FLOPs; Conv, ConvTranspose, Gemm and MatMul only

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def node_flops(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """FLOPs of one node from inferred shapes; 0 when shapes are unknown or the op is not counted."""
    op = node.op_type
    try:
        if op in ("Conv", "ConvTranspose"):
            w = shapes[node.input[1]]
            if op == "Conv":
                out = shapes[node.output[0]]
                return 2 * int(np.prod(out)) * int(np.prod(w[1:]))
            x = shapes[node.input[0]]
            return 2 * int(np.prod(x)) * int(np.prod(w[1:]))
        if op == "Gemm":
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            m, k = (a[1], a[0]) if trans_a else a
            n = b[0] if any(at.name == "transB" and at.i for at in node.attribute) else b[1]
            return 2 * m * k * n
        if op == "MatMul":
            out, a = shapes[node.output[0]], shapes[node.input[0]]
            return 2 * int(np.prod(out)) * a[-1]
    except (KeyError, IndexError, ValueError):
        return 0
    return 0


def model_stats(model: onnx.ModelProto) -> ModelStats:
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    params += int(numpy_helper.to_array(attr.t).size)
    shapes = static_shapes(model, data_prop=True)
    flops = sum(node_flops(n, shapes) for n in model.graph.node)
    return ModelStats(len(model.graph.node), params, model.ByteSize(), flops)
