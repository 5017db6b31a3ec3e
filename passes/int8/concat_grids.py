"""Concat outputs quantized on one of their inputs' grids, so that the compiled Concat copies that input's
bytes instead of requantizing them (optkit/backend/rewrites/quantized_concat.py).

A Concat's calibrated range is usually within a hair of its widest input's: parsing's decoder concats
measure 0.04283 against their upsampled input's 0.04328. Requantizing then costs every element of that
input a float round trip (parsing on a Cortex-A76: 3.5 M instructions in its largest concat). Where an
input's grid covers the output's whole range and its step is at most MAX_COARSER times the output's, the
output takes that input's scale and zero point: at most a 10 % coarser step on one tensor, the choice
TFLite makes for every concat. The int32 biases of the layers reading the Concat are stored on the grid
input scale × weight scale, so they are requantized to the new input scale: onnxruntime fuses a QDQ Conv
into its integer kernel only when they are (parsing: one of its decoder convs ran in float, 27 M more
instructions on the A76 model)."""

from __future__ import annotations

import numpy as np
import onnx

from optkit.graph.index import GraphIndex, remove_unused_initializers

MAX_COARSER = 1.1


def _grid(index: GraphIndex, node: onnx.NodeProto) -> tuple[float, int, str] | None:
    """(scale, zero point, dtype) of a per-tensor Quantize/DequantizeLinear with constant parameters."""
    if len(node.input) < 3:
        return None
    scale, zero = index.constant(node.input[1]), index.constant(node.input[2])
    if scale is None or zero is None or scale.size != 1 or zero.size != 1 or zero.dtype not in (np.uint8, np.int8):
        return None
    return float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0]), str(zero.dtype)


def _covers(inner: tuple[float, int, str], outer: tuple[float, int, str]) -> bool:
    """Whether grid `outer` represents every value of grid `inner`'s range."""
    info = np.iinfo(inner[2])
    lo, hi = ((info.min - inner[1]) * inner[0], (info.max - inner[1]) * inner[0])
    return (info.min - outer[1]) * outer[0] <= lo + 1e-12 and (info.max - outer[1]) * outer[0] >= hi - 1e-12


def share_concat_grids(model: onnx.ModelProto) -> int:
    """Give each Concat's QuantizeLinear the grid of an input (read through its DequantizeLinear) that
    covers the Concat's range with a step at most MAX_COARSER times as large, the finest such input first.
    The QuantizeLinear and its DequantizeLinear readers get new parameter initializers. Returns the Concats
    changed."""
    index = GraphIndex(model.graph)
    changed = 0
    for node in list(model.graph.node):
        readers = index.consumers.get(node.output[0], []) if node.op_type == "Concat" else []
        quantize = readers[0] if len(readers) == 1 and readers[0].op_type == "QuantizeLinear" else None
        out = _grid(index, quantize) if quantize is not None else None
        if out is None:
            continue
        dequantizes = index.consumers.get(quantize.output[0], [])
        if any(d.op_type != "DequantizeLinear" for d in dequantizes) or quantize.output[0] in index.graph_outputs:
            continue
        inputs = [index.producer.get(name) for name in node.input]
        grids = [_grid(index, p) for p in inputs if p is not None and p.op_type == "DequantizeLinear"]
        if len(grids) != len(node.input) or any(g == out for g in grids):
            continue
        fits = sorted(g for g in grids if g[2] == out[2] and g[0] <= MAX_COARSER * out[0] and _covers(out, g))
        if not fits:
            continue
        scale, zero, dtype = fits[0]
        scale_name = index.fresh_name(f"{quantize.output[0]}_shared_scale")
        zero_name = index.fresh_name(f"{quantize.output[0]}_shared_zero_point")
        index.set_initializer(scale_name, np.array(scale, np.float32))
        index.set_initializer(zero_name, np.array(zero, dtype))
        for user in [quantize, *dequantizes]:
            user.input[1], user.input[2] = scale_name, zero_name
        for dequantize in dequantizes:
            for layer in index.consumers.get(dequantize.output[0], []):
                _rescale_bias(index, layer, dequantize.output[0], np.float32(scale))
        changed += 1
    if changed:
        remove_unused_initializers(model.graph)
    return changed


def _rescale_bias(index: GraphIndex, layer: onnx.NodeProto, data: str, input_scale: np.float32) -> None:
    """Requantize the int32 bias of a Conv/Gemm reading `data` onto input_scale × its weight scale."""
    if layer.op_type not in ("Conv", "Gemm") or len(layer.input) < 3 or layer.input[0] != data:
        return
    weight, bias = index.producer.get(layer.input[1]), index.producer.get(layer.input[2])
    if weight is None or bias is None or weight.op_type != "DequantizeLinear" or bias.op_type != "DequantizeLinear":
        return
    values, old_scale = index.constant(bias.input[0]), index.constant(bias.input[1])
    weight_scale = index.constant(weight.input[1])
    if values is None or old_scale is None or weight_scale is None or values.dtype != np.int32 or index.uses(bias.input[0]) != 1:
        return
    new_scale = (input_scale * weight_scale.astype(np.float32)).astype(np.float32).reshape(old_scale.shape)
    rescaled = np.round(values.astype(np.float64) * old_scale / new_scale)
    index.set_initializer(bias.input[0], np.clip(rescaled, -(2**31), 2**31 - 1).astype(np.int32))
    name = index.fresh_name(f"{bias.input[1]}_rescaled")
    index.set_initializer(name, new_scale)
    bias.input[1] = name
