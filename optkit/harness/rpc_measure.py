"""Latency measured on a device over TVM RPC: the library is uploaded to a board registered with a TVM
tracker (`python -m tvm.exec.rpc_tracker`, `python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`),
loaded there, and timed by the device's own clock (`time_evaluator`), so network time is not counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optkit.backend.artifact import read_manifest
from optkit.backend.runtime.rpc import connect
from optkit.backend.runtime.runner import prepare_inputs
from optkit.core.errors import OptionError
from optkit.harness.measure import Latency, summarize


def measure_rpc(artifact: str | Path, feeds: dict[str, np.ndarray], address: str, key: str, threads: int,
                warmup: int = 3, repeat: int = 20) -> Latency:
    """Median and p95 of `repeat` single runs on the device, after `warmup` runs."""
    from tvm import relax, runtime

    artifact = Path(artifact)
    manifest = read_manifest(artifact)
    if manifest["library"]["export_format"] != "so":
        raise OptionError(f"{artifact}: a {manifest['library']['kind']} cannot be loaded over RPC")
    remote = connect(address, key)
    library = artifact / manifest["library"]["file"]
    remote.upload(str(library))
    if threads:
        remote.get_function("runtime.config_threadpool")(0, threads)
    dev = remote.cpu()
    vm = relax.VirtualMachine(remote.load_module(library.name), dev)
    vm.set_input("main", *[runtime.tensor(np.ascontiguousarray(x), device=dev)
                           for x in prepare_inputs(manifest, feeds)])
    timer = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=warmup + repeat, min_repeat_ms=0)
    seconds = list(timer("main").results)[warmup:]
    return summarize(seconds)
