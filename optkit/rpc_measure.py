"""Latency measured on a device over TVM RPC: the library is uploaded to a board registered with a TVM
tracker (`python -m tvm.exec.rpc_tracker`, `python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`),
loaded there, and timed by the device's own clock (`time_evaluator`), so network time is not counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .artifact import read_manifest
from .errors import OptionError
from .measure import Latency, summarize
from .runner import prepare_inputs


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise OptionError(f"--rpc {text!r}: expected HOST:PORT of a TVM RPC tracker")
    return host, int(port)


def connect(address: str, key: str, timeout_s: int = 120):
    """A remote session on a device with `key` from the tracker at `address`."""
    import socket

    from tvm import rpc

    host, port = parse_address(address)
    try:  # TVM's own connect retries for a minute; say at once when nothing listens there
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise OptionError(f"--rpc {address} --key {key}: no device session: no tracker answers there ({exc})") from exc
    try:
        tracker = rpc.connect_tracker(host, port)
        return tracker.request(key, priority=1, session_timeout=timeout_s)
    except Exception as exc:  # TVM raises RuntimeError/TVMError with its own text
        raise OptionError(f"--rpc {address} --key {key}: no device session: {str(exc).splitlines()[0]}") from exc


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
