"""Run one engine WARMUP + N times on fixed inputs, single-threaded, marking the start and end of each of
the N inferences for the counting plugin, then print the process's memory map.

Runs inside the AArch64 emulator under optkit's instruction-counting plugin (count_plugin.c), which
snapshots its counters at every mark: the difference between two marks is one inference, with start-up,
imports and warm-up left out. Depends on numpy and the engine only:
    python count_runner.py ENGINE MODEL INPUTS.npz|seed:N WARMUP N
ENGINE is tvm (a compiled library), onnxruntime (an .onnx), litert (a .tflite, XNNPACK as LiteRT ships it) or
ncnn (a .param with a .param.json naming its blobs).
"""

from __future__ import annotations

import sys


def generated(shapes_and_types: list, seed: int) -> list:
    """Inputs drawn from `seed` when the host could not prepare them (a .tflite's shapes are known only here)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) if np.dtype(dtype).kind == "f"
            else rng.integers(0, 4, shape).astype(dtype) for shape, dtype in shapes_and_types]


def tvm_engine(model: str, inputs: list):
    import os

    os.environ["TVM_NUM_THREADS"] = "1"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tvm
    from vm_runner import configure_threads, main_on_numpy

    configure_threads(1)
    run = main_on_numpy(tvm.runtime.load_module(model))     # the VM made once, like the other engines' sessions
    return lambda: run(inputs)


def onnxruntime_engine(model: str, inputs: list):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    if isinstance(inputs, int):
        types = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int64)": "int64"}
        inputs = generated([([d if isinstance(d, int) else 1 for d in i.shape], types[i.type])
                            for i in sess.get_inputs()], inputs)
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), inputs)}
    return lambda: sess.run(None, feeds)


def litert_engine(model: str, inputs: list):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model, num_threads=1)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    if isinstance(inputs, int):
        inputs = generated([(list(d["shape"]), d["dtype"]) for d in details], inputs)

    def run():
        for d, x in zip(details, inputs):
            interpreter.set_tensor(d["index"], x.astype(d["dtype"]).reshape(d["shape"]))
        interpreter.invoke()

    return run


def ncnn_engine(model: str, inputs: list):
    """An ncnn .param (weights from ncnn's empty reader, as its benchmark does); MODEL.json beside it names
    the input blob and the output blobs."""
    import json

    import ncnn

    with open(model + ".json") as f:
        blobs = json.load(f)
    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_vulkan_compute = False
    net.load_param(model)
    net.load_model(ncnn.DataReaderFromEmpty())
    data = ncnn.Mat(inputs[0])

    def run():
        extractor = net.create_extractor()
        extractor.input(blobs["input"], data)
        for name in blobs["outputs"]:
            extractor.extract(name)

    return run


MARK_WHICH = 0x6F70746B     # the plugin's marker: getpriority(MARK_WHICH, label) fails with EINVAL


def marker():
    """mark(k): one raw syscall, resolved once so that marking costs the same few instructions every time."""
    import ctypes

    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.argtypes, syscall.restype = [ctypes.c_long, ctypes.c_long, ctypes.c_long], ctypes.c_long
    return lambda label: syscall(141, MARK_WHICH, label)          # 141: getpriority on AArch64


ENGINES = {"tvm": tvm_engine, "onnxruntime": onnxruntime_engine, "litert": litert_engine, "ncnn": ncnn_engine}


def main(argv: list[str]) -> int:
    import numpy as np

    engine, model, inputs_path, warmup, n = argv[1], argv[2], argv[3], int(argv[4]), int(argv[5])
    if inputs_path.startswith("seed:"):
        inputs = int(inputs_path[5:])                     # the engine draws them from its declared shapes
    else:
        with np.load(inputs_path) as data:
            inputs = [data[f"arr_{k}"] for k in range(len(data.files))]
    import gc

    run = ENGINES[engine](model, inputs)
    mark = marker()
    for _ in range(warmup):
        run()
    gc.collect()
    gc.disable()              # a collection inside one counted inference and not the other is not the model's
    for k in range(n):
        mark(k)
        run()
    mark(n)
    gc.enable()
    with open("/proc/self/maps") as maps:
        sys.stdout.write(maps.read())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
