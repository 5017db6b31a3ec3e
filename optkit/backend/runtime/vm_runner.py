"""Run a compiled Relax artifact: load the library, feed inputs in the manifest's order, return outputs.

This file depends on tvm and numpy only, so the same code runs natively and, as a script, under
qemu in the AArch64 sysroot:  python vm_runner.py LIB INPUTS.npz OUTPUTS.npz
"""

from __future__ import annotations

import sys


def run_library(lib_path: str, inputs: list, threads: int = 0) -> list:
    """Run `main` of the compiled module at lib_path on numpy inputs (in graph-input order)."""
    if threads:
        configure_threads(threads)
    return run_main(load_fresh(lib_path), inputs)


def run_main(module, inputs: list) -> list:
    """`main` of a loaded library or a freshly built executable on numpy inputs; outputs as numpy arrays."""
    return main_on_numpy(module)(inputs)


def main_on_numpy(module):
    """`main` of a loaded library in a Relax VM made once, as an application makes it: a call takes numpy
    inputs and returns numpy outputs (both copied, as onnxruntime's `run` does)."""
    import numpy as np
    import tvm
    from tvm import relax

    main = relax.VirtualMachine(module, tvm.cpu())["main"]

    def run(inputs: list) -> list:
        result = main(*[tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs])
        return [np.asarray(r.numpy()) for r in flatten(result)]

    return run


def load_fresh(lib_path: str):
    """Load a library from a private copy: dlopen hands back a library already loaded from the same path, so
    a process that rebuilt an artifact in place would otherwise run the old code."""
    import shutil
    import tempfile
    from pathlib import Path

    import tvm

    with tempfile.TemporaryDirectory(prefix="optkit-lib-") as tmp:
        private = Path(tmp) / Path(lib_path).name
        shutil.copyfile(lib_path, private)
        return tvm.runtime.load_module(str(private))      # the mapping outlives the file


def flatten(result) -> list:
    if hasattr(result, "numpy"):
        return [result]
    out = []
    for item in result:
        out.extend(flatten(item))
    return out


def allow_every_core(threads: int = 0) -> None:
    """TVM sizes its thread pool once, from TVM_NUM_THREADS, else half the x86 hardware threads (it assumes
    hyper-threading): on a 2-core machine without the variable every TVM run was single-threaded, and
    `config_threadpool` can only shrink the pool, never grow it. Set the variable (unless the user did) before
    the pool exists, in this process and the worker processes it starts."""
    import os

    os.environ.setdefault("TVM_NUM_THREADS", str(max(os.cpu_count() or 1, int(threads))))


# Pause iterations a TVM worker spins after a parallel region before it sleeps (TVM's default: 300000).
# Long spins steal the cores of whatever runs next: interleaved with onnxruntime (not spinning), pose's
# onnxruntime time went 8.3 -> 14.7 ms at 100000. Not spinning costs ~20 us to wake the workers for every
# region. 1000 catches the next function of the same inference and is asleep before anything else runs:
# measured on 2 cores, TVM parsing 5.59 -> 5.06 ms, face 1.29 -> 0.99 ms, onnxruntime beside it unchanged.
SHORT_SPIN = 1000


def configure_threads(threads: int, spin: bool = False) -> int:
    """Size TVM's runtime thread pool explicitly (0 = one thread per core) and return the size it took.
    Workers spin only briefly (SHORT_SPIN) unless `spin` asks for TVM's long default; TVM_THREAD_POOL_SPIN_COUNT
    in the environment wins over both."""
    import os

    wanted = int(threads) or (os.cpu_count() or 1)
    allow_every_core(wanted)
    if not spin:
        os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", str(SHORT_SPIN))
    import tvm

    tvm.get_global_func("runtime.config_threadpool")(0, wanted)
    got = int(tvm.get_global_func("runtime.NumThreads")())
    if got < wanted:
        raise RuntimeError(f"TVM's thread pool has {got} threads, {wanted} requested: it was created before "
                           f"optkit could size it; set TVM_NUM_THREADS={wanted} in the environment")
    return got


def _main(argv: list[str]) -> int:
    import numpy as np

    lib_path, inputs_path, outputs_path = argv[1:4]
    with np.load(inputs_path) as data:
        inputs = [data[f"arr_{k}"] for k in range(len(data.files))]
    outputs = run_library(lib_path, inputs)
    np.savez(outputs_path, *outputs)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
