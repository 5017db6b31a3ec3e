"""Per-channel activation grids for the inputs of depthwise convolutions.

A depthwise layer's channel c reads only input channel c, so a grid per input channel costs nothing in
integer arithmetic: the accumulator of channel c is rescaled by s_x[c] · s_w[c] instead of s_x · s_w[c],
and the layer writing that tensor requantizes each channel by its own multiplier, which it already has
per channel for its weights. What it buys: a per-tensor uint8 grid spans the widest channel, and a channel
whose values are a hundred times smaller is then rounded to a few steps. On hand_landmark_lite one such
tensor (an expansion's Relu6 output, channel maxima from 0.07 to 6) cost the world landmarks 6.9 dB SQNR
on its own with one grid; with a grid per channel, 42.4 dB.

Each channel's range is its calibration min/max (holding 0), within the range the quantizer chose for the
whole tensor: where that range clips (a Relu6 folded into it, or calibrator=mse), the channel clips
alike."""

from __future__ import annotations

import numpy as np
import onnx

from optkit.core.resources import bounded_ort_run
from optkit.graph.index import GraphIndex, attr, remove_unused_initializers
from optkit.graph.numerics import ort_session, with_intermediate_outputs

ChannelRange = tuple[np.ndarray, np.ndarray]      # (lo[C], hi[C])


def depthwise_inputs(model: onnx.ModelProto) -> list[str]:
    """Float tensors computed by the graph whose every reader is a depthwise Conv (one input channel per
    group and one output channel per input channel) reading it as its data input."""
    index = GraphIndex(model.graph)
    names = []
    for name, readers in index.consumers.items():
        if name not in index.producer or not readers:
            continue
        if all(_is_depthwise(index, r) and r.input[0] == name and name not in r.input[1:] for r in readers):
            names.append(name)
    return sorted(set(names) - index.graph_outputs)


def _is_depthwise(index: GraphIndex, node: onnx.NodeProto) -> bool:
    if node.op_type != "Conv" or len(node.input) < 2:
        return False
    weight = index.constant(node.input[1])
    groups = int(attr(node, "group", 1))
    return weight is not None and weight.ndim == 4 and groups > 1 and weight.shape[0] == groups and weight.shape[1] == 1


def observe(model: onnx.ModelProto, feeds: list[dict], names: list[str]) -> dict[str, ChannelRange]:
    """Per tensor of `names` (NCHW): each channel's (min, max) over `feeds`, widened to hold 0."""
    if not names:
        return {}
    probe = with_intermediate_outputs(model, names)
    session = ort_session(probe)
    present = [n for n in names if n in {o.name for o in probe.graph.output}]
    lows: dict[str, np.ndarray] = {}
    highs: dict[str, np.ndarray] = {}
    for sample in feeds:
        values = bounded_ort_run(session, sample, "calibration run", present)
        for n in present:
            v = values[n]
            if v.ndim != 4:
                continue
            lo, hi = v.min(axis=(0, 2, 3)), v.max(axis=(0, 2, 3))
            lows[n] = np.minimum(lows.get(n, lo), lo)
            highs[n] = np.maximum(highs.get(n, hi), hi)
    return {n: (np.minimum(lows[n], 0.0), np.maximum(highs[n], 0.0)) for n in lows}


def channel_qparams(lo: np.ndarray, hi: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale float32, zero point) of a uint8 (asymmetric) or int8 (symmetric) grid over each
    [lo, hi]; a channel that is all zero gets scale 1."""
    if dtype == np.int8:
        absmax = np.maximum(-lo, hi)
        scale = np.where(absmax > 0, absmax / 127, 1.0).astype(np.float32)
        return scale, np.zeros(lo.shape, np.int8)
    scale = np.where(hi > lo, (hi - lo) / 255, 1.0).astype(np.float32)
    return scale, np.clip(np.round(-lo / scale), 0, 255).astype(np.uint8)


def within(ranges: dict[str, ChannelRange], tensor_ranges: dict[str, tuple[float, float]]) -> dict[str, ChannelRange]:
    """Each channel's range clipped to its tensor's range (where the tensor has one)."""
    out = {}
    for name, (lo, hi) in ranges.items():
        t_lo, t_hi = tensor_ranges.get(name, (-np.inf, np.inf))
        out[name] = (np.clip(lo, min(t_lo, 0.0), 0.0), np.clip(hi, 0.0, max(t_hi, 0.0)))
    return out


def apply(model: onnx.ModelProto, ranges: dict[str, ChannelRange]) -> list[str]:
    """Give each 8-bit QuantizeLinear of a tensor in `ranges`, and its DequantizeLinear readers, a grid per
    channel (axis 1) inside the range it has now. Returns the tensors changed."""
    index = GraphIndex(model.graph)
    changed = []
    for node in list(model.graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in ranges or len(node.input) < 3:
            continue
        scale, zero = index.constant(node.input[1]), index.constant(node.input[2])
        readers = index.consumers.get(node.output[0], [])
        if scale is None or zero is None or scale.size != 1 or zero.dtype not in (np.uint8, np.int8) \
                or not readers or any(r.op_type != "DequantizeLinear" for r in readers):
            continue
        info = np.iinfo(zero.dtype)
        s, z = float(scale.reshape(-1)[0]), int(zero.reshape(-1)[0])
        lo, hi = ranges[node.input[0]]
        lo, hi = np.clip(lo, (info.min - z) * s, 0.0), np.clip(hi, 0.0, (info.max - z) * s)
        channel_scale, channel_zero = channel_qparams(lo, hi, zero.dtype.type)
        scale_name = index.fresh_name(f"{node.input[0]}_channel_scale")
        index.set_initializer(scale_name, channel_scale)
        zero_name = index.fresh_name(f"{node.input[0]}_channel_zero_point")
        index.set_initializer(zero_name, channel_zero)
        for q in (node, *readers):
            q.input[1], q.input[2] = scale_name, zero_name
            kept = [a for a in q.attribute if a.name != "axis"]
            del q.attribute[:]
            q.attribute.extend([*kept, onnx.helper.make_attribute("axis", 1)])
        changed.append(node.input[0])
    if changed:
        remove_unused_initializers(model.graph)
    return changed
