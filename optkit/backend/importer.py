"""ONNX to Relax: TVM's ONNX frontend, after checks that name the input, op or tensor it would fail on
(a long import that dies deep inside TVM tells a user nothing)."""

from __future__ import annotations

import onnx

from optkit.backend.artifact import versions
from optkit.core.errors import CompileError, library_message
from optkit.graph.numerics import input_specs
from optkit.graph.shapes import format_shape


def check_static_inputs(model: onnx.ModelProto, where: str) -> dict[str, list[int]]:
    shapes = {}
    for spec in input_specs(model):
        if not spec.shape or any(not isinstance(d, int) or d <= 0 for d in spec.shape):
            example = format_shape(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
            raise CompileError(
                f"{where}: input '{spec.name}' has dynamic or unknown dims {list(spec.shape)}; TVM needs fixed "
                f"sizes: pass --input-shape {spec.name}:{example} (or add specialize-input to the passes)")
        shapes[spec.name] = list(spec.shape)
    return shapes


def check_supported_ops(model: onnx.ModelProto, where: str) -> None:
    """Name the first node whose op TVM's ONNX frontend cannot import, before a long import fails."""
    from tvm.relax.frontend.onnx import onnx_frontend

    supported = set(onnx_frontend._get_convert_map()) | {"If", "Constant"}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in supported:
            domain = f" (domain '{node.domain}')" if node.domain else ""
            raise CompileError(f"{where}: op {node.op_type}{domain} of node '{node.name or node.output[0]}' "
                               f"cannot be imported by TVM {versions()['tvm']}'s ONNX frontend")


def check_no_empty_tensors(model: onnx.ModelProto, where: str) -> None:
    """TVM cannot build a tensor with a zero-size dimension (its loops fail to vectorize); name the first."""
    from optkit.core.resources import tensor_sizes

    producers = {o: n for n in model.graph.node for o in n.output}
    for name, (shape, _) in tensor_sizes(model).items():
        if 0 in shape:
            node = producers.get(name)
            by = f" (output of {node.op_type} node '{node.name or name}')" if node is not None else ""
            raise CompileError(f"{where}: tensor '{name}'{by} has shape {list(shape)}, with a zero-size dimension "
                               f"(a pool window or stride larger than its map?); TVM cannot build empty tensors")


def to_relax(model: onnx.ModelProto, where: str):
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    shapes = check_static_inputs(model, where)
    check_supported_ops(model, where)
    check_no_empty_tensors(model, where)
    dtypes = {s.name: str(s.dtype) for s in input_specs(model)}
    try:
        mod = from_onnx(model, shape_dict=shapes, dtype_dict=dtypes, keep_params_in_input=False)
    except Exception as exc:
        raise CompileError(f"{where}: TVM could not import the model: {library_message(exc)}") from exc
    return relax.transform.DecomposeOpsForInference()(mod)
