"""Measured channel importance: what removing each prunable channel costs the model's outputs on
calibration data.

A filter norm ranks the channels of one layer by their weights, and says nothing about what the network
after them does with a channel. On the real MediaPipe models the two disagree badly: removing the one
channel of a palm_detection_lite stream group with the smallest output cost already leaves its worst
output at 14-26 dB, while hand_landmark_lite has channels whose removal costs nothing at all
(docs/real-prune.md).

Removing a channel is, exactly, every Conv that reads it seeing zeros there (its weight column is what
pruning deletes; depthwise layers, pooling and residual adds only carry the channel to those Convs). So
one probe model, with a mask input per channel group multiplied into each consuming Conv's input,
measures every channel in one onnxruntime session: one run per channel and sample.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from optkit.core.resources import bounded_ort_run
from optkit.graph.channel_deps import Dependencies
from optkit.graph.index import GraphIndex, insert_after_producers
from optkit.graph.numerics import ort_session


def masked_probe(model: onnx.ModelProto, deps: Dependencies) -> tuple[onnx.ModelProto, dict[int, str]]:
    """The model with one float input per prunable group (its channel mask, all ones = the model itself)
    applied to the input channels of every Conv/ConvTranspose that reads the group. Returns it and the
    mask input of each group."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    masks = {g.gid: f"_optkit_mask{g.gid}" for g in deps.prunable()}
    offsets, total = {}, 0
    for gid in masks:
        offsets[gid] = total
        total += deps.groups[gid].size
    graph.input.extend(helper.make_tensor_value_info(masks[gid], TensorProto.FLOAT, [deps.groups[gid].size])
                       for gid in masks)
    graph.initializer.append(numpy_helper.from_array(np.ones(1, np.float32), "_optkit_mask_one"))
    index = GraphIndex(graph)
    spliced: dict[str, list[onnx.NodeProto]] = {}
    renames: dict[str, str] = {}
    every_mask = "_optkit_masks"
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or (node.name or node.output[0]) not in deps.consumers:
            continue
        tensor = node.input[0]
        chs = deps.channels.get(tensor)
        if tensor in renames or chs is None or not any(g in masks for g, _ in chs):
            continue
        picks = np.array([offsets[g] + i if g in masks else total for g, i in chs], np.int64)
        spatial = len(index.initializers[node.input[1]].dims) - 2
        p = index.fresh_name(f"{tensor}_masked")
        graph.initializer.extend([numpy_helper.from_array(picks, p + "_picks"),
                                  numpy_helper.from_array(np.array([1, len(chs)] + [1] * spatial, np.int64), p + "_shape")])
        spliced[tensor] = [helper.make_node("Gather", [every_mask, p + "_picks"], [p + "_m"]),
                           helper.make_node("Reshape", [p + "_m", p + "_shape"], [p + "_m4"]),
                           helper.make_node("Mul", [tensor, p + "_m4"], [p])]
        renames[tensor] = p
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and (node.name or node.output[0]) in deps.consumers:
            node.input[0] = renames.get(node.input[0], node.input[0])
    insert_after_producers(graph, spliced,
                           head=[helper.make_node("Concat", [*masks.values(), "_optkit_mask_one"], [every_mask], axis=0)])
    return probe, masks


_MEASURED: dict[str, dict[int, np.ndarray]] = {}     # by content: one measurement serves every FLOP target


def _key(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> str:
    digest = hashlib.sha256(model.SerializeToString(deterministic=True))
    for feed in feeds:
        for name in sorted(feed):
            digest.update(name.encode() + str(feed[name].shape).encode() + np.ascontiguousarray(feed[name]).tobytes())
    return digest.hexdigest()


def channel_impact(model: onnx.ModelProto, deps: Dependencies, feeds: list[dict[str, np.ndarray]]
                   ) -> dict[int, np.ndarray]:
    """Per prunable group, per channel: the noise-to-signal power ratio of the worst output over `feeds`
    when that channel alone is removed (0: the channel does nothing; 1: as far off as outputs of zeros).
    Measured once per model and samples in a process (bench/real_prune.py asks for several targets)."""
    key = _key(model, feeds)
    if key not in _MEASURED:
        _MEASURED.clear()
        _MEASURED[key] = _measure(model, deps, feeds)
    return {gid: scores.copy() for gid, scores in _MEASURED[key].items()}


def _measure(model: onnx.ModelProto, deps: Dependencies, feeds: list[dict[str, np.ndarray]]) -> dict[int, np.ndarray]:
    probe, masks = masked_probe(model, deps)
    session = ort_session(probe)
    ones = {m: np.ones(deps.groups[g].size, np.float32) for g, m in masks.items()}
    outputs = [o.name for o in model.graph.output]

    def run(mask: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [bounded_ort_run(session, {**feed, **mask}, "channel impact", outputs) for feed in feeds]

    def energy(arrays) -> float:
        return sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays)

    reference = run(ones)
    power = {k: max(energy(r[k] for r in reference), 1e-30) for k in outputs}
    impact = {}
    for gid, name in masks.items():
        scores = np.zeros(deps.groups[gid].size)
        for c in range(len(scores)):
            mask = ones[name].copy()
            mask[c] = 0
            got = run({**ones, name: mask})
            scores[c] = max(energy(g[k] - r[k] for g, r in zip(got, reference)) / power[k] for k in outputs)
        impact[gid] = scores
    return impact
