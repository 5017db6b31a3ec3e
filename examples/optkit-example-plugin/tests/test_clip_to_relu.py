"""How to unit-test an optkit pass: build a tiny graph, run the pass through the PassManager (which checks
validity, shapes and, for an exact pass, numerics against onnxruntime), then assert on the graph."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from optkit_example_plugin.clip_to_relu import ClipToRelu

from optkit.core.errors import OptionError
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes


def clips(*bounds):
    """x -> Clip(x, lo, hi) -> ... one Clip per (name, lo, hi); hi None leaves the bound out."""
    nodes, inits, current = [], [], "x"
    for name, lo, hi in bounds:
        inputs = [current, f"{name}_lo"]
        inits.append(numpy_helper.from_array(np.array(lo, np.float32), f"{name}_lo"))
        if hi is not None:
            inputs.append(f"{name}_hi")
            inits.append(numpy_helper.from_array(np.array(hi, np.float32), f"{name}_hi"))
        nodes.append(helper.make_node("Clip", inputs, [f"{name}_out"], name=name))
        current = f"{name}_out"
    graph = helper.make_graph(nodes, "clips", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def ops(model):
    return [n.op_type for n in model.graph.node]


def test_clip_from_zero_becomes_relu_and_relu6_stays():
    model = clips(("a", 0.0, None), ("b", 0.0, 6.0))
    out, records = PassManager([ClipToRelu()]).run(model)
    assert ops(out) == ["Relu", "Clip"]
    assert records[0].changed and records[0].stats == {"clips_rewritten": 1}
    assert records[0].max_abs_diff == 0.0                    # the manager compared both models in onnxruntime
    assert {t.name for t in out.graph.initializer} == {"b_lo", "b_hi"}
    assert ops(model) == ["Clip", "Clip"]                     # the caller's model is untouched


def test_skip_option_from_a_pass_spec():
    # Registered through the entry point once the plugin is installed; a spec string sets the option.
    (pass_,) = build_passes("clip-to-relu{skip=a;c}")
    out, _ = PassManager([pass_]).run(clips(("a", 0.0, None), ("c", 0.0, None), ("d", 0.0, None)))
    assert ops(out) == ["Clip", "Clip", "Relu"]


def test_unknown_option_is_refused_by_name():
    with pytest.raises(OptionError, match="clip-to-relu.*unknown option.*skipp"):
        ClipToRelu(skipp="a")


def test_nothing_to_do_reports_unchanged():
    out, records = PassManager([ClipToRelu()]).run(clips(("b", -1.0, None)))
    assert ops(out) == ["Clip"] and not records[0].changed
    onnx.checker.check_model(out)
