"""Bounded work: optkit refuses a model whose tensors would not fit before allocating them, and stops a
reference run in onnxruntime that takes too long, naming what it was doing. A 341-byte model with a Loop of
2^62 iterations used to hang every command, and a 210-byte one with a 1x3x10000x10000 input took > 10 GiB.

Limits (environment variables override them): OPTKIT_RUN_TIMEOUT_S seconds per reference run (120),
OPTKIT_MAX_TENSOR_GB for the largest tensor (1) and OPTKIT_MAX_TENSORS_GB for all tensors together (half the
machine's memory: the sum is an upper bound, runtimes reuse buffers).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import onnx

from optkit.core.errors import ResourceError

GB = 1 << 30


def _limit(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError as exc:
        raise ResourceError(f"{name}={os.environ[name]!r}: expected a number") from exc


def _size(nbytes: float) -> str:
    return f"{nbytes / GB:.2f} GiB" if nbytes >= GB / 10 else f"{nbytes / (1 << 20):.1f} MiB"


def _half_the_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 / GB
    except (ValueError, OSError, AttributeError):
        return 4.0


def run_timeout_s() -> float:
    return _limit("OPTKIT_RUN_TIMEOUT_S", 120)


def tensor_sizes(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], int]]:
    """Every tensor with a known static shape: (shape, bytes), from ONNX shape inference."""
    from onnx import helper

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    sizes = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or not all(d.HasField("dim_value") for d in tt.shape.dim):
            continue
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 4
        shape = tuple(d.dim_value for d in tt.shape.dim)
        sizes[vi.name] = (shape, int(np.prod(shape, dtype=np.float64)) * itemsize)
    return sizes


def check_memory(model: onnx.ModelProto, where: str) -> None:
    """Refuse a model whose largest tensor, or all tensors together, exceed the limits."""
    max_tensor = _limit("OPTKIT_MAX_TENSOR_GB", 1) * GB
    max_total = _limit("OPTKIT_MAX_TENSORS_GB", _half_the_memory_gb()) * GB
    sizes = tensor_sizes(model)
    if not sizes:
        return
    name, (shape, largest) = max(sizes.items(), key=lambda item: item[1][1])
    hint = "use smaller input sizes (--input-shape NAME:1x3xHxW) or raise the limit"
    if largest > max_tensor:
        raise ResourceError(f"{where}: tensor '{name}' of shape {list(shape)} needs {_size(largest)}, over "
                            f"optkit's {max_tensor / GB:g} GiB per tensor (OPTKIT_MAX_TENSOR_GB); {hint}")
    total = sum(size for _, size in sizes.values())
    if total > max_total:
        raise ResourceError(f"{where}: the model's tensors need {_size(total)} together, over optkit's "
                            f"{max_total / GB:g} GiB (OPTKIT_MAX_TENSORS_GB); {hint}")


def bounded_ort_run(sess, feeds: dict[str, np.ndarray], what: str,
                    outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run an onnxruntime session, terminated after OPTKIT_RUN_TIMEOUT_S seconds with a ResourceError."""
    import onnxruntime as ort

    timeout = run_timeout_s()
    options = ort.RunOptions()
    options.log_severity_level = 4       # the terminate flag is reported by our own error, not a log line
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        options.terminate = True

    timer = threading.Timer(timeout, stop)
    timer.daemon = True
    timer.start()
    try:
        names = outputs or [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds, options)))
    except Exception as exc:
        if expired.is_set():
            raise ResourceError(f"{what}: onnxruntime did not finish in {timeout:g} s (a Loop that does not end, or "
                                f"a model too large?); stopped. OPTKIT_RUN_TIMEOUT_S raises the limit") from exc
        raise
    finally:
        timer.cancel()
