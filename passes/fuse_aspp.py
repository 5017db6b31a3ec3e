"""`fuse-aspp`: make an atrous pyramid cheap once input sizes are fixed. Exact.

1. Drop dead taps. A tap of a dilated kernel that, for every output position, reads only zero padding
   contributes nothing. Such taps are cut from the kernel (and the padding adjusted so the output grid
   stays the same): on a 15x20 map, a 3x3 conv at rate 18 becomes 1x3 (rows) and a 3x3 at rate 24
   becomes a 1x1.
2. Merge parallel convs. Convs that read the same tensor with the same kernel geometry become one conv
   with stacked filters, followed by a Split that gives each original output back.
3. Fold the image-pooling branch into the projection. A branch that broadcasts a 1x1 map (Resize,
   Expand or Tile of a pooled vector) into the concat feeding a 1x1 projection contributes the same
   vector at every pixel; its slice of the projection is applied to the 1x1 map instead and added
   after the projection (linear maps commute with broadcasting), which removes the broadcast, its
   share of the concat and of the projection's work.

Needs static shapes (run specialize-input first); convs with unknown input sizes are left alone.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper

from optkit.graph.index import GraphIndex, attr, remove_unused_initializers, static_shapes
from optkit.pass_infra.contract import Pass, PassContext, PassResult


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
        folded = self._fold_pooling_branches(model, static_shapes(model))
        if shrunk or merged or folded:
            remove_unused_initializers(model.graph)
            del model.graph.value_info[:]
        return PassResult(model, bool(shrunk or merged or folded),
                          {"convs_shrunk": shrunk, "taps_removed": taps_removed, "convs_merged": merged,
                           "pooling_branches_folded": folded})

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


    @staticmethod
    def _fold_pooling_branches(model, shapes) -> int:
        idx = GraphIndex(model.graph)
        folded = 0
        new_nodes: dict[int, list[onnx.NodeProto]] = {}
        for cat in model.graph.node:
            if cat.op_type != "Concat" or attr(cat, "axis") not in (1, -3) or idx.uses(cat.output[0]) != 1:
                continue
            consumers = idx.consumers.get(cat.output[0], [])
            proj = consumers[0] if consumers else None
            if proj is None or proj.op_type != "Conv" or attr(proj, "group", 1) != 1:
                continue
            w = idx.constant(proj.input[1])
            if (w is None or w.shape[2:] != (1, 1) or any(s != 1 for s in attr(proj, "strides", [1, 1]))
                    or any(attr(proj, "pads", [0, 0, 0, 0]))):
                continue
            widths = [shapes.get(i, (0, 0))[1] for i in cat.input]
            if not all(widths) or sum(widths) != w.shape[1]:
                continue
            offsets = np.cumsum([0] + widths)
            constant = [k for k, name in enumerate(cat.input) if _broadcast_of_1x1(idx, shapes, name) is not None]
            if not constant or len(constant) == len(cat.input):
                continue
            keep = [k for k in range(len(cat.input)) if k not in constant]
            keep_cols = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in keep])
            w_keep = idx.fresh_name(f"{proj.input[1]}_kept")
            idx.set_initializer(w_keep, np.ascontiguousarray(w[:, keep_cols]))
            pieces, tail = [], []
            for k in constant:
                source = _broadcast_of_1x1(idx, shapes, cat.input[k])
                w_k = idx.fresh_name(f"{proj.input[1]}_pooled{k}")
                idx.set_initializer(w_k, np.ascontiguousarray(w[:, offsets[k]:offsets[k + 1]]))
                out = idx.fresh_name(f"{proj.output[0]}_pooled{k}")
                tail.append(helper.make_node("Conv", [source, w_k], [out], name=out))
                pieces.append(out)
            core = idx.fresh_name(f"{proj.output[0]}_core")
            kept_inputs = [cat.input[k] for k in keep]
            del cat.input[:]
            cat.input.extend(kept_inputs)
            proj_new = helper.make_node("Conv", [cat.output[0], w_keep] + list(proj.input[2:]), [core],
                                        name=proj.name or core)
            proj_new.attribute.extend(proj.attribute)
            acc = core
            for n, piece in enumerate(pieces):
                out = proj.output[0] if n == len(pieces) - 1 else idx.fresh_name(f"{core}_plus{n}")
                tail.append(helper.make_node("Add", [acc, piece], [out], name=f"{proj.name or core}_add_pooled{n}"))
                acc = out
            new_nodes[id(proj)] = [proj_new] + tail
            folded += len(constant)
        if folded:
            nodes = []
            for node in model.graph.node:
                nodes.extend(new_nodes.get(id(node), [node]))
            del model.graph.node[:]
            model.graph.node.extend(nodes)
            # broadcasts that fed only the concat are now dead: drop them
            from .eliminate_dead import EliminateDead

            EliminateDead().run(model, PassContext())
        return folded


def _broadcast_of_1x1(idx: GraphIndex, shapes, name: str) -> str | None:
    """If `name` is a 1x1 spatial map broadcast to full size (Resize nearest/linear, Expand, Tile), the map."""
    node = idx.producer.get(name)
    if node is None or node.op_type not in ("Resize", "Expand", "Tile"):
        return None
    if node.op_type == "Resize" and attr(node, "mode", b"nearest") not in (b"nearest", b"linear", "nearest", "linear"):
        return None
    src = shapes.get(node.input[0])
    if src is None or len(src) != 4 or src[2:] != (1, 1) or src[0] != 1:
        return None
    return node.input[0]
