"""Clamps by scalar constants get their bounds as immediates (optkit/backend/rewrites/constant_clamps.py):
ReLU6-style and one-sided Clips are rewritten; a Clip by a bound known only at run time is not; the
rewritten module computes onnxruntime's numbers."""

import numpy as np
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

from optkit.backend.importer import to_relax
from optkit.backend.rewrites.constant_clamps import constant_clamps
from optkit.graph.numerics import run_ort

SHAPE = [1, 3, 4, 5]
OUTPUTS = ("relu6", "floored", "at_run_time")


def clamp_graph():
    inits = [numpy_helper.from_array(np.array(v, np.float32), name)
             for name, v in (("lo", 0.0), ("hi", 6.0), ("floor", -1.5))]
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["relu6"]),
             helper.make_node("Clip", ["x", "floor", ""], ["floored"]),
             helper.make_node("Clip", ["x", "", "ceiling"], ["at_run_time"])]
    value = lambda name, shape=SHAPE: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(nodes, "clamps", [value("x"), value("ceiling", [1])],
                              [value(n) for n in OUTPUTS], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_scalar_clamps_become_immediates_with_the_same_numbers():
    model = clamp_graph()
    mod, rewritten = constant_clamps(to_relax(model, "clamps.onnx"))
    assert rewritten == 3          # relu6's max and min, floored's max; not the min by a run-time bound
    clamp_functions = [f for gv, f in mod.functions_items()
                       if isinstance(f, tvm.tirx.PrimFunc) and ("maximum" in gv.name_hint or "minimum" in gv.name_hint)]
    assert sorted(len(f.params) for f in clamp_functions) == [2, 2, 2, 3]   # only at_run_time reads its bound
    feeds = {"x": np.random.default_rng(0).uniform(-10, 10, SHAPE).astype(np.float32),
             "ceiling": np.array([2.5], np.float32)}
    executable = tvm.compile(mod, target="llvm")
    outputs = relax.VirtualMachine(executable, tvm.cpu())["main"](*(tvm.runtime.tensor(v) for v in feeds.values()))
    expected = run_ort(model, feeds)
    for name, got in zip(OUTPUTS, outputs):
        np.testing.assert_array_equal(got.numpy(), expected[name], err_msg=name)
