"""The compiler driver: ONNX → optkit passes → TVM Relax → build for a target → exported artifact."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from optkit.backend.artifact import OPTIMIZED_ONNX, sha256_file, versions, write_manifest
from optkit.backend.build import build, export
from optkit.backend.dot_product import dot_product_kind, is_arm64
from optkit.backend.importer import to_relax
from optkit.backend.rewrites.bias_init import bias_in_accumulators
from optkit.backend.rewrites.constant_clamps import constant_clamps
from optkit.backend.rewrites.hwio_kernels import hwio_kernels
from optkit.backend.rewrites.int8 import integer_convolutions, quantize_by_reciprocal
from optkit.backend.rewrites.padded_rows import padded_rows
from optkit.backend.rewrites.quantized_concat import quantized_concats
from optkit.backend.rewrites.quantized_maxpool import quantized_max_pools
from optkit.backend.rewrites.requantize import folded_requantize
from optkit.backend.rewrites.resize import separable_resizes
from optkit.backend.rewrites.take import clipped_takes
from optkit.backend.schedules import NEON_LANES
from optkit.backend.targets import Target
from optkit.backend.validate import MODES as VALIDATION_MODES
from optkit.backend.validate import validate_build
from optkit.core.errors import CompileError
from optkit.core.safe_output import atomic_directory, check_directory_output
from optkit.graph.model_io import load_model
from optkit.graph.numerics import input_specs, output_specs
from optkit.graph.shapes import resolve_input_shapes, shape_spec_text, static_input_plan
from optkit.pass_infra.contract import PassContext
from optkit.pass_infra.instruments import Instrument, PassRecord, refuse_lossy
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes

DEFAULT_PIPELINE = "mobile"
LEGALIZE = "legalize"


def tuning_label(tuning) -> str:
    """'untuned', or 'tuned (k of n functions)' from a manifest's tuning entry."""
    if tuning == "untuned":
        return "untuned"
    return f"tuned ({tuning['tuned_functions']} of {tuning['functions']} functions from the database)"


@dataclass
class CompileResult:
    directory: Path
    manifest: dict[str, Any]
    records: list[PassRecord]
    notices: list[str]
    warnings: list[str] = field(default_factory=list)     # lossy passes that cost more than allowed (api)


@dataclass
class Frontend:
    """A model after optkit's passes and TVM's import: what compile builds and tune tunes."""

    spec: str
    optimized: onnx.ModelProto
    records: list[PassRecord]
    mod: Any                    # Relax IRModule, integer convolutions rewritten
    integer_convolutions: int
    dot_product_convolutions: int     # of those, on the CPU's int8 dot-product instruction (backend/dot_product.py)
    separable_resizes: int
    integer_concatenations: int       # QDQ concatenations done on the integers
    padded_row_convolutions: int      # float convs computed on rows padded to whole NEON vectors (Arm)
    hwio_convolutions: int            # float convs given HWIO weights (Arm)
    immediate_clamps: int             # Clip bounds made immediates (Arm)
    bias_initialized_convolutions: int  # float convs whose sums start from their bias (Arm)
    notices: list[str]                # what optkit decided for the user (a dynamic batch dim fixed to 1)


def _static_shapes(model: onnx.ModelProto, passes: str, input_shapes: str, where: str) -> tuple[str, list[str]]:
    """(specialize-input spec that makes every input static, notices), checked before any pass runs: a model
    TVM cannot build fails here, not after every pass and the calibration. Shapes a pipeline's own
    specialize-input fixes count as given."""
    given = resolve_input_shapes(input_shapes, model)
    declared = {}
    for p in build_passes(passes) if passes else []:
        if p.name == "specialize-input" and p.config["shape"]:
            declared.update(resolve_input_shapes(p.config["shape"], model))
    planned, notices = static_input_plan(model, {**declared, **given}, where)
    ours = {name: shape for name, shape in planned.items() if name in given or name not in declared}
    return (f"specialize-input{{shape={shape_spec_text(ours)}}}" if ours else ""), notices


def frontend(model_path: Path, target: Target, passes: str, input_shapes: str = "", seed: int = 0,
             instruments: list[Instrument] | None = None, calibration=None) -> Frontend:
    model = load_model(model_path)
    specialize, notices = _static_shapes(model, passes, input_shapes, str(model_path))
    # legalize runs last, always: it rewrites what TVM's importer would get wrong (passes/legalize.py).
    spec = ",".join(filter(None, [specialize, passes, LEGALIZE]))
    ctx = PassContext(target=target, seed=seed, calibration=calibration)
    optimized, records = PassManager(build_passes(spec) if spec else [], instruments).run(model, ctx)
    mod = to_relax(optimized, f"{model_path} (after passes)")
    import tvm

    mod, _ = clipped_takes(mod)                     # Gather indices clamped: a bad index cannot read past the tensor
    tvm_target = tvm.target.Target(target.tvm_target_dict())
    dot = dot_product_kind(tvm_target)
    # QDQ models: int8 x int8 -> int32 convs (on Arm, depthwise ones as exact float32 sums)
    mod, integer_convs, dot_convs = integer_convolutions(mod, dot, float_dense=is_arm64(tvm_target))
    padded = hwio = clamps = biased = 0
    if is_arm64(tvm_target):     # code and data shaped for NEON (host builds keep their tuned functions' shape)
        mod, clamps = constant_clamps(mod)
        mod, padded = padded_rows(mod, NEON_LANES)
        mod, hwio = hwio_kernels(mod)
        if not integer_convs:                       # float models: an int8 model's sums stay exact integers
            mod, biased = bias_in_accumulators(mod)
    neon = is_arm64(tvm_target)                     # quantize with NEON's rounding conversion and saturating narrows
    mod, resizes = separable_resizes(mod, neon)     # bilinear resize in two passes (with its QDQ pair, in int8 models)
    mod, concats, _ = quantized_concats(mod)        # QDQ concatenations copy integers instead of round-tripping floats
    if is_arm64(tvm_target):
        mod, _ = quantized_max_pools(mod)           # QDQ max pools on the integers (16 lanes, no conversions)
        mod, _ = folded_requantize(mod)             # an integer conv's rescale, bias and requantize: one multiply-add
    mod, _ = quantize_by_reciprocal(mod, neon)      # requantize with a product, not a vector division
    return Frontend(spec, optimized, records, mod, integer_convs, dot_convs, resizes, concats, padded, hwio, clamps, biased,
                    notices)


def _tensor_list(specs) -> list[dict[str, Any]]:
    return [{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype)} for s in specs]


def compile_model(model_path: str | os.PathLike, target: Target, out_dir: str | os.PathLike,
                  passes: str = DEFAULT_PIPELINE, input_shapes: str = "", seed: int = 0,
                  instruments: list[Instrument] | None = None, calibration=None, schedules: str = "default",
                  tuning_db: str | os.PathLike | None = None, force: bool = False,
                  inputs: tuple[str | os.PathLike, ...] = (), validate: str | bool = "auto",
                  strict_sqnr_db: float | None = None) -> CompileResult:
    """Optimize, build, export and validate (backend/validate.py: the build against onnxruntime on generated inputs;
    `validate` is auto, emulate or off); the directory appears only if every step succeeded. `out_dir` must
    be new, empty or an earlier artifact (or `force`), and never the model or another of `inputs`."""
    validate = {True: "auto", False: "off"}.get(validate, validate)
    if validate not in VALIDATION_MODES:
        raise CompileError(f"--validate {validate!r}: expected one of {', '.join(VALIDATION_MODES)}")
    model_path = Path(model_path)
    inputs = (model_path, *inputs, *([tuning_db] if tuning_db else []))
    check_directory_output(out_dir, inputs, force)      # refuse before the long build, not after it
    front = frontend(model_path, target, passes, input_shapes, seed, instruments, calibration)
    optimized, records = front.optimized, front.records
    if strict_sqnr_db is not None:
        refuse_lossy(records, strict_sqnr_db)
    database, tuning = None, "untuned"
    if tuning_db is not None:
        from optkit.backend.tuning_db import database_digest, open_database

        database = open_database(tuning_db, target)
    executable, schedule_counts = build(front.mod, target, schedules, database)
    if schedule_counts["from_database"]:
        tuning = {"database_sha256": database_digest(tuning_db), "tuned_functions": schedule_counts["from_database"],
                  "functions": sum(schedule_counts.values())}
    with atomic_directory(out_dir, inputs, force) as tmp:
        library, description = export(executable, target, tmp)
        validation = {"skipped": "validation turned off (--validate off)"}
        if validate != "off":
            validation = validate_build(optimized, tmp / library, target.arch, target.export_format, front.mod,
                                        schedules, seed, f"{model_path} for '{target.name}'", validate)
        (tmp / OPTIMIZED_ONNX).write_bytes(optimized.SerializeToString(deterministic=True))
        manifest = {
            "format": "optkit-artifact/1",
            "versions": versions(),
            "source_model": {"file": model_path.name, "sha256": sha256_file(model_path)},
            "target": {**target.as_dict(), "path": Path(target.path).name, "tvm_resolved": target.tvm_target_dict()},
            "passes": [r.as_dict() for r in records],
            "pass_spec": front.spec,
            "inputs": _tensor_list(input_specs(optimized)),
            "outputs": _tensor_list(output_specs(optimized)),
            "library": {"file": library, "kind": description, "export_format": target.export_format},
            "optimized_onnx": OPTIMIZED_ONNX,
            "tuning": tuning,
            "schedules": {"mode": schedules, "functions": schedule_counts},
            "integer_convolutions": front.integer_convolutions,
            "dot_product_convolutions": front.dot_product_convolutions,
            "separable_resizes": front.separable_resizes,
            "integer_concatenations": front.integer_concatenations,
            "padded_row_convolutions": front.padded_row_convolutions,
            "hwio_convolutions": front.hwio_convolutions,
            "immediate_clamps": front.immediate_clamps,
            "bias_initialized_convolutions": front.bias_initialized_convolutions,
            "validation": validation,
            **({"notices": front.notices} if front.notices else {}),
        }
        write_manifest(tmp, manifest)
    return CompileResult(Path(out_dir), manifest, records, front.notices)

