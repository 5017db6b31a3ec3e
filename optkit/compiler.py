"""The compiler driver: ONNX → optkit passes → TVM Relax → build for a target → exported artifact."""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from . import __version__
from .artifact import OPTIMIZED_ONNX, deterministic_tar, sha256_file, write_manifest
from .atomic import atomic_directory, check_directory_output
from .errors import CompileError, library_message
from .instruments import Instrument, PassRecord
from .int8_dot import has_dot_product
from .manager import PassManager
from .model_io import load_model
from .numerics import input_specs, output_specs
from .pass_base import PassContext
from .pass_spec import build_passes
from .relax_int8 import integer_convolutions, quantize_by_reciprocal
from .relax_resize import separable_resizes
from .relax_take import clipped_takes
from .shapes import format_shape
from .targets import Target
from .validate import MODES as VALIDATION_MODES
from .validate import validate_build

DEFAULT_PIPELINE = "mobile"
LEGALIZE = "legalize"

# What a Mac, a phone or this machine can do with each export format.
LIBRARY_KINDS = {
    ("so", "host"): ("model.so", "shared object for this host; load with tvm.runtime.load_module"),
    ("so", "aarch64"): ("model.so", "AArch64 ELF shared object; load with the TVM runtime on the device"),
    ("tar", "arm64-apple"): ("model.tar", "tar.gz of Mach-O arm64 object files; link into the iOS app on a "
                                          "Mac (Xcode/ld64) together with the TVM runtime: Linux cannot link it"),
}

CROSS_COMPILER_HINT = {
    "aarch64-linux-gnu-gcc": "install it with: apt-get install gcc-aarch64-linux-gnu",
}


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


def versions() -> dict[str, str]:
    def v(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    return {"optkit": __version__, "tvm": v("apache-tvm"), "tvm_ffi": v("apache-tvm-ffi"), "onnx": v("onnx"),
            "onnxruntime": v("onnxruntime"), "onnxsim": v("onnxsim")}


def check_static_inputs(model: onnx.ModelProto, where: str) -> dict[str, list[int]]:
    shapes = {}
    for spec in input_specs(model):
        if not spec.shape or any(not isinstance(d, int) or d <= 0 for d in spec.shape):
            example = format_shape(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
            raise CompileError(
                f"{where}: input '{spec.name}' has dynamic or unknown dims {list(spec.shape)}; TVM needs fixed "
                f"sizes: pass --input-shape {spec.name}:{example} (or add specialize-input to the passes)")
        shapes[spec.name] = list(spec.shape)
    return shapes


def check_supported_ops(model: onnx.ModelProto, where: str) -> None:
    """Name the first node whose op TVM's ONNX frontend cannot import, before a long import fails."""
    from tvm.relax.frontend.onnx import onnx_frontend

    supported = set(onnx_frontend._get_convert_map()) | {"If", "Constant"}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in supported:
            domain = f" (domain '{node.domain}')" if node.domain else ""
            raise CompileError(f"{where}: op {node.op_type}{domain} of node '{node.name or node.output[0]}' "
                               f"cannot be imported by TVM {versions()['tvm']}'s ONNX frontend")


def check_no_empty_tensors(model: onnx.ModelProto, where: str) -> None:
    """TVM cannot build a tensor with a zero-size dimension (its loops fail to vectorize); name the first."""
    from .resources import tensor_sizes

    producers = {o: n for n in model.graph.node for o in n.output}
    for name, (shape, _) in tensor_sizes(model).items():
        if 0 in shape:
            node = producers.get(name)
            by = f" (output of {node.op_type} node '{node.name or name}')" if node is not None else ""
            raise CompileError(f"{where}: tensor '{name}'{by} has shape {list(shape)}, with a zero-size dimension "
                               f"(a pool window or stride larger than its map?); TVM cannot build empty tensors")


def to_relax(model: onnx.ModelProto, where: str):
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    shapes = check_static_inputs(model, where)
    check_supported_ops(model, where)
    check_no_empty_tensors(model, where)
    dtypes = {s.name: str(s.dtype) for s in input_specs(model)}
    try:
        mod = from_onnx(model, shape_dict=shapes, dtype_dict=dtypes, keep_params_in_input=False)
    except Exception as exc:
        raise CompileError(f"{where}: TVM could not import the model: {library_message(exc)}") from exc
    return relax.transform.DecomposeOpsForInference()(mod)


SCHEDULES = ("default", "none")


@dataclass
class Frontend:
    """A model after optkit's passes and TVM's import: what compile builds and tune tunes."""

    spec: str
    optimized: onnx.ModelProto
    records: list[PassRecord]
    mod: Any                    # Relax IRModule, integer convolutions rewritten
    integer_convolutions: int
    dot_product_convolutions: int     # of those, on the CPU's int8 dot-product instruction (int8_dot.py)
    separable_resizes: int


def frontend(model_path: Path, target: Target, passes: str, input_shapes: str = "", seed: int = 0,
             instruments: list[Instrument] | None = None, calibration=None) -> Frontend:
    # legalize runs last, always: it rewrites what TVM's importer would get wrong (passes/legalize.py).
    spec = ",".join(filter(None, [f"specialize-input{{shape={input_shapes}}}" if input_shapes else "", passes,
                                  LEGALIZE]))
    ctx = PassContext(target=target, seed=seed, calibration=calibration)
    optimized, records = PassManager(build_passes(spec) if spec else [], instruments).run(load_model(model_path), ctx)
    mod = to_relax(optimized, f"{model_path} (after passes)")
    import tvm

    mod, _ = clipped_takes(mod)                     # Gather indices clamped: a bad index cannot read past the tensor
    dot = has_dot_product(tvm.target.Target(target.tvm_target_dict()))
    mod, integer_convs, dot_convs = integer_convolutions(mod, dot)  # QDQ models: int8 x int8 -> int32 convs
    mod, resizes = separable_resizes(mod)           # bilinear resize in two passes (with its QDQ pair, in int8 models)
    mod, _ = quantize_by_reciprocal(mod)            # requantize with a product, not a vector division
    return Frontend(spec, optimized, records, mod, integer_convs, dot_convs, resizes)


def lower(mod, target: Target):
    """(Relax module with fused TIR functions, TVM target): the functions schedules and tuning work on."""
    import tvm
    from tvm import relax

    tvm_target = tvm.target.Target(target.tvm_target_dict())
    with tvm_target:
        return relax.get_pipeline("zero")(mod), tvm_target


def build(mod, target: Target, schedules: str = "default", database=None):
    """Lower and build a Relax module for the target: functions a tuning database covers get their tuned
    schedule, the rest optkit's default CPU schedules (or none: TVM's plain loop nests).
    Returns (executable, per-rule function counts)."""
    import tvm
    from tvm import relax

    from .cpu_schedules import ScheduleStats, schedule_module

    if schedules not in SCHEDULES:
        raise CompileError(f"--schedules {schedules!r}: expected one of {', '.join(SCHEDULES)}")
    stats = ScheduleStats()
    try:
        mod, tvm_target = lower(mod, target)
        if database is not None:
            with tvm_target, database, tvm.transform.PassContext(opt_level=3):
                mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        if schedules == "default":
            mod, stats = schedule_module(mod, tvm_target, stats)
        return tvm.compile(mod, target=tvm_target), stats.as_dict()
    except Exception as exc:
        hint = " (built with optkit's default schedules: try --schedules none, and please report the model)" \
            if stats.scheduled() else ""
        raise CompileError(f"TVM build for target '{target.name}' failed: {library_message(exc)}{hint}") from exc


def export(executable, target: Target, directory: Path) -> tuple[str, str]:
    key = (target.export_format, target.arch)
    if key not in LIBRARY_KINDS:
        raise CompileError(f"target '{target.name}': no export for format {target.export_format} on {target.arch}")
    filename, description = LIBRARY_KINDS[key]
    kwargs: dict[str, Any] = {}
    if target.export_format == "tar":
        kwargs["fcompile"] = deterministic_tar
    elif target.cross_compiler:
        if shutil.which(target.cross_compiler) is None:
            hint = CROSS_COMPILER_HINT.get(target.cross_compiler, "install it and put it on PATH")
            raise CompileError(f"target '{target.name}' needs the cross compiler '{target.cross_compiler}', "
                               f"which is not on PATH; {hint}")
        from tvm.support import cc

        # The triple from the cross compiler itself: TVM asks the host's compiler when no LLVM module is present
        # (a graph without computation), and packed an x86 object into an AArch64 library.
        kwargs["fcompile"] = cc.cross_compiler(target.cross_compiler,
                                               get_target_triple=cc.get_target_by_dump_machine(target.cross_compiler))
    try:
        executable.export_library(str(directory / filename), **kwargs)
    except Exception as exc:
        raise CompileError(f"exporting for target '{target.name}' failed: {exc}") from exc
    return filename, description


def _tensor_list(specs) -> list[dict[str, Any]]:
    return [{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype)} for s in specs]


def compile_model(model_path: str | os.PathLike, target: Target, out_dir: str | os.PathLike,
                  passes: str = DEFAULT_PIPELINE, input_shapes: str = "", seed: int = 0,
                  instruments: list[Instrument] | None = None, calibration=None, schedules: str = "default",
                  tuning_db: str | os.PathLike | None = None, force: bool = False,
                  inputs: tuple[str | os.PathLike, ...] = (), validate: str | bool = "auto") -> CompileResult:
    """Optimize, build, export and validate (validate.py: the build against onnxruntime on generated inputs;
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
    database, tuning = None, "untuned"
    if tuning_db is not None:
        from .tuning import database_digest, open_database

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
            "validation": validation,
        }
        write_manifest(tmp, manifest)
    return CompileResult(Path(out_dir), manifest, records)

