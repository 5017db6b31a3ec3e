"""Estimated device latency: a per-layer roofline from a target's peak compute and bandwidth, with three
efficiencies (dense conv, depthwise conv, memory) fitted to published device timings of public networks
(`latency_anchors.toml`). Always an *estimate*: every number this module returns is labelled so.

Per layer: time = max(FLOPs / (peak x efficiency of its kind), bytes / (bandwidth x memory efficiency)).
Unary activations and Q/DQ nodes are free (fused into their producer by TVM and by ncnn alike); shape
ops are free; every other op moves its inputs and outputs through memory.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
import onnx

from optkit.graph.index import GraphIndex, attr, static_shapes
from optkit.graph.stats import node_flops

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LABEL = "estimated"
FREE_OPS = {"Relu", "Clip", "Sigmoid", "HardSwish", "HardSigmoid", "LeakyRelu", "PRelu", "Tanh", "Identity",
            "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Constant", "QuantizeLinear",
            "DequantizeLinear", "Dropout"}
KINDS = ("dense", "depthwise", "memory")
_ELEMENT_BYTES = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1,
                  onnx.TensorProto.INT64: 8, onnx.TensorProto.INT32: 4, onnx.TensorProto.FLOAT16: 2}


@dataclass(frozen=True)
class LayerCost:
    """Device-independent cost of one node."""

    name: str
    op: str
    kind: str          # dense | depthwise | memory
    int8: bool         # convolution on quantized weights (runs on the int8 peak)
    flops: int
    bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Device:
    fp32_gflops: float
    int8_gops: float
    bandwidth_gbs: float


@dataclass(frozen=True)
class Efficiency:
    dense: float
    depthwise: float
    memory: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def _dequantized(index: GraphIndex, name: str) -> bool:
    producer = index.producer.get(name)
    return producer is not None and producer.op_type == "DequantizeLinear"


def _tensor_bytes(name: str, shapes, elem: dict[str, int], as_int8: bool) -> int:
    if name not in shapes:
        return 0
    return int(np.prod(shapes[name], dtype=np.int64)) * (1 if as_int8 else elem.get(name, 4))


def layer_costs(model: onnx.ModelProto) -> list[LayerCost]:
    """FLOPs and bytes per node; QDQ convolutions count int8 operands (1 byte) and the int8 peak."""
    shapes = static_shapes(model, data_prop=True)
    index = GraphIndex(model.graph)
    elem = {v.name: _ELEMENT_BYTES.get(v.type.tensor_type.elem_type, 4)
            for v in [*model.graph.input, *model.graph.output, *model.graph.value_info]}
    elem.update({t.name: _ELEMENT_BYTES.get(t.data_type, 4) for t in model.graph.initializer})
    costs = []
    for node in model.graph.node:
        if node.op_type in FREE_OPS:
            continue
        int8 = node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and any(
            _dequantized(index, i) for i in node.input[:2])

        moved = sum(_tensor_bytes(n, shapes, elem, int8 and _dequantized(index, n))
                    for n in [*node.input, *node.output] if n)
        kind = "memory"
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            groups = attr(node, "group", 1)
            kind = "depthwise" if groups > 1 and groups == shapes.get(node.output[0], (0, 0))[1] else "dense"
        costs.append(LayerCost(node.name or node.output[0], node.op_type, kind, int8, node_flops(node, shapes),
                               moved))
    return costs


def layer_ms(costs: list[LayerCost], device: Device, eff: Efficiency) -> np.ndarray:
    flops = np.array([c.flops for c in costs], dtype=np.float64)
    moved = np.array([c.bytes for c in costs], dtype=np.float64)
    peak = np.array([device.int8_gops if c.int8 else device.fp32_gflops for c in costs]) * 1e9
    compute_eff = np.array([getattr(eff, c.kind) if c.kind != "memory" else 1.0 for c in costs])
    compute = np.where(flops > 0, flops / (peak * compute_eff), 0.0)
    memory = moved / (device.bandwidth_gbs * 1e9 * eff.memory)
    return np.maximum(compute, memory) * 1e3


@dataclass(frozen=True)
class Anchor:
    net: str
    device_name: str
    device: Device
    published_ms: float
    source: str


@functools.lru_cache(maxsize=1)
def anchor_entries() -> list[dict]:
    """The [[anchor]] entries of latency_anchors.toml (the roofline and the count-based estimate share them)."""
    return tomllib.loads(resources.files("optkit.harness").joinpath("latency_anchors.toml").read_text())["anchor"]


@functools.lru_cache(maxsize=1)
def anchors() -> tuple[Anchor, ...]:
    out = []
    for a in anchor_entries():
        device = Device(float(a["fp32_gflops"]), float(a["fp32_gflops"]) * 2, float(a["bandwidth_gbs"]))
        out.append(Anchor(a["net"], a["device"], device, float(a["published_ms"]), a["source"]))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _anchor_costs() -> dict[str, list[LayerCost]]:
    from optkit.harness.anchor_nets import ANCHOR_NETS

    return {name: layer_costs(build()) for name, build in ANCHOR_NETS.items()}


@functools.lru_cache(maxsize=1)
def calibrated_efficiency() -> Efficiency:
    """Least squares in log(ms) over a log-spaced grid of the three efficiencies (deterministic)."""
    grid = np.geomspace(0.02, 1.0, 48)
    d, w, m = np.meshgrid(grid, grid, grid, indexing="ij")
    loss = np.zeros_like(d)
    for a in anchors():
        costs = _anchor_costs()[a.net]
        memory = layer_ms([LayerCost(c.name, c.op, "memory", c.int8, 0, c.bytes) for c in costs], a.device,
                          Efficiency(1.0, 1.0, 1.0))
        compute = layer_ms([LayerCost(c.name, c.op, c.kind, c.int8, c.flops, 0) for c in costs], a.device,
                           Efficiency(1.0, 1.0, 1.0))
        total = np.zeros_like(d)
        for kind, eff in (("dense", d), ("depthwise", w), ("memory", None)):
            sel = np.array([c.kind == kind for c in costs])
            if not sel.any():
                continue
            c_k, m_k = compute[sel][:, None, None, None], memory[sel][:, None, None, None]
            scaled = c_k / eff if eff is not None else c_k
            total += np.maximum(scaled, m_k / m).sum(axis=0)
        loss += (np.log(total) - np.log(a.published_ms)) ** 2
    i = np.unravel_index(np.argmin(loss), loss.shape)
    return Efficiency(float(d[i]), float(w[i]), float(m[i]))


def calibration_table() -> list[dict]:
    """Estimated vs published ms for every anchor, with the fitted efficiencies."""
    eff = calibrated_efficiency()
    rows = []
    for a in anchors():
        est = float(layer_ms(_anchor_costs()[a.net], a.device, eff).sum())
        rows.append({"net": a.net, "device": a.device_name, "published_ms": a.published_ms,
                     "estimated_ms": round(est, 1), "error_pct": round(100 * (est / a.published_ms - 1), 1),
                     "source": a.source})
    return rows


@dataclass
class Estimate:
    total_ms: float
    layers: list[dict]
    efficiency: Efficiency
    label: str = LABEL

    def as_dict(self) -> dict:
        return {"label": self.label, "total_ms": round(self.total_ms, 3), "efficiency": self.efficiency.as_dict(),
                "layers": self.layers}


def estimate_latency(model: onnx.ModelProto, peak) -> Estimate:
    """Estimated latency of `model` on a target with `peak` (a targets.Peak)."""
    if peak.fp32_gflops <= 0 or peak.bandwidth_gbs <= 0:
        raise ValueError("the target declares no peak numbers (a host is measured, not estimated)")
    costs = layer_costs(model)
    eff = calibrated_efficiency()
    ms = layer_ms(costs, Device(peak.fp32_gflops, peak.int8_gops, peak.bandwidth_gbs), eff)
    layers = [{**c.as_dict(), "ms": round(float(t), 4)} for c, t in zip(costs, ms)]
    return Estimate(float(ms.sum()), layers, eff)
