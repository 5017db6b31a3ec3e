"""Which activations and weights cost the outputs most when quantized, and so which few to keep wider:
activations in 16 bits, layers in float.

The float model is run with a simulated uint8 quantize-dequantize after every candidate tensor, and each
candidate weight replaced by its rounded int8 value, each behind its own on/off switch (an extra input),
once per candidate with only that switch on. Quantization noise from
different tensors is close to independent, so the per-tensor noises add up to about the int8 model's; on
hand_landmark_lite 7 of 99 tensors carry 91 % of it. The choice then keeps the largest contributors to the
worst output in 16 bits until the predicted worst output SQNR reaches the target."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from optkit.passes.int8 import channel_grids

from optkit.core.resources import bounded_ort_run
from optkit.graph.index import insert_after_producers
from optkit.graph.numerics import ort_session


def fake_quantize(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale, zero = _qparams(lo, hi)
    return ((np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale).astype(x.dtype)


def _qparams(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (scale, zero point) over [lo, hi] widened to hold 0: scalars, or vectors for a grid per channel."""
    return channel_grids.channel_qparams(np.minimum(lo, 0.0), np.maximum(hi, 0.0), np.uint8)


def with_switches(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]],
                  weights: dict[str, np.ndarray] | None = None) -> tuple[onnx.ModelProto, list[str]]:
    """The model with `x + on * (dequantize(quantize(x)) - x)` read in place of each tensor x of `ranges`
    (graph outputs excepted; a range of vectors is a grid per channel), then `w + on * (rounded - w)` in
    place of each weight of `weights` (name -> rounded value); each `on` is a new float input of shape [1].
    Returns it and the switch names, in that order."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    spliced: dict[str, list[onnx.NodeProto]] = {}
    switches, renames = [], {}
    for i, (name, (lo, hi)) in enumerate(ranges.items()):
        scale, zero = _qparams(lo, hi)
        axis = {"axis": 1} if scale.ndim else {}          # a grid per channel (passes/int8/channel_grids.py)
        p = f"_optkit_switch{i}"
        graph.initializer.extend([numpy_helper.from_array(np.array(scale), p + "_s"),
                                  numpy_helper.from_array(np.array(zero), p + "_z")])
        graph.input.append(helper.make_tensor_value_info(p, TensorProto.FLOAT, [1]))
        switches.append(p)
        spliced[name] = [
            helper.make_node("QuantizeLinear", [name, p + "_s", p + "_z"], [p + "_q"], **axis),
            helper.make_node("DequantizeLinear", [p + "_q", p + "_s", p + "_z"], [p + "_dq"], **axis),
            helper.make_node("Sub", [p + "_dq", name], [p + "_e"]),
            helper.make_node("Mul", [p + "_e", p], [p + "_me"]),
            helper.make_node("Add", [name, p + "_me"], [p + "_x"]),
        ]
        renames[name] = p + "_x"
    weight_nodes = []
    for i, (name, rounded) in enumerate((weights or {}).items()):
        p = f"_optkit_wswitch{i}"
        original = next(numpy_helper.to_array(t) for t in graph.initializer if t.name == name)
        graph.initializer.append(numpy_helper.from_array((rounded - original).astype(np.float32), p + "_d"))
        graph.input.append(helper.make_tensor_value_info(p, TensorProto.FLOAT, [1]))
        switches.append(p)
        weight_nodes += [helper.make_node("Mul", [p + "_d", p], [p + "_md"]),
                         helper.make_node("Add", [name, p + "_md"], [p + "_w"])]
        renames[name] = p + "_w"
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in renames:
                node.input[k] = renames[name]
    insert_after_producers(graph, spliced, head=weight_nodes)
    return out, switches


def tensor_noise(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]], feeds: list[dict],
                 weights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """For each tensor of `ranges` and weight of `weights`, its noise on each output when quantized alone:
    noise power over the output's power on `feeds`, one value per graph output."""
    outputs = [o.name for o in model.graph.output]
    inner = {n: r for n, r in ranges.items() if n not in outputs}
    switched, switches = with_switches(model, inner, weights)
    session = ort_session(switched)
    off = {s: np.zeros(1, np.float32) for s in switches}
    reference = [bounded_ort_run(session, {**f, **off}, "sensitivity run", outputs) for f in feeds]
    power = np.array([sum(float(np.sum(np.square(r[o], dtype=np.float64))) for r in reference) for o in outputs])
    power = np.maximum(power, 1e-30)
    noise = {}
    for name, switch in zip([*inner, *(weights or {})], switches):
        total = np.zeros(len(outputs))
        for f, ref in zip(feeds, reference):
            got = bounded_ort_run(session, {**f, **off, switch: np.ones(1, np.float32)}, "sensitivity run", outputs)
            total += [float(np.sum((got[o].astype(np.float64) - ref[o]) ** 2)) for o in outputs]
        noise[name] = total / power
    for k, name in enumerate(outputs):        # an output's own quantization: its error, on that output only
        if name in ranges:
            own = np.zeros(len(outputs))
            own[k] = sum(float(np.sum((fake_quantize(r[name], *ranges[name]).astype(np.float64) - r[name]) ** 2))
                         for r in reference) / power[k]
            noise[name] = own
    return noise


def keep_wide(noise: dict[str, np.ndarray], target_db: float, cost: dict[str, int], max_cost: int,
              max_tensors: int = 64) -> tuple[list[str], float]:
    """Tensors to keep out of 8 bits, largest noise on the worst output first, until the predicted worst
    output SQNR (-10·log10 of the noise left on it) reaches `target_db`; when nothing affordable helps the
    worst output, the next worst one is served. A tensor costs `cost[name]` (the Convs it would push out of
    int8); the total stays within `max_cost`. Returns them and the predicted worst output SQNR."""
    names = list(noise)
    if not names:
        return [], float("inf")
    matrix = np.array([noise[n] for n in names])
    left = matrix.sum(axis=0)
    chosen: list[str] = []
    spent = 0

    def predicted() -> float:
        worst = float(left.max())
        return float("inf") if worst <= 0 else -10 * np.log10(worst)

    while predicted() < target_db and len(chosen) < max_tensors:
        pick = None
        for output in np.argsort(-left):          # the worst output first; the next when it cannot improve
            if -10 * np.log10(max(float(left[output]), 1e-300)) >= target_db:
                break
            pick = next((i for i in np.argsort(-matrix[:, output]) if names[i] not in chosen
                         and spent + cost.get(names[i], 0) <= max_cost and matrix[i, output] > 0), None)
            if pick is not None:
                break
        if pick is None:
            break
        chosen.append(names[pick])
        spent += cost.get(names[pick], 0)
        left = left - matrix[pick]
    return chosen, predicted()
