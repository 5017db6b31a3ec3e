"""Gather indices are clamped (optkit/backend/rewrites/take.py): valid indices, negative ones included, give
onnxruntime's result; an index out of range reads inside the tensor instead of past it; and TVM's
"Fast mode segfaults" warning is gone from the build."""

import numpy as np
from onnx import TensorProto, helper

from optkit.backend.compiler import compile_model
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.graph.numerics import run_ort


def gather_graph():
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=1)
    graph = helper.make_graph([node], "gather", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                                                 helper.make_tensor_value_info("i", TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_gather_clamps_its_indices(save, tmp_path, capfd):
    model = gather_graph()
    compile_model(save(model), get_target("host"), tmp_path / "a", passes="")
    assert "Fast mode segfaults" not in capfd.readouterr().err
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    valid = {"x": x, "i": np.array([0, 5, -2], np.int64)}
    np.testing.assert_array_equal(run_artifact(tmp_path / "a", valid).outputs["y"], run_ort(model, valid)["y"])
    bad = {"x": x, "i": np.array([1, 10**6, 3], np.int64)}
    np.testing.assert_array_equal(run_artifact(tmp_path / "a", bad).outputs["y"], x[:, [1, 5, 3]])
