"""`fuse-aspp`: make an atrous pyramid cheap once input sizes are fixed. Exact.

1. Drop dead taps. A tap of a dilated kernel that, for every output position, reads only zero padding
   contributes nothing. Such taps are cut from the kernel (and the padding adjusted so the output grid
   stays the same): on a 15x20 map, a 3x3 conv at rate 18 becomes 1x3 (rows) and a 3x3 at rate 24
   becomes a 1x1.
2. Merge parallel convs. Convs that read the same tensor with the same kernel geometry become one conv
   with stacked filters, followed by a Split that gives each original output back.

Needs static shapes (run specialize-input first); convs with unknown input sizes are left alone.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper

from optkit.graph import GraphIndex, attr, remove_unused_initializers, static_shapes
from optkit.pass_base import Pass, PassContext, PassResult


def live_taps(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, out_size: int) -> list[int]:
    """Kernel indices along one axis that read at least one real (non-padding) input element."""
    reads = np.arange(out_size)[:, None] * stride - pad_begin + np.arange(kernel)[None, :] * dilation
    return [int(i) for i in np.nonzero(((reads >= 0) & (reads < size)).any(0))[0]]


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def _geometry(node, w_shape):
    k = list(w_shape[2:])
    nd = len(k)
    return (list(attr(node, "strides", [1] * nd)), list(attr(node, "dilations", [1] * nd)),
            list(attr(node, "pads", [0] * 2 * nd)), k)


class FuseASPP(Pass):
    name = "fuse-aspp"
    exact = True
    summary = "drop dilated-kernel taps that only read padding; merge parallel convs on the same input"

    def run(self, model, ctx: PassContext) -> PassResult:
        shapes = static_shapes(model)
        idx = GraphIndex(model.graph)
        shrunk, taps_removed = self._drop_dead_taps(model, idx, shapes)
        merged = self._merge_parallel(model, GraphIndex(model.graph))
        if shrunk or merged:
            remove_unused_initializers(model.graph)
            del model.graph.value_info[:]
        return PassResult(model, bool(shrunk or merged),
                          {"convs_shrunk": shrunk, "taps_removed": taps_removed, "convs_merged": merged})

    @staticmethod
    def _drop_dead_taps(model, idx: GraphIndex, shapes) -> tuple[int, int]:
        shrunk = removed = 0
        for node in model.graph.node:
            if node.op_type != "Conv" or attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                continue
            w = idx.constant(node.input[1])
            x_shape, y_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
            if w is None or x_shape is None or y_shape is None or w.ndim != 4:
                continue
            strides, dilations, pads, k = _geometry(node, w.shape)
            keep, new_pads = [], list(pads)
            for axis in range(2):
                live = live_taps(x_shape[2 + axis], k[axis], strides[axis], dilations[axis], pads[axis],
                                 y_shape[2 + axis])
                if not live:
                    live = [k[axis] // 2]  # every tap reads padding: keep one so the conv still yields bias
                a, b = live[0], live[-1]
                begin = pads[axis] - a * dilations[axis]
                end = (y_shape[2 + axis] - 1) * strides[axis] + dilations[axis] * (b - a) + 1 - x_shape[2 + axis] - begin
                if begin < 0 or end < 0:
                    a, b, begin, end = 0, k[axis] - 1, pads[axis], pads[2 + axis]
                keep.append((a, b))
                new_pads[axis], new_pads[2 + axis] = begin, end
            (a0, b0), (a1, b1) = keep
            if (b0 - a0 + 1, b1 - a1 + 1) == tuple(k):
                continue
            cropped = np.ascontiguousarray(w[:, :, a0:b0 + 1, a1:b1 + 1])
            removed += (int(np.prod(k)) - cropped.shape[2] * cropped.shape[3]) * w.shape[0] * w.shape[1]
            name = idx.fresh_name(f"{node.input[1]}_live")
            idx.set_initializer(name, cropped)
            node.input[1] = name
            new_k = list(cropped.shape[2:])
            _set_attr(node, "kernel_shape", new_k)
            _set_attr(node, "pads", new_pads)
            _set_attr(node, "dilations", [d if kk > 1 else 1 for d, kk in zip(dilations, new_k)])
            shrunk += 1
        return shrunk, removed

    @staticmethod
    def _merge_parallel(model, idx: GraphIndex) -> int:
        groups: dict[tuple, list[onnx.NodeProto]] = defaultdict(list)
        for node in model.graph.node:
            if node.op_type != "Conv" or attr(node, "group", 1) != 1:
                continue
            w = idx.constant(node.input[1])
            has_bias = len(node.input) > 2 and node.input[2]
            if w is None or (has_bias and idx.constant(node.input[2]) is None):
                continue
            strides, dilations, pads, k = _geometry(node, w.shape)
            key = (node.input[0], tuple(k), tuple(strides), tuple(dilations), tuple(pads),
                   attr(node, "auto_pad", b"NOTSET"), w.dtype.str)
            groups[key].append(node)
        merged = 0
        replace: dict[int, list[onnx.NodeProto]] = {}
        drop: set[int] = set()
        for members in groups.values():
            if len(members) < 2:
                continue
            weights = [idx.constant(n.input[1]) for n in members]
            biases = [idx.constant(n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], w.dtype)
                      for n, w in zip(members, weights)]
            first = members[0]
            w_name = idx.fresh_name(f"{first.name or first.output[0]}_merged_w")
            b_name = idx.fresh_name(f"{first.name or first.output[0]}_merged_b")
            s_name = idx.fresh_name(f"{first.name or first.output[0]}_merged_split")
            out = idx.fresh_name(f"{first.name or first.output[0]}_merged")
            idx.set_initializer(w_name, np.concatenate(weights))
            idx.set_initializer(b_name, np.concatenate(biases))
            idx.set_initializer(s_name, np.array([w.shape[0] for w in weights], np.int64))
            conv = helper.make_node("Conv", [first.input[0], w_name, b_name], [out], name=out)
            conv.attribute.extend(a for a in first.attribute)
            split = helper.make_node("Split", [out, s_name], [n.output[0] for n in members], name=f"{out}_split", axis=1)
            replace[id(first)] = [conv, split]
            drop.update(id(n) for n in members[1:])
            merged += len(members)
        if merged:
            nodes = []
            for node in model.graph.node:
                if id(node) in replace:
                    nodes.extend(replace[id(node)])
                elif id(node) not in drop:
                    nodes.append(node)
            del model.graph.node[:]
            model.graph.node.extend(nodes)
        return merged

