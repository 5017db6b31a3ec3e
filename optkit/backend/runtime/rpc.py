"""A session on a device through a TVM RPC tracker (`python -m tvm.exec.rpc_tracker`, `python -m
tvm.exec.rpc_server --tracker HOST:PORT --key KEY`), with errors that say which tracker and key failed."""

from __future__ import annotations

from optkit.core.errors import OptionError


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
