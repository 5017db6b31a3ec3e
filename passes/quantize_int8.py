"""`quantize-int8`: static post-training quantization to QDQ int8 with onnxruntime's quantizer.

Weights: per-channel symmetric int8, rounded to nearest or, with `rounding=gptq`, so that each layer's
output error on the calibration data is least (passes/int8/rounding.py). Activations: uint8 (asymmetric)
or int8 (symmetric), ranges from calibration data with the MinMax, Percentile or Entropy calibrator, or
per tensor by its own quantization error (`calibrator=mse`, passes/int8/ranges.py), and with
`depthwise_channel_grids` one grid per channel for the inputs of depthwise layers
(passes/int8/channel_grids.py). Mixed precision
(`mixed_sqnr_db`): the few activations that cost the outputs most stay 16-bit and the few such layers
float (passes/int8/sensitivity.py). Bias correction (`bias_correction`): each layer's output mean is moved
back to the float model's through its bias (passes/int8/bias_correction.py). A Concat's output takes the
grid of an input that covers its range, when at most 10 % coarser, so the build copies that input's bytes
(passes/int8/concat_grids.py). Nodes named in `exclude` stay in float (the accuracy-aware mode uses this).
Lossy: the manager records its output error.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from optkit.passes.int8 import bias_correction, channel_grids, concat_grids, layer_inputs, ranges, rounding, sensitivity

from optkit.core.errors import OptionError
from optkit.graph.index import GraphIndex, attr, remove_unused_initializers
from optkit.pass_infra.calibration import calibration_set
from optkit.pass_infra.contract import Pass, PassContext, PassOption, PassResult, choice, copy_model

CALIBRATORS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy, "mse": CalibrationMethod.MinMax}
ACTIVATIONS = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
WIDE = {"uint8": QuantType.QUInt16, "int8": QuantType.QInt16}
SENSITIVITY_SAMPLES = 8


class _QuantizerNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return ("pre-processing" not in message and "is out-of-range for weight" not in message
                and "16-bit integer quantization natively" not in message)


@contextlib.contextmanager
def _without_quantizer_noise():
    """onnxruntime's quantizer logs, on the root logger, advice to run its pre-processing (shape inference,
    folding), which the pipelines already do with simplify and fold-bn, and one warning per rank-1 weight
    (an InstanceNormalization scale: 'Axis 1 is out-of-range'), which it then quantizes per tensor as it
    should; and, with 16-bit activations, that it raises the opset to 21, which it must. None of it says
    anything about the user's model."""
    noise = _QuantizerNoise()
    logging.getLogger().addFilter(noise)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(noise)


class _Reader(CalibrationDataReader):
    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def canonical_gemms(model: onnx.ModelProto) -> int:
    """Gemms with constant B and C in the form onnxruntime's quantizer handles: alpha folded into B, beta into
    C, and C of shape (N,). A bias of shape (1,) raised IndexError in the quantizer, alpha with a (1, N) bias
    ValueError. Returns the number of Gemms rewritten."""
    index = GraphIndex(model.graph)
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "Gemm" or len(node.input) < 2:
            continue
        b = index.constant(node.input[1])
        c = index.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
        if b is None or b.ndim != 2 or (len(node.input) > 2 and node.input[2] and c is None):
            continue
        n = b.shape[0] if attr(node, "transB", 0) else b.shape[1]
        if alpha == 1.0 and beta == 1.0 and (c is None or c.shape == (n,)):
            continue
        if c is not None and c.size not in (1, n) or (c is not None and c.ndim == 2 and c.shape[0] != 1):
            continue                                      # a bias per row (M, N): left as it is
        new_b = index.fresh_name(f"{node.input[1]}_canonical")
        index.set_initializer(new_b, (b * np.float32(alpha)).astype(b.dtype))
        node.input[1] = new_b
        if c is not None:
            new_c = index.fresh_name(f"{node.input[2]}_canonical")
            index.set_initializer(new_c, np.broadcast_to(c.reshape(-1) * np.float32(beta), (n,)).astype(c.dtype))
            node.input[2] = new_c
        kept = [a for a in node.attribute if a.name not in ("alpha", "beta")]
        del node.attribute[:]
        node.attribute.extend(kept)
        rewritten += 1
    if rewritten:
        remove_unused_initializers(model.graph)
    return rewritten


@dataclass
class _Weight:
    node: onnx.NodeProto
    rounded: np.ndarray          # int8 grid values as float, in the initializer's own shape
    scales: np.ndarray           # per output channel
    axis: int                    # the initializer's channel axis


def _rounded_weights(model: onnx.ModelProto, feeds: list[dict], exclude: set[str], mode: str) -> dict[str, _Weight]:
    """Each Conv/Gemm weight (an initializer no other node reads, its node not excluded) rounded to the
    per-channel int8 grid: to nearest, or by GPTQ against the layer's inputs on `feeds`."""
    index = GraphIndex(model.graph)
    weights = {}
    for layer in layer_inputs.collect(model, feeds if mode == "gptq" else []):   # nearest needs no statistics
        name = layer.node.input[1]
        if layer.node.name in exclude or name not in index.initializers or index.uses(name) != 1:
            continue
        rounded = rounding.gptq_round(layer.weight, layer.hessian) if mode == "gptq" else rounding.nearest_round(layer.weight)
        transposed = layer.node.op_type == "Gemm" and not attr(layer.node, "transB", 0)
        original = index.constant(name)
        rounded = rounded[0].T if transposed else rounded.reshape(original.shape)
        weights[name] = _Weight(layer.node, rounded.astype(original.dtype), rounding.channel_scales(layer.weight).ravel(),
                                1 if transposed else 0)
    return weights


def _apply_rounding(model: onnx.ModelProto, weights: dict[str, _Weight]) -> dict[str, list[dict]]:
    """Write the rounded weights into the model and return the per-channel scales the quantizer must use
    so that it reproduces that grid exactly."""
    index = GraphIndex(model.graph)
    overrides = {}
    for name, weight in weights.items():
        index.set_initializer(name, weight.rounded)
        overrides[name] = [{"scale": np.float32(s), "zero_point": np.int8(0), **({"axis": weight.axis} if c == 0 else {})}
                           for c, s in enumerate(weight.scales)]
    return overrides


@dataclass
class _Mixed:
    wide: list[str]              # activations kept 16-bit
    float_layers: list[str]      # Conv/Gemm nodes kept in float
    predicted_sqnr_db: float
    convs_not_int8: int


def _mixed_precision(model: onnx.ModelProto, feeds: list[dict], weights: dict[str, _Weight], target_db: float,
                     conv_share: float, per_channel: set[str]) -> _Mixed:
    """The activations to keep 16-bit and the layers to keep float (sensitivity.keep_wide) so that the
    predicted worst output SQNR reaches `target_db`, with at most `conv_share` of the Convs out of int8 (a
    Conv reading a 16-bit activation runs in float too). Tensors read only by Relu/Clip are not candidates:
    the quantizer folds those into the range of their output. Tensors of `per_channel` are measured on
    the grid per channel they will get."""
    index = GraphIndex(model.graph)
    folded = {name for name, readers in index.consumers.items()
              if readers and all(r.op_type in ("Relu", "Clip") for r in readers)}
    names = [n for n in ranges.activation_tensors(model) if n not in folded]
    sample = feeds[:SENSITIVITY_SAMPLES]
    bounds, _ = ranges.observe(model, sample, names)
    bounds = {n: b for n, b in bounds.items() if b[1] > b[0]}
    channels = channel_grids.within(channel_grids.observe(model, sample, sorted(per_channel & set(bounds))), bounds)
    cost = {n: sum(r.op_type == "Conv" for r in index.consumers.get(n, [])) for n in bounds}
    cost |= {n: int(w.node.op_type == "Conv") for n, w in weights.items()}
    noise = sensitivity.tensor_noise(model, bounds | channels, sample, {n: w.rounded for n, w in weights.items()})
    convs = sum(n.op_type == "Conv" for n in model.graph.node)
    chosen, predicted = sensitivity.keep_wide(noise, target_db, cost, int(conv_share * convs))
    return _Mixed([n for n in chosen if n not in weights], [weights[n].node.name for n in chosen if n in weights],
                  predicted, sum(cost[n] for n in chosen))


class QuantizeInt8(Pass):
    name = "quantize-int8"
    exact = False
    # Reference models reach 19 (gesture) to 47 dB (face); below 12 dB the int8 model is broken, not rough.
    min_output_sqnr_db = 12.0
    summary = "static int8 quantization (QDQ): per-channel symmetric weights, calibrated activations"
    options = {
        "calibrator": PassOption(choice(*CALIBRATORS), "minmax", "minmax | percentile | entropy | mse (per tensor, "
                                                                  "the range of least quantization error)"),
        "rounding": PassOption(choice("nearest", "gptq"), "nearest", "weight rounding: nearest | gptq (least "
                                                                     "output error per layer on the calibration data)"),
        "activations": PassOption(choice(*ACTIVATIONS), "uint8", "uint8 (asymmetric) | int8 (symmetric)"),
        "mixed_sqnr_db": PassOption(float, 0.0, "mixed precision: keep the activations (16-bit) and layers (float) "
                                                "that cost the worst output most until its predicted SQNR reaches "
                                                "this (dB; 0 = all int8)"),
        "mixed_conv_share": PassOption(float, 0.1, "at most this share of the Convs may leave int8 (kept float, or "
                                                   "reading a 16-bit activation)"),
        "depthwise_channel_grids": PassOption(bool, False, "a uint8/int8 grid per channel for tensors read only by "
                                                           "depthwise Convs (free in integer arithmetic; onnxruntime "
                                                           "runs such graphs with basic optimizations only)"),
        "bias_correction": PassOption(bool, False, "move each Conv/Gemm output's per-channel mean on the calibration "
                                                   "data back to the float model's, through its bias"),
        "exclude": PassOption(str, "", "node names to keep in float, joined by ';' (from Python: a list of names)"),
        "exclude_file": PassOption(str, "", "a text file of node names to keep in float, one per line: names "
                                            "with any character (tf2onnx names hold ';')"),
    }

    def loss_remedy(self) -> str:
        if self.config["mixed_sqnr_db"] <= 0:
            return ("try quantize-int8{rounding=gptq,calibrator=mse,mixed_sqnr_db=30,depthwise_channel_grids=true}, "
                    "which keeps the few costliest activations and layers out of int8 (docs/int8.md)")
        return "a larger mixed_conv_share lets more of the costliest layers leave int8 (docs/int8.md)"

    def _excluded(self) -> list[str]:
        names = self.config["exclude"]
        names = [n for n in (names.split(";") if isinstance(names, str) else names) if n]
        if self.config["exclude_file"]:
            path = Path(self.config["exclude_file"])
            try:
                names += [line.rstrip("\r\n") for line in path.read_text().splitlines() if line.strip()]
            except OSError as exc:
                raise OptionError(f"pass 'quantize-int8': exclude_file {path}: {exc.strerror or exc}") from exc
        return names

    def run(self, model, ctx: PassContext) -> PassResult:
        if self.config["mixed_sqnr_db"] < 0 or not 0 <= self.config["mixed_conv_share"] <= 1:
            raise OptionError("pass 'quantize-int8': mixed_sqnr_db must be >= 0 (dB) and mixed_conv_share within "
                              "0..1 (a share of the Convs)")
        if ctx.calibration is None:
            raise OptionError("pass 'quantize-int8' needs calibration data: --calibration MODEL_NAME "
                              "or --calibration-data FILE.npz")
        calibration = calibration_set(ctx.calibration, model)
        feeds = calibration.samples
        exclude = self._excluded()
        names = {n.name for n in model.graph.node}
        unknown = [n for n in exclude if n not in names]
        if unknown:
            raise OptionError(f"pass 'quantize-int8': exclude names unknown node(s) {', '.join(unknown)}")
        symmetric = self.config["activations"] == "int8"
        gemms = canonical_gemms(model)
        reference = copy_model(model) if self.config["bias_correction"] else None
        mixed_target, mode = self.config["mixed_sqnr_db"], self.config["rounding"]
        weights = _rounded_weights(model, feeds, set(exclude), mode) if mixed_target > 0 or mode == "gptq" else {}
        per_channel = set(channel_grids.depthwise_inputs(model)) if self.config["depthwise_channel_grids"] else set()
        mixed = None
        if mixed_target > 0:
            mixed = _mixed_precision(model, feeds, weights, mixed_target, self.config["mixed_conv_share"], per_channel)
            exclude += mixed.float_layers
            weights = {n: w for n, w in weights.items() if w.node.name not in mixed.float_layers}
        overrides = _apply_rounding(model, weights) if mode == "gptq" else {}
        if self.config["calibrator"] == "mse":
            for name, (lo, hi) in ranges.choose_ranges(model, feeds, symmetric).items():
                overrides.setdefault(name, [{"rmin": np.float32(lo), "rmax": np.float32(hi)}])
        for name in mixed.wide if mixed else []:
            overrides.setdefault(name, [{}])[0]["quant_type"] = WIDE[self.config["activations"]]
        with tempfile.TemporaryDirectory(prefix="optkit-quant-") as tmp:
            src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(model.SerializeToString())
            with _without_quantizer_noise():
                quantize_static(
                    str(src), str(dst), _Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=ACTIVATIONS[self.config["activations"]], weight_type=QuantType.QInt8,
                    calibrate_method=CALIBRATORS[self.config["calibrator"]], nodes_to_exclude=exclude or None,
                    calibration_cache_path=None,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": symmetric,
                                   "CalibTensorRangeSymmetric": symmetric,
                                   **({"TensorQuantOverrides": overrides} if overrides else {})},
                )
            quantized = onnx.load(str(dst))
        per_channel -= set(mixed.wide if mixed else [])
        channel_tensors = channel_grids.apply(quantized, channel_grids.observe(model, feeds, sorted(per_channel)))
        shared_grids = concat_grids.share_concat_grids(quantized)
        corrected = bias_correction.correct_biases(reference, quantized, feeds) if reference is not None else 0
        quantized.graph.name = model.graph.name
        q_nodes = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
        return PassResult(quantized, True, {"calibration_samples": len(feeds),
                                            "calibration_sha256": calibration.sha256, "quantize_nodes": q_nodes,
                                            "float_nodes_kept": len(exclude), "calibrator": self.config["calibrator"],
                                            "rounding": self.config["rounding"],
                                            "concats_on_an_input_grid": shared_grids,
                                            **({"channel_grid_tensors": len(channel_tensors)} if per_channel else {}),
                                            **({"bias_corrected_layers": corrected} if reference is not None else {}),
                                            **({"int16_activations": mixed.wide, "float_layers": mixed.float_layers,
                                                "predicted_sqnr_db": round(mixed.predicted_sqnr_db, 1),
                                                "convs_not_int8": mixed.convs_not_int8} if mixed else {}),
                                            **({"gemms_canonicalized": gemms} if gemms else {})})
