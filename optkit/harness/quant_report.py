"""Per-tensor quantization error: run the float and the quantized model on calibration data, match
tensors by name, and rank them by SQNR (lowest first) — which layers lose the accuracy."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx

from optkit.graph.numerics import cosine, run_ort, sqnr_db, with_intermediate_outputs


@dataclass
class TensorError:
    tensor: str
    node: str          # the float model's node that produces the tensor
    op: str
    sqnr_db: float     # accumulated error at this tensor, float model vs quantized model
    cosine: float

    def as_dict(self):
        d = asdict(self)
        d["sqnr_db"] = None if not np.isfinite(self.sqnr_db) else round(self.sqnr_db, 3)
        d["cosine"] = round(self.cosine, 6)
        return d


def _as_seen_downstream(quant_model: onnx.ModelProto) -> dict[str, str]:
    """Float tensor name -> the quantized model's tensor that its consumers read: the output of the
    QuantizeLinear -> DequantizeLinear pair that follows it. The quantizer drops Relu/Clip before such a
    pair (the int8 range clamps instead), so the tensor under the original name is then unclamped."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in quant_model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen = {}
    for node in quant_model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        dq = [c for c in consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"]
        if dq:
            seen[node.input[0]] = dq[0].output[0]
    return seen


def tensor_errors(float_model: onnx.ModelProto, quant_model: onnx.ModelProto,
                  feeds_list: list[dict[str, np.ndarray]]) -> list[TensorError]:
    """Float node outputs that the quantized model also computes (same name), worst SQNR first."""
    producers = {o: n for n in float_model.graph.node for o in n.output if o}
    quant_names = {o for n in quant_model.graph.node for o in n.output}
    downstream = _as_seen_downstream(quant_model)
    names = [o for o in producers if o in quant_names and producers[o].op_type not in ("Constant",)]
    q_names = {n: downstream.get(n, n) for n in names}
    f_model = with_intermediate_outputs(float_model, names)
    q_model = with_intermediate_outputs(quant_model, sorted(set(q_names.values())))
    sums: dict[str, list] = {n: [[], []] for n in names}
    for feeds in feeds_list:
        ref, got = run_ort(f_model, feeds), run_ort(q_model, feeds)
        for n in names:
            q = q_names[n]
            if n in ref and q in got and ref[n].shape == got[q].shape:
                sums[n][0].append(ref[n].ravel())
                sums[n][1].append(got[q].ravel())
    rows = []
    for n, (r, g) in sums.items():
        if not r:
            continue
        ref_all, got_all = np.concatenate(r), np.concatenate(g)
        node = producers[n]
        rows.append(TensorError(n, node.name or n, node.op_type, sqnr_db(ref_all, got_all), cosine(ref_all, got_all)))
    rows.sort(key=lambda e: e.sqnr_db)
    return rows
