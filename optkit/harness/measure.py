"""Host latency, measured side by side: TVM artifact and onnxruntime on the same model and threads,
interleaved in one run so that machine noise hits both alike. Reports median and p95 after warm-up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from optkit.backend.artifact import read_manifest
from optkit.backend.runtime.runner import prepare_inputs
from optkit.graph.model_io import load_model
from optkit.graph.numerics import ort_session


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p95_ms: float
    runs: int

    def as_dict(self):
        return asdict(self)


def summarize(samples: list[float]) -> Latency:
    ms = np.array(samples) * 1e3
    return Latency(float(np.median(ms)), float(np.percentile(ms, 95)), len(ms))


def interleaved(runners: dict[str, Callable[[], object]], warmup: int = 5, repeat: int = 30) -> dict[str, Latency]:
    """Time several engines round-robin, one call each per round, so machine noise hits all alike."""
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(warmup):
        for fn in runners.values():
            fn()
    for _ in range(repeat):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {k: summarize(v) for k, v in samples.items()}


def vm_runner(library: str | Path, inputs: list[np.ndarray]) -> Callable[[], object]:
    """A no-argument call of a compiled library's `main` on fixed inputs."""
    import tvm
    from tvm import relax

    from optkit.backend.runtime.vm_runner import load_fresh

    vm = relax.VirtualMachine(load_fresh(str(library)), tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs]
    return lambda: vm["main"](*args)


def measure_host(artifact: str | Path, feeds: dict[str, np.ndarray], threads: int, warmup: int = 5,
                 repeat: int = 30) -> dict[str, Latency]:
    """Time the TVM artifact and onnxruntime (all graph optimizations on) on the artifact's optimized ONNX,
    alternating calls; both engines get `threads` threads whose workers spin within a run and sleep
    after it (numerics.ort_session, vm_runner.configure_threads), so neither steals the other's cores."""
    from optkit.backend.runtime.vm_runner import configure_threads

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    configure_threads(threads)
    sess = ort_session(load_model(artifact / manifest["optimized_onnx"], check=False), threads, optimize=True)
    return interleaved({"tvm": vm_runner(artifact / manifest["library"]["file"], prepare_inputs(manifest, feeds)),
                        "onnxruntime": lambda: sess.run(None, feeds)}, warmup, repeat)
