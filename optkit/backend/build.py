"""Lower, build and export: a Relax module becomes a library for a target, with tuned schedules from a
MetaSchedule database where it has them and optkit's default CPU schedules elsewhere."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from optkit.backend.artifact import deterministic_tar
from optkit.backend.targets import Target
from optkit.core.errors import CompileError, library_message

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

SCHEDULES = ("default", "none")


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

    from optkit.backend.schedules import ScheduleStats, schedule_module

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
        with tvm_target:                    # the target lowering rules read (backend/saturating_round.py)
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
