"""Build-time validation: before compile writes an artifact, the built code runs on generated inputs and is
compared with onnxruntime on the optimized graph. A compiler that returns wrong numbers silently is the worst
failure there is, so a build that disagrees is refused, naming the first divergent output.

How each kind of build is run here:
- host builds: the exported library itself, natively;
- AArch64 and iOS builds ("auto"): a host build of the same Relax module, so the import, optkit's rewrites
  and lowering are checked in seconds; the ARM code generation is not executed, and the manifest says so;
- AArch64 builds with "emulate": the exported library itself under qemu user-mode emulation (needs
  `optkit emulator setup`; about 20 s more even for a tiny model, since qemu runs Python and TVM's runtime).

Tolerances: float graphs are held elementwise (|diff| <= atol + rtol * max|reference|, NaN/Inf compared by
position). Quantized (QDQ) graphs may differ from onnxruntime by a rounding step where a value falls on a
tie, and those steps grow through later layers, so each output must keep an SQNR of at least MIN_QDQ_SQNR_DB
against onnxruntime; a miscompile (wrong neighbour, wrong window, wrong scale) falls far below it. Some
models amplify such steps far more than others: onnxruntime itself, with every quantize's input nudged by a
few float32 ulps, moves pose's PAFs to 25 dB and a real hand-landmark model's handedness to 9-26 dB. Each
output's bar is therefore lowered to SENSITIVITY_MARGIN_DB below that self-divergence where it is under
MIN_QDQ_SQNR_DB (rounding_sensitivity_db), and the manifest records each output's bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from optkit.core.errors import CompileError, OptkitError, library_message
from optkit.core.resources import bounded_ort_run
from optkit.graph.index import GraphIndex
from optkit.graph.numerics import compare, input_specs, make_inputs, ort_session, run_ort, sqnr_db

MODES = ("auto", "emulate", "off")
RTOL, ATOL = 1e-4, 1e-4
# Quantized builds differ from onnxruntime's QDQ run where a value falls on a rounding tie, and the steps grow
# through later layers: the gate's int8 builds measure 26.0 dB (pose's PAFs) to 66 dB. TVM's Resize miscompiles
# that legalize now fixes measure -2.4 to 9.8 dB (the tf_half_pixel tie: a wrong neighbour on 4 % of outputs).
MIN_QDQ_SQNR_DB = 20.0
# A few float32 ulps, relative: the size of the difference two correct int8 implementations' float arithmetic
# (summation order, a scale's reciprocal) leaves in a value before it is rounded to its quantization step.
TIE_NUDGE = 2.0 ** -22
SENSITIVITY_MARGIN_DB = 10.0
MIN_BAR_DB = 0.0        # a difference as large as the output itself is refused whatever the model
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"}


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def _nudged(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every QuantizeLinear reading its input times (1 + TIE_NUDGE)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    index = GraphIndex(out.graph)
    factor = index.fresh_name("optkit_tie_nudge")
    index.set_initializer(factor, np.array(1 + TIE_NUDGE, np.float32))
    nodes = []
    for node in out.graph.node:
        if node.op_type == "QuantizeLinear":
            nudged = index.fresh_name(f"{node.input[0]}_nudged")
            nodes.append(onnx.helper.make_node("Mul", [node.input[0], factor], [nudged]))
            node.input[0] = nudged
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def rounding_sensitivity_db(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """Per output, the SQNR between onnxruntime's run of the QDQ graph and its run with every quantize's input
    nudged by TIE_NUDGE (both without graph optimizations, so only the nudge differs): how far this model's
    outputs move when values within a few ulps of a rounding boundary round the other way. inf where none do."""
    base = bounded_ort_run(ort_session(model), feeds, "rounding sensitivity")
    nudged = bounded_ort_run(ort_session(_nudged(model)), feeds, "rounding sensitivity")
    result = {}
    for name, ref in base.items():
        finite = np.isfinite(ref) & np.isfinite(nudged[name])
        result[name] = float(sqnr_db(ref[finite], nudged[name][finite])) if finite.any() else float("inf")
    return result


def qdq_bars(sensitivity: dict[str, float]) -> dict[str, float]:
    """Each output's SQNR bar against onnxruntime: MIN_QDQ_SQNR_DB, or SENSITIVITY_MARGIN_DB below the
    output's own rounding sensitivity where that is lower, never below MIN_BAR_DB."""
    return {name: max(MIN_BAR_DB, min(MIN_QDQ_SQNR_DB, s - SENSITIVITY_MARGIN_DB)) for name, s in sensitivity.items()}


def check_outputs(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], quantized: bool,
                  bars: dict[str, float] | None = None) -> tuple[dict[str, Any], str | None]:
    """(per-output numbers for the manifest, the first failure as a sentence or None). `bars`: each quantized
    output's SQNR bar (qdq_bars), MIN_QDQ_SQNR_DB where absent."""
    numbers: dict[str, Any] = {}
    for name, ref in reference.items():
        out = got.get(name)
        if out is None:
            return numbers, f"output '{name}' is missing from the build's results"
        if tuple(out.shape) != tuple(ref.shape):
            return numbers, f"output '{name}' has shape {list(out.shape)}, onnxruntime's {list(ref.shape)}"
        worst, bad = compare({name: ref}, {name: out}, RTOL, ATOL)
        entry = {"max_abs_diff": float(f"{worst:.3g}")}
        if quantized:
            finite = np.isfinite(ref) & np.isfinite(out)
            if not np.array_equal(np.isfinite(ref), np.isfinite(out)):
                return numbers, f"output '{name}' has NaN/Inf where onnxruntime's has none (or the reverse)"
            sqnr = sqnr_db(ref[finite], out[finite])
            bar = (bars or {}).get(name, MIN_QDQ_SQNR_DB)
            entry["sqnr_db"] = None if sqnr == float("inf") else round(float(sqnr), 2)
            entry["bar_db"] = round(float(bar), 2)
            numbers[name] = entry
            if sqnr < bar:
                why = ("expected of a quantized graph)" if bar >= MIN_QDQ_SQNR_DB else
                       f"expected of this output: {SENSITIVITY_MARGIN_DB:g} dB under the SQNR of onnxruntime's own output when "
                       f"values a few ulps from a rounding boundary round the other way)")
                return numbers, (f"output '{name}' is {sqnr:.1f} dB from onnxruntime's (SQNR; at least {bar:.1f} dB "
                                 f"{why}, max |diff| {worst:.3g}")
        else:
            numbers[name] = entry
            if bad:
                m = bad[0]
                return numbers, (f"output '{name}' differs from onnxruntime's by {m.max_abs:.3g} (tolerance "
                                 f"{m.tolerance:.3g}{', ' + m.reason if m.reason else ''})")
    return numbers, None


def _run_host_build(mod, schedules: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Build the same Relax module for this host and run it in this process."""
    from optkit.backend.build import build
    from optkit.backend.runtime.vm_runner import run_main
    from optkit.backend.targets import get_target

    executable, _ = build(mod, get_target("host"), schedules)
    return run_main(executable, inputs)


def run_build(library: Path, arch: str, export_format: str, mod, schedules: str,
              inputs: list[np.ndarray], mode: str = "auto") -> tuple[list[np.ndarray], str]:
    """Run what was built on `inputs`: (outputs, how it ran)."""
    from optkit.backend.runtime.isolated import run_library_isolated
    from optkit.backend.runtime.runner import host_arch
    from optkit.core.resources import run_timeout_s

    if export_format == "so" and arch in ("host", host_arch()):
        outputs = run_library_isolated(library, inputs, run_timeout_s(), label="validation run")
        return outputs, "exported library, run natively in a child process"
    if mode == "emulate":
        if not (export_format == "so" and arch == "aarch64"):
            raise CompileError(f"--validate emulate: only AArch64 builds run under emulation, not {arch} "
                               f"({export_format})")
        from optkit.backend.runtime.emulation import run_emulated

        return run_emulated(library, inputs), "exported library under qemu-aarch64 user-mode emulation"
    return (_run_host_build(mod, schedules, inputs),
            "host build of the same Relax module (the target's code generation is not executed here)")


def validate_build(optimized: onnx.ModelProto, library: Path, arch: str, export_format: str, mod,
                   schedules: str, seed: int, where: str, mode: str = "auto") -> dict[str, Any]:
    """Run the build on generated inputs against onnxruntime; raise CompileError if they disagree."""
    feeds = make_inputs(optimized, seed)
    names = [s.name for s in input_specs(optimized)]
    reference = run_ort(optimized, feeds, what=f"{where}: validating the build")
    try:
        raw, how = run_build(library, arch, export_format, mod, schedules, [feeds[n] for n in names], mode)
    except OptkitError as exc:
        raise CompileError(f"{where}: the built module failed to run on generated inputs: {exc}") from exc
    except Exception as exc:  # TVM's own errors from a host build of the module
        raise CompileError(f"{where}: the built module failed to run on generated inputs: "
                           f"{library_message(exc)}") from exc
    got = dict(zip(reference, raw))
    quantized = is_quantized(optimized)
    bars = qdq_bars(rounding_sensitivity_db(optimized, feeds)) if quantized else None
    numbers, failure = check_outputs(reference, got, quantized, bars)
    if failure:
        raise CompileError(f"{where}: the build disagrees with onnxruntime on the optimized graph: {failure}; "
                           f"no artifact written (this is a compiler bug: please report the model; --validate off "
                           f"writes it anyway)")
    return {"how": how, "seed": seed, "criterion": f"SQNR >= {MIN_QDQ_SQNR_DB:g} dB per output (quantized graph), or "
            f"{SENSITIVITY_MARGIN_DB:g} dB below the output's own rounding sensitivity where that is lower (bar_db)"
            if quantized else f"|diff| <= {ATOL:g} + {RTOL:g} * max|reference| per output", "outputs": numbers}
