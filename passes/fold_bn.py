"""`fold-bn`: fold inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm before it.

y = scale * (x - mean) / sqrt(var + eps) + bias is a per-channel affine map, so it folds into the
producer's weights (scaled per output channel) and bias. Refused, and left as it is, when folding
would change other results: the producer's output has another reader or is a graph output, or a
weight is not a constant.
"""

from __future__ import annotations

import numpy as np

from optkit.graph.index import GraphIndex, attr, remove_unused_initializers
from optkit.pass_infra.contract import Pass, PassContext, PassResult

FOLDABLE = ("Conv", "ConvTranspose", "Gemm")


def _scale_weight(op: str, node, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Multiply each output channel of a weight by s."""
    if op == "Conv":  # (Cout, Cin/g, k...)
        return w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    if op == "ConvTranspose":  # (Cin, Cout/g, k...); output channel = g * Cout/g + j
        group = attr(node, "group", 1)
        cin, cout_g = w.shape[0], w.shape[1]
        grouped = w.reshape((group, cin // group, cout_g) + w.shape[2:])
        grouped = grouped * s.reshape((group, 1, cout_g) + (1,) * (w.ndim - 2))
        return grouped.reshape(w.shape)
    # Gemm: Y = A @ B (or B^T); output channels are B's columns (rows when transB=1).
    return w * (s.reshape(-1, 1) if attr(node, "transB", 0) else s.reshape(1, -1))


class FoldBatchNorm(Pass):
    name = "fold-bn"
    exact = True
    summary = "fold BatchNormalization into the preceding Conv, ConvTranspose or Gemm"

    def run(self, model, ctx: PassContext) -> PassResult:
        graph = model.graph
        idx = GraphIndex(graph)
        folded, refused = 0, {}
        remove: set[int] = set()
        vanished: set[str] = set()
        for bn in list(graph.node):
            if bn.op_type != "BatchNormalization":
                continue
            reason = self._refusal(bn, idx)
            if reason:
                refused[bn.name or bn.output[0]] = reason
                continue
            producer = idx.producer[bn.input[0]]
            self._fold(producer, bn, idx)
            # The producer now writes the BN's output; the BN disappears.
            vanished.add(producer.output[0])
            producer.output[0] = bn.output[0]
            remove.add(id(bn))
            folded += 1
        if folded:
            keep = [n for n in graph.node if id(n) not in remove]
            del graph.node[:]
            graph.node.extend(keep)
            remove_unused_initializers(graph)
            value_info = [vi for vi in graph.value_info if vi.name not in vanished]
            del graph.value_info[:]
            graph.value_info.extend(value_info)
        for name, why in refused.items():
            ctx.log.info("fold-bn: left %s: %s", name, why)
        return PassResult(model, folded > 0, {"folded": folded, "refused": len(refused)})

    @staticmethod
    def _refusal(bn, idx: GraphIndex) -> str | None:
        if len([o for o in bn.output if o]) > 1 or attr(bn, "training_mode", 0):
            return "training-mode BatchNormalization"
        producer = idx.producer.get(bn.input[0])
        if producer is None or producer.op_type not in FOLDABLE:
            return "not preceded by Conv/ConvTranspose/Gemm"
        if idx.uses(bn.input[0]) != 1:
            return f"{producer.op_type} output '{bn.input[0]}' has other readers"
        consts = [idx.constant(n) for n in bn.input[1:5]]
        if any(c is None for c in consts):
            return "BatchNormalization parameters are not constant"
        if idx.constant(producer.input[1]) is None:
            return f"{producer.op_type} weight '{producer.input[1]}' is not constant"
        if len(producer.input) > 2 and producer.input[2] and idx.constant(producer.input[2]) is None:
            return f"{producer.op_type} bias '{producer.input[2]}' is not constant"
        if producer.op_type == "Gemm":
            w = idx.constant(producer.input[1])
            n_out = w.shape[0] if attr(producer, "transB", 0) else w.shape[1]
            if consts[0].shape != (n_out,):
                return "Gemm output is not (N, C) with C matching the BatchNormalization"
        return None

    @staticmethod
    def _fold(producer, bn, idx: GraphIndex) -> None:
        gamma, beta, mean, var = (idx.constant(n).astype(np.float64) for n in bn.input[1:5])
        eps = attr(bn, "epsilon", 1e-5)
        s = gamma / np.sqrt(var + eps)
        shift = beta - mean * s
        w = idx.constant(producer.input[1])
        dtype = w.dtype
        new_w = _scale_weight(producer.op_type, producer, w.astype(np.float64), s).astype(dtype)
        has_bias = len(producer.input) > 2 and producer.input[2]
        if producer.op_type == "Gemm":
            alpha, beta_g = attr(producer, "alpha", 1.0), attr(producer, "beta", 1.0)
            new_w = (new_w.astype(np.float64) * alpha).astype(dtype)
            c = idx.constant(producer.input[2]).astype(np.float64) * beta_g if has_bias else 0.0
            new_b = (np.asarray(c) * s + shift).astype(dtype)
            for a in list(producer.attribute):
                if a.name in ("alpha", "beta"):
                    producer.attribute.remove(a)
        else:
            b = idx.constant(producer.input[2]).astype(np.float64) if has_bias else 0.0
            new_b = (b * s + shift).astype(dtype)
        # Fresh names: the old weights may be shared with other nodes.
        w_name = idx.fresh_name(f"{producer.input[1]}_bnfold")
        b_name = idx.fresh_name(f"{(producer.name or producer.output[0])}_bias_bnfold")
        idx.set_initializer(w_name, new_w)
        idx.set_initializer(b_name, new_b)
        producer.input[1] = w_name
        if has_bias:
            producer.input[2] = b_name
        else:
            producer.input.append(b_name)
