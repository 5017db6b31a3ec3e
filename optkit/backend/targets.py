"""Targets are data: one TOML file per device in the `targets/` folder (installed as optkit.target_files),
plus any *.toml in the directories named by OPTKIT_TARGET_PATH (os.pathsep-separated)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from optkit.backend.runtime.instruction_count import CPU_MODELS
from optkit.core.errors import OptionError, UnknownNameError

_REQUIRED = ("name", "description", "tvm", "export_format", "arch", "cores", "threads", "peak")
_EXPORT_FORMATS = ("so", "tar")


@dataclass(frozen=True)
class Peak:
    fp32_gflops: float
    int8_gops: float
    bandwidth_gbs: float
    source: str


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    tvm: dict[str, Any]
    export_format: str
    cross_compiler: str
    arch: str
    cores: int
    threads: int
    peak: Peak
    clock_ghz: float = 0.0
    rpc_key: str = ""
    qemu_cpu: str = ""          # qemu's model of the target's core, for instruction counts ("" = none)
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_host(self) -> bool:
        return self.arch == "host"

    def tvm_target_dict(self) -> dict[str, Any]:
        """The TVM target with 'native' resolved to this machine's CPU name (so manifests say what ran)."""
        spec = dict(self.tvm)
        if spec.get("mcpu") == "native":
            from tvm.target import codegen

            spec["mcpu"] = str(codegen.llvm_get_system_cpu())
        if self.is_host and "num-cores" not in spec:
            spec["num-cores"] = os.cpu_count() or 1   # MetaSchedule sizes its search by it
        return spec

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "tvm": self.tvm,
            "export_format": self.export_format, "cross_compiler": self.cross_compiler, "arch": self.arch,
            "cores": self.cores, "threads": self.threads, "clock_ghz": self.clock_ghz, "rpc_key": self.rpc_key,
            "peak": vars(self.peak), "path": self.path, **({"qemu_cpu": self.qemu_cpu} if self.qemu_cpu else {}),
        }


def _target_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for entry in resources.files("optkit.target_files").iterdir():
        if entry.name.endswith(".toml"):
            files[entry.name[:-5]] = Path(str(entry))
    for directory in filter(None, os.environ.get("OPTKIT_TARGET_PATH", "").split(os.pathsep)):
        for path in sorted(Path(directory).glob("*.toml")):
            files[path.stem] = path
    return dict(sorted(files.items()))


def load_target_file(path: Path) -> Target:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OptionError(f"target file {path}: {exc}") from exc
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise OptionError(f"target file {path}: missing key(s) {', '.join(missing)}")
    if data["export_format"] not in _EXPORT_FORMATS:
        raise OptionError(f"target file {path}: export_format must be one of {_EXPORT_FORMATS}")
    known = set(_REQUIRED) | {"cross_compiler", "clock_ghz", "rpc_key", "qemu_cpu"}
    field_name = "peak"
    try:
        peak = data["peak"]
        peak_obj = Peak(float(peak["fp32_gflops"]), float(peak["int8_gops"]), float(peak["bandwidth_gbs"]),
                        str(peak["source"]))
        values = {}
        for field_name, kind in (("name", str), ("description", str), ("export_format", str), ("arch", str),
                                 ("cores", int), ("threads", int), ("tvm", dict), ("cross_compiler", str),
                                 ("clock_ghz", float), ("rpc_key", str), ("qemu_cpu", str)):
            raw = data.get(field_name, {"cross_compiler": "", "clock_ghz": 0.0, "rpc_key": "", "qemu_cpu": ""}.get(
                field_name))
            if kind is dict and not isinstance(raw, dict) or kind is str and not isinstance(raw, str):
                raise TypeError(f"expected a {'table' if kind is dict else 'string'}")
            values[field_name] = kind(raw)
            if kind is int and values[field_name] < 0 or kind is float and not values[field_name] >= 0:
                raise ValueError("must not be negative")
        if values["qemu_cpu"] and values["qemu_cpu"] not in CPU_MODELS:
            raise ValueError(f"unknown core model '{values['qemu_cpu']}' (known: {', '.join(CPU_MODELS)})")
    except KeyError as exc:
        raise OptionError(f"target file {path}: [peak] lacks {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise OptionError(f"target file {path}: bad value for '{field_name}': {exc}") from exc
    return Target(**values, peak=peak_obj, path=str(path), extra={k: v for k, v in data.items() if k not in known})


def list_targets() -> list[Target]:
    return [load_target_file(p) for p in _target_files().values()]


def get_target(name: str) -> Target:
    files = _target_files()
    if name not in files:
        raise UnknownNameError("target", name, list(files))
    return load_target_file(files[name])
