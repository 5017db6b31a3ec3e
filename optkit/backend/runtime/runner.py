"""`optkit run`: execute an artifact (natively for host builds, under emulation for AArch64 ones)
and compare with onnxruntime on the artifact's optimized ONNX."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optkit.backend.artifact import read_manifest
from optkit.backend.runtime.vm_runner import run_library
from optkit.core.errors import ArtifactError, OptionError
from optkit.graph.model_io import load_model
from optkit.graph.numerics import compare, run_ort


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    how: str                                  # "native" or "emulated (qemu-aarch64)"
    reference_max_abs_diff: float | None = None
    mismatches: list | None = None


def host_arch() -> str:
    return {"x86_64": "x86_64", "AMD64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        platform.machine(), platform.machine())


def prepare_inputs(manifest: dict, given: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Order and check inputs against the manifest (names, shapes, dtypes)."""
    specs = manifest["inputs"]
    names = [s["name"] for s in specs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise OptionError(f"input(s) {', '.join(unknown)} not in the model; its inputs are: {', '.join(names)}")
    ordered = []
    for spec in specs:
        if spec["name"] not in given:
            raise OptionError(f"missing input '{spec['name']}' (shape {spec['shape']}, {spec['dtype']})")
        x = given[spec["name"]]
        if list(x.shape) != list(spec["shape"]):
            raise OptionError(f"input '{spec['name']}' has shape {list(x.shape)}; the artifact was built for "
                              f"{spec['shape']}")
        if str(x.dtype) != spec["dtype"]:
            raise OptionError(f"input '{spec['name']}' has dtype {x.dtype}; the artifact expects {spec['dtype']}")
        ordered.append(x)
    return ordered


def check_outputs_against_manifest(manifest: dict, raw: list[np.ndarray], directory: Path) -> dict[str, np.ndarray]:
    """Name the outputs, refusing any whose count, shape or dtype differs from what the manifest declares."""
    specs = manifest["outputs"]
    if len(raw) != len(specs):
        raise ArtifactError(f"{directory}: the library returned {len(raw)} outputs, the manifest declares {len(specs)}")
    for spec, value in zip(specs, raw):
        if list(value.shape) != list(spec["shape"]) or str(value.dtype) != spec["dtype"]:
            raise ArtifactError(f"{directory}: output '{spec['name']}' came back as {list(value.shape)} {value.dtype}; "
                                f"the manifest declares {spec['shape']} {spec['dtype']} (a miscompiled artifact)")
    return {spec["name"]: value for spec, value in zip(specs, raw)}


def run_artifact(directory: str | Path, inputs: dict[str, np.ndarray], emulate: bool = False,
                 compare_reference: bool = False, threads: int = 0) -> RunResult:
    directory = Path(directory)
    manifest = read_manifest(directory)
    ordered = prepare_inputs(manifest, inputs)
    library = directory / manifest["library"]["file"]
    arch = manifest["target"]["arch"]
    if manifest["library"]["export_format"] == "tar":
        raise ArtifactError(f"{directory}: {manifest['library']['kind']}; it cannot run here")
    if arch == "aarch64" and host_arch() != "aarch64":
        if not emulate:
            raise ArtifactError(f"{directory} is an AArch64 build for '{manifest['target']['name']}'; run it on "
                                f"the device, or here with --emulate (qemu user-mode, for correctness only)")
        from optkit.backend.runtime.emulation import run_emulated

        raw, how = run_emulated(library, ordered), "emulated (qemu-aarch64 user mode)"
    else:
        raw, how = run_library(str(library), ordered, threads), f"native ({host_arch()})"
    outputs = check_outputs_against_manifest(manifest, raw, directory)
    result = RunResult(outputs, how)
    if compare_reference:
        reference = run_ort(load_model(directory / manifest["optimized_onnx"], check=False),
                            dict(zip([s["name"] for s in manifest["inputs"]], ordered)))
        result.reference_max_abs_diff, result.mismatches = compare(reference, outputs, rtol=1e-4, atol=1e-4)
    return result
