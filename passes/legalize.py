"""`legalize`: rewrite what TVM 0.27's ONNX importer gets wrong or cannot take into exact equivalents.

compile runs it last, before the import, on every model; the pass manager checks its outputs against
onnxruntime like any exact pass. Each rewrite answers a failure found by fuzzing (tests/test_hostile.py):

- Resize whose declared scale is not out/in (0.5 on an odd size, 1.5, 0.75): ONNX maps coordinates with the
  declared scale, TVM with out/in, so 96-100 % of outputs were wrong. Also nearest + tf_half_pixel_for_nn
  (TVM picks the other neighbour at exact .5 ties) and align_corners to a size of 1 (TVM divides by zero).
  Resize is separable and linear in its input, so each resized axis becomes a constant matrix read off
  onnxruntime's Resize of an identity: a Gather of source indices for nearest (bit-exact), a MatMul for
  linear and cubic.
- Sum/Max/Min/Mean and Concat with many inputs: TVM overflows its stack on them (SIGSEGV at 3000 Sum and
  2000 Concat inputs); they become balanced trees of binary ops, and Concats of at most 8 inputs.
- Pad whose constant value is a DequantizeLinear of a constant (what onnxruntime's quantizer makes of it):
  TVM's importer wants a constant there; the dequantized value is computed here as onnxruntime does.
- Pooling whose window is larger than the (padded) map: onnxruntime's output has one position there, TVM's
  none; explicit end padding gives TVM the same window (checked numerically like every rewrite here).
- 16-bit QuantizeLinear -> DequantizeLinear pairs (quantize-int8's mixed precision): hand_landmark_lite
  with uint16 pairs built 0 dB away from onnxruntime on one output; with the pairs rewritten here it builds
  and validates. Per tensor, the pair is the same arithmetic in float32, which holds every 16-bit integer
  exactly: clip(round(x / s) + z) then (q - z) * s.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from optkit.graph.index import GraphIndex, attr, static_shapes
from optkit.pass_infra.contract import Pass, PassContext, PassResult

VARIADIC = {"Sum": "Add", "Max": "Max", "Min": "Min", "Mean": "Add"}
MAX_VARIADIC_INPUTS = 8
RESIZE_MODES = ("nearest", "linear", "cubic")


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def axis_matrix(node: onnx.NodeProto, length: int, scale: float, opset: int) -> np.ndarray:
    """(out, in) matrix of one resized axis: onnxruntime's Resize (same attributes) of an identity."""
    import onnxruntime as ort

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [length, 1, length, 1])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    scales = helper.make_tensor("scales", onnx.TensorProto.FLOAT, [4], [1.0, 1.0, scale, 1.0])
    keep = [a for a in node.attribute if a.name in ("mode", "coordinate_transformation_mode", "nearest_mode",
                                                    "cubic_coeff_a", "exclude_outside", "antialias")]
    resize = helper.make_node("Resize", ["x", "", "scales"], ["y"])
    resize.attribute.extend(keep)
    graph = helper.make_graph([resize], "axis", [x], [y], [scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": np.eye(length, dtype=np.float32).reshape(length, 1, length, 1)})[0]
    return np.ascontiguousarray(out[:, 0, :, 0].T)


def _needs_resize_rewrite(node, shape, scales) -> bool:
    mode = _s(attr(node, "mode", "nearest"))
    ctm = _s(attr(node, "coordinate_transformation_mode", "half_pixel"))
    if mode not in RESIZE_MODES or ctm == "tf_crop_and_resize" or attr(node, "axes") is not None:
        return False
    if len(scales) != 4 or len(shape) != 4 or scales[0] != 1 or scales[1] != 1:
        return False
    outs = [int(np.floor(n * np.float32(s))) for n, s in zip(shape, scales)]
    inexact = any(o != n * float(s) for o, n, s in zip(outs[2:], shape[2:], scales[2:]))
    tie = mode == "nearest" and ctm == "tf_half_pixel_for_nn"
    single = ctm == "align_corners" and any(o == 1 for o in outs[2:])
    return inexact or tie or single


def _rewrite_resize(index: GraphIndex, node, shape, scales, opset) -> list[onnx.NodeProto]:
    mode = _s(attr(node, "mode", "nearest"))
    current, nodes = node.input[0], []
    for axis in (3, 2):
        if float(scales[axis]) == 1.0:
            continue
        matrix = axis_matrix(node, shape[axis], float(scales[axis]), opset)
        out = index.fresh_name(f"{node.output[0]}_axis{axis}")
        base = node.name or node.output[0]
        if mode == "nearest":
            idx = index.fresh_name(f"{base}_idx{axis}")
            index.set_initializer(idx, np.argmax(matrix, axis=1).astype(np.int64))
            nodes.append(helper.make_node("Gather", [current, idx], [out], axis=axis,
                                          name=index.fresh_name(f"{base}_gather{axis}")))
        elif axis == 3:
            weights = index.fresh_name(f"{base}_cols")
            index.set_initializer(weights, matrix.T.astype(np.float32))          # (in, out): X @ W
            nodes.append(helper.make_node("MatMul", [current, weights], [out], name=index.fresh_name(f"{base}_mm3")))
        else:
            weights = index.fresh_name(f"{base}_rows")
            index.set_initializer(weights, matrix.astype(np.float32))            # (out, in): W @ X
            nodes.append(helper.make_node("MatMul", [weights, current], [out], name=index.fresh_name(f"{base}_mm2")))
        current = out
    if not nodes:
        return [helper.make_node("Identity", [current], [node.output[0]], name=node.name)]
    nodes[-1].output[0] = node.output[0]
    return nodes


def _tree(index: GraphIndex, node) -> list[onnx.NodeProto]:
    """A balanced tree of binary ops (Mean: a tree of Adds, then one division)."""
    op = VARIADIC[node.op_type]
    level, nodes, base = list(node.input), [], node.name or node.output[0]
    while len(level) > 1:
        nxt = []
        for k in range(0, len(level) - 1, 2):
            out = index.fresh_name(f"{base}_t")
            nodes.append(helper.make_node(op, [level[k], level[k + 1]], [out], name=index.fresh_name(f"{base}_{op}")))
            nxt.append(out)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    if node.op_type == "Mean":
        count = index.fresh_name(f"{base}_count")
        index.set_initializer(count, np.array(len(node.input), dtype=np.float32))
        nodes.append(helper.make_node("Div", [level[0], count], [node.output[0]], name=index.fresh_name(f"{base}_div")))
    else:
        nodes[-1].output[0] = node.output[0]
    return nodes


def _concat_tree(index: GraphIndex, node) -> list[onnx.NodeProto]:
    """Concat of many inputs as Concats of at most MAX_VARIADIC_INPUTS each, level by level (associative)."""
    axis, level, nodes, base = attr(node, "axis"), list(node.input), [], node.name or node.output[0]
    while len(level) > MAX_VARIADIC_INPUTS:
        nxt = []
        for k in range(0, len(level), MAX_VARIADIC_INPUTS):
            out = index.fresh_name(f"{base}_part")
            nodes.append(helper.make_node("Concat", level[k:k + MAX_VARIADIC_INPUTS], [out], axis=axis,
                                          name=index.fresh_name(f"{base}_concat")))
            nxt.append(out)
        level = nxt
    nodes.append(helper.make_node("Concat", level, [node.output[0]], axis=axis, name=node.name))
    return nodes


def _pool_end_pads(node, shape) -> list[int] | None:
    """Pads that give TVM onnxruntime's window where the window is larger than the padded map, else None."""
    kernel = attr(node, "kernel_shape")
    if (not kernel or shape is None or len(shape) != len(kernel) + 2 or attr(node, "ceil_mode", 0)
            or _s(attr(node, "auto_pad", "NOTSET")) != "NOTSET"):
        return None
    rank = len(kernel)
    pads = list(attr(node, "pads", [0] * 2 * rank))
    dilations = attr(node, "dilations", [1] * rank)
    strides = attr(node, "strides", [1] * rank)
    grow = False
    for k in range(rank):
        window = (kernel[k] - 1) * dilations[k] + 1
        short = window - (shape[2 + k] + pads[k] + pads[rank + k])
        # ONNX's size (in + pads - window) / stride + 1 divides in C++, truncating towards zero: a window short
        # by less than a stride still gives one position, which TVM's floor division does not.
        if 0 < short < strides[k]:
            pads[rank + k] += short
            grow = True
    return pads if grow else None


WIDE_QUANT = {onnx.TensorProto.UINT16: (0, 65535), onnx.TensorProto.INT16: (-32768, 32767)}


def _wide_pairs(index: GraphIndex) -> dict[str, tuple[int, int]]:
    """Outputs of per-tensor 16-bit QuantizeLinear nodes read only by DequantizeLinear, with their range."""
    found = {}
    for node in index.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or not node.input[2]:
            continue
        zero, scale = index.initializers.get(node.input[2]), index.constant(node.input[1])
        readers = index.consumers.get(node.output[0], [])
        if (zero is None or zero.data_type not in WIDE_QUANT or scale is None or scale.size != 1 or not readers
                or any(r.op_type != "DequantizeLinear" for r in readers) or node.output[0] in index.graph_outputs):
            continue
        found[node.output[0]] = WIDE_QUANT[zero.data_type]
    return found


def _wide_as_float(index: GraphIndex, node: onnx.NodeProto, bounds: tuple[int, int]) -> list[onnx.NodeProto]:
    """One node of a 16-bit pair as float32 arithmetic: QuantizeLinear -> clip(round(x / s) + z, lo, hi),
    DequantizeLinear -> (q - z) * s, with z as a float constant."""
    zero = index.fresh_name(f"{node.input[2]}_float")
    index.set_initializer(zero, index.constant(node.input[2]).astype(np.float32))
    t = index.fresh_name(f"{node.output[0]}_wide")
    if node.op_type == "DequantizeLinear":
        return [helper.make_node("Sub", [node.input[0], zero], [t]),
                helper.make_node("Mul", [t, node.input[1]], [node.output[0]])]
    lo, hi = index.fresh_name(f"{t}_lo"), index.fresh_name(f"{t}_hi")
    index.set_initializer(lo, np.array(bounds[0], np.float32))
    index.set_initializer(hi, np.array(bounds[1], np.float32))
    return [helper.make_node("Div", [node.input[0], node.input[1]], [t + "_div"]),
            helper.make_node("Round", [t + "_div"], [t + "_round"]),
            helper.make_node("Add", [t + "_round", zero], [t + "_shift"]),
            helper.make_node("Clip", [t + "_shift", lo, hi], [node.output[0]])]


def _dequantized_constant(index: GraphIndex, name: str) -> np.ndarray | None:
    """The value of DequantizeLinear(constant, constant scale, constant zero point), per tensor, else None."""
    node = index.producer.get(name)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    values = [index.constant(i) if i else None for i in node.input]
    q, scale = values[0], values[1]
    zero = values[2] if len(values) > 2 and values[2] is not None else np.zeros((), np.int32)
    if q is None or scale is None or scale.size != 1 or zero.size != 1:
        return None
    return ((q.astype(np.int32) - zero.astype(np.int32)).astype(np.float32) * scale.astype(np.float32)).astype(np.float32)


class Legalize(Pass):
    name = "legalize"
    exact = True
    summary = "rewrite what TVM's importer gets wrong (non-integer Resize scales, wide Sum/Concat, oversize pools)"

    def run(self, model, ctx: PassContext) -> PassResult:
        index = GraphIndex(model.graph)
        shapes = static_shapes(model)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
        new_nodes, stats = [], {"resizes": 0, "variadic": 0, "pools": 0, "pad_values": 0, "wide_qdq": 0}
        wide = _wide_pairs(index)
        for node in model.graph.node:
            if node.op_type == "QuantizeLinear" and node.output[0] in wide:
                new_nodes.extend(_wide_as_float(index, node, wide[node.output[0]]))
                stats["wide_qdq"] += 1
                continue
            if node.op_type == "DequantizeLinear" and node.input[0] in wide:
                new_nodes.extend(_wide_as_float(index, node, wide[node.input[0]]))
                continue
            if node.op_type in VARIADIC and len(node.input) > MAX_VARIADIC_INPUTS:
                new_nodes.extend(_tree(index, node))
                stats["variadic"] += 1
                continue
            if node.op_type == "Concat" and len(node.input) > MAX_VARIADIC_INPUTS:
                new_nodes.extend(_concat_tree(index, node))
                stats["variadic"] += 1
                continue
            if node.op_type == "Resize" and len(node.input) >= 3 and node.input[2]:
                scales, shape = index.constant(node.input[2]), shapes.get(node.input[0])
                roi_constant = len(node.input) < 2 or not node.input[1] or index.constant(node.input[1]) is not None
                if scales is not None and shape is not None and roi_constant and _needs_resize_rewrite(node, shape, scales):
                    new_nodes.extend(_rewrite_resize(index, node, shape, [float(s) for s in scales], opset))
                    stats["resizes"] += 1
                    continue
            if node.op_type == "Pad" and len(node.input) > 2 and node.input[2]:
                value = _dequantized_constant(index, node.input[2])
                if value is not None:
                    folded = index.fresh_name(f"{node.input[2]}_folded")
                    index.set_initializer(folded, value)
                    node.input[2] = folded
                    stats["pad_values"] += 1
            if node.op_type in ("MaxPool", "AveragePool") and len(node.output) == 1:
                pads = _pool_end_pads(node, shapes.get(node.input[0]))
                if pads is not None:
                    rewritten = onnx.NodeProto()
                    rewritten.CopyFrom(node)
                    kept = [a for a in rewritten.attribute if a.name != "pads"]
                    del rewritten.attribute[:]
                    rewritten.attribute.extend(kept + [helper.make_attribute("pads", pads)])
                    new_nodes.append(rewritten)
                    stats["pools"] += 1
                    continue
            new_nodes.append(node)
        changed = any(stats.values())
        if changed:
            del model.graph.node[:]
            model.graph.node.extend(new_nodes)
        if wide:      # those tensors are float now: drop any stale 16-bit type declared for them
            kept = [vi for vi in model.graph.value_info if vi.name not in wide]
            del model.graph.value_info[:]
            model.graph.value_info.extend(kept)
        return PassResult(model, changed, stats)
