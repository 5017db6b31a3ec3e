"""Host latency, measured side by side: TVM artifact and onnxruntime on the same model and threads,
interleaved in one run so that machine noise hits both alike. Reports median and p95 after warm-up."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .artifact import read_manifest
from .model_io import load_model
from .numerics import ort_session
from .runner import prepare_inputs


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


def measure_host(artifact: str | Path, feeds: dict[str, np.ndarray], threads: int, warmup: int = 5,
                 repeat: int = 30) -> dict[str, Latency]:
    """Time the TVM artifact and onnxruntime (all graph optimizations on) on the artifact's optimized ONNX
    and on the original graph, alternating calls."""
    import tvm
    from tvm import relax

    from .vm_runner import configure_threads

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    configure_threads(threads)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(artifact / manifest["library"]["file"])), tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(x)) for x in prepare_inputs(manifest, feeds)]
    sess = ort_session(load_model(artifact / manifest["optimized_onnx"], check=False), threads, optimize=True)
    runners = {
        "tvm": lambda: vm["main"](*args),
        "onnxruntime": lambda: sess.run(None, feeds),
    }
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
