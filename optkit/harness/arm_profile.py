"""`optkit profile`: an AArch64 artifact's executed instructions per inference under qemu, side by side with
the engines a mobile app would otherwise ship, counted in the same emulator on the same core model and
one thread: onnxruntime on the artifact's own optimized graph (the same QDQ graph for an int8 build), on
the original ONNX, and LiteRT (XNNPACK) on a .tflite of the network. Counts are deterministic, so a
change of a few percent is a real change; they are not times (harness/arm_estimate.py makes estimates)."""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optkit.backend.artifact import read_manifest
from optkit.backend.runtime.instruction_count import Counts, count_inference
from optkit.core.errors import ArtifactError, OptionError
from optkit.graph.model_io import load_model
from optkit.graph.numerics import input_specs, make_inputs


@dataclass
class ProfileRow:
    label: str          # who ran it
    graph: str          # on what
    counts: Counts

    def as_dict(self) -> dict:
        return {"label": self.label, "graph": self.graph, **self.counts.as_dict()}


@dataclass
class Profile:
    artifact: str
    target: str
    cpu: str
    rows: list[ProfileRow] = field(default_factory=list)

    @property
    def optkit(self) -> Counts:
        return self.rows[0].counts

    def as_dict(self) -> dict:
        return {"artifact": self.artifact, "target": self.target, "cpu": self.cpu, "threads": 1,
                "kind": "instructions per inference, counted under qemu user-mode emulation (not a time)",
                "rows": [r.as_dict() for r in self.rows]}


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def artifact_cpu(manifest: dict, directory: Path, cpu: str | None) -> str:
    """The core model to count on: asked for, else the build's target's qemu_cpu (from the manifest, or the
    target file of that name for artifacts built before targets named one)."""
    from optkit.backend.targets import get_target

    target = manifest["target"]
    if target.get("arch") != "aarch64" or manifest["library"]["export_format"] != "so":
        raise ArtifactError(f"{directory}: a build for '{target['name']}' ({manifest['library']['kind']}); "
                            f"instruction counts need an AArch64 Linux shared object (e.g. --target rk3399)")
    chosen = cpu or target.get("qemu_cpu")
    if not chosen:
        try:
            chosen = get_target(target["name"]).qemu_cpu
        except OptionError:
            chosen = ""
    if not chosen:
        raise OptionError(f"{directory}: target '{target['name']}' names no qemu_cpu; give --cpu "
                          f"(cortex-a53, cortex-a72 or cortex-a76)")
    return chosen


def _inputs_for(model_path: Path, artifact_feeds: dict[str, np.ndarray], seed: int) -> list[np.ndarray]:
    """Inputs for another ONNX of the same network: the artifact's where names and shapes agree."""
    model = load_model(model_path)
    drawn = make_inputs(model, seed)

    def fits(spec) -> bool:           # same rank, and every static dim of the original agrees
        given = artifact_feeds.get(spec.name)
        return given is not None and given.ndim == len(spec.shape) and all(
            not isinstance(d, int) or d <= 0 or d == g for d, g in zip(spec.shape, given.shape))

    return [artifact_feeds[s.name] if fits(s) else drawn[s.name] for s in input_specs(model)]


def profile_artifact(directory: str | Path, cpu: str | None = None, original_onnx: str | Path | None = None,
                     tflite: str | Path | None = None, same_graph: bool = True, seed: int = 0,
                     log=lambda _: None) -> Profile:
    directory = Path(directory)
    manifest = read_manifest(directory)
    chosen = artifact_cpu(manifest, directory, cpu)
    for option, path in (("--onnx", original_onnx), ("--tflite", tflite)):
        if path is not None and not Path(path).is_file():
            raise OptionError(f"{option} {path}: no such file")
    optimized = directory / manifest["optimized_onnx"]
    feeds = make_inputs(load_model(optimized), seed)
    ordered = [feeds[spec["name"]] for spec in manifest["inputs"]]
    profile = Profile(str(directory), manifest["target"]["name"], chosen)
    jobs = [(f"optkit (TVM, {manifest['target']['name']} build)", manifest["optimized_onnx"], "tvm",
             directory / manifest["library"]["file"], ordered)]
    if same_graph:
        jobs.append((f"onnxruntime {_version('onnxruntime')}", f"{manifest['optimized_onnx']} (the same graph)",
                     "onnxruntime", optimized, ordered))
    if original_onnx is not None:
        jobs.append((f"onnxruntime {_version('onnxruntime')}", f"{Path(original_onnx).name} (original)",
                     "onnxruntime", Path(original_onnx), _inputs_for(Path(original_onnx), feeds, seed)))
    if tflite is not None:
        jobs.append(("LiteRT 2.3.0 (XNNPACK)", Path(tflite).name, "litert", Path(tflite), None))
    for label, graph, engine, model, inputs in jobs:
        log(f"counting {label} on {graph} (qemu {chosen}, 1 thread)")
        profile.rows.append(ProfileRow(label, graph, count_inference(engine, model, inputs, chosen, seed)))
    return profile
