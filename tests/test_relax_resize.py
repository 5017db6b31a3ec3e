"""The separable bilinear resize (optkit/backend/rewrites/resize.py): numerics against onnxruntime for every
coordinate mode it takes, upscaling, odd ratios and downscaling, threaded and on one thread; the rewrite
and the schedule rule must both have taken the function."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optkit.backend.compiler import compile_model
from optkit.backend.rewrites.resize import column_phases, interpolation_table
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.graph.numerics import compare, run_ort

# (channels, in h, in w, out h, out w, coordinate mode)
CASES = [
    (16, 15, 20, 30, 40, "half_pixel"),          # parsing's decoder: x2
    (3, 7, 9, 16, 23, "half_pixel"),             # odd ratio
    (4, 8, 8, 15, 17, "align_corners"),
    (5, 12, 10, 6, 5, "asymmetric"),             # downscale
    (2, 5, 6, 1, 12, "pytorch_half_pixel"),      # a one-row output
    (3, 6, 7, 12, 28, "asymmetric"),             # x4 columns
    (2, 4, 300, 8, 600, "half_pixel"),           # rows too wide to unroll
    (2, 4, 5, 8, 15, "half_pixel"),              # x3 columns
]


def resize_graph(c, h, w, out_h, out_w, mode):
    sizes = numpy_helper.from_array(np.array([1, c, out_h, out_w], np.int64), "sizes")
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["r"], mode="linear",
                            coordinate_transformation_mode=mode)
    relu = helper.make_node("Relu", ["r"], ["y"])      # something after it, as in a decoder
    graph = helper.make_graph([node, relu], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, out_h, out_w])], [sizes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}x{c[2]}-{c[3]}x{c[4]}-{c[5]}" for c in CASES])
@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "one-thread"])
def test_separable_resize_matches_onnxruntime(case, parallel, save, tmp_path, monkeypatch):
    from optkit.backend import schedules as cpu_schedules

    monkeypatch.setattr(cpu_schedules, "PARALLEL_MIN_WORK", 0 if parallel else 10**15)
    model = resize_graph(*case)
    result = compile_model(save(model), get_target("host"), tmp_path / "a", passes="simplify")
    assert result.manifest["separable_resizes"] == 1
    assert result.manifest["schedules"]["functions"]["resize"] == 1, result.manifest["schedules"]
    feeds = {"x": np.random.default_rng(0).normal(size=(1, *case[:3])).astype(np.float32)}
    _, bad = compare(run_ort(model, feeds), run_artifact(tmp_path / "a", feeds).outputs, rtol=1e-5, atol=1e-5)
    assert not bad, bad


@pytest.mark.parametrize("in_size,out_size,mode,factor", [
    (20, 40, "half_pixel", 2), (6, 12, "pytorch_half_pixel", 2), (7, 28, "asymmetric", 4), (160, 320, "half_pixel", 2),
    (8, 16, "align_corners", None), (12, 5, "asymmetric", None), (9, 23, "half_pixel", None), (9, 9, "half_pixel", None)])
def test_column_phases_only_where_the_table_repeats(in_size, out_size, mode, factor):
    """An integer upscale's table is described by per-phase offsets and weights that reproduce it exactly."""
    table = interpolation_table(out_size, in_size, mode)
    phases = column_phases(table, in_size, out_size)
    if factor is None:
        assert phases is None
        return
    assert len(phases) == factor
    first, second, first_weight, second_weight = table
    for j in range(out_size):
        k, (first_offset, second_offset, a, b) = j // factor, phases[j % factor]
        assert first[j] == min(max(k + first_offset, 0), in_size - 1) and second[j] == min(max(k + second_offset, 0), in_size - 1)
        assert first_weight[j] == np.float32(a) and second_weight[j] == np.float32(b)


def test_integer_upscale_reads_padded_rows_without_tables(save):
    from tvm import tirx

    from optkit.backend.compiler import frontend
    from optkit.backend.rewrites.resize import PADDED_ROW_BLOCK

    model = resize_graph(4, 6, 8, 12, 16, "half_pixel")
    front = frontend(save(model), get_target("host"), passes="")
    resize = next(f for gv, f in front.mod.functions.items() if "separable_resize2d" in gv.name_hint)
    assert isinstance(resize, tirx.PrimFunc) and PADDED_ROW_BLOCK in resize.script()
    assert len(resize.params) == 1 + 4 + 1     # data, the four row tables, output: no column tables


def nearest(model, rounding=b"floor"):
    """The same graph with its Resize made nearest-neighbour, rounding as given (ONNX's nearest_mode)."""
    node = model.graph.node[0]
    next(a for a in node.attribute if a.name == "mode").s = b"nearest"
    node.attribute.append(helper.make_attribute("nearest_mode", rounding))
    onnx.checker.check_model(model)
    return model


NEAREST_CASES = [(4, 6, 6, 12, 12), (3, 5, 7, 20, 28), (2, 4, 9, 8, 9), (2, 3, 300, 3, 600)]


@pytest.mark.parametrize("case", NEAREST_CASES, ids=[f"{c[1]}x{c[2]}-{c[3]}x{c[4]}" for c in NEAREST_CASES])
def test_nearest_upscale_by_powers_of_two_is_rewritten_and_exact(case, save, tmp_path):
    model = nearest(resize_graph(*case, "asymmetric"))
    result = compile_model(save(model), get_target("host"), tmp_path / "a", passes="simplify")
    assert result.manifest["separable_resizes"] == 1
    assert result.manifest["schedules"]["functions"]["resize"] == 1, result.manifest["schedules"]
    feeds = {"x": np.random.default_rng(0).normal(size=(1, *case[:3])).astype(np.float32)}
    np.testing.assert_array_equal(run_artifact(tmp_path / "a", feeds).outputs["y"], run_ort(model, feeds)["y"])


@pytest.mark.parametrize("case,rounding", [((4, 6, 6, 12, 12), b"round_prefer_floor"), ((4, 6, 6, 18, 18), b"floor")],
                         ids=["rounded", "x3"])
def test_other_nearest_resizes_are_left_to_tvm(case, rounding, save, tmp_path):
    model = nearest(resize_graph(*case, "asymmetric"), rounding)
    result = compile_model(save(model), get_target("host"), tmp_path / "a", passes="simplify")
    assert result.manifest["separable_resizes"] == 0
    feeds = {"x": np.random.default_rng(0).normal(size=(1, *case[:3])).astype(np.float32)}
    _, bad = compare(run_ort(model, feeds), run_artifact(tmp_path / "a", feeds).outputs, rtol=1e-5, atol=1e-5)
    assert not bad, bad


def qdq_resize_graph(c, h, w, out_h, out_w, mode, dtype, method="linear", **attributes):
    """x -> Q -> DQ -> Resize -> Q -> DQ: a resize between two quantized tensors, as in an int8 decoder."""
    elem = TensorProto.UINT8 if dtype == "uint8" else TensorProto.INT8
    zero = 3 if dtype == "uint8" else -2
    inits = [numpy_helper.from_array(np.array([1, c, out_h, out_w], np.int64), "sizes"),
             helper.make_tensor("s_in", TensorProto.FLOAT, [], [0.02]), helper.make_tensor("z_in", elem, [], [zero]),
             helper.make_tensor("s_out", TensorProto.FLOAT, [], [0.017]), helper.make_tensor("z_out", elem, [], [zero])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"]),
             helper.make_node("Resize", ["xd", "", "", "sizes"], ["r"], mode=method, coordinate_transformation_mode=mode,
                              **attributes),
             helper.make_node("QuantizeLinear", ["r", "s_out", "z_out"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "s_out", "z_out"], ["y"])]
    graph = helper.make_graph(nodes, "qdq_resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, out_h, out_w])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


QDQ_CASES = [(case, "linear", {}) for case in CASES[:3]] + [
    ((5, 6, 10, 12, 20, "asymmetric"), "nearest", {"nearest_mode": "floor"})]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("case,method,attributes", QDQ_CASES,
                         ids=[f"{c[1]}x{c[2]}-{c[3]}x{c[4]}-{c[5]}-{method}" for c, method, _ in QDQ_CASES])
def test_quantized_resize_reads_and_writes_bytes_and_matches_onnxruntime(case, method, attributes, dtype, save, tmp_path):
    """The dequantize before and the quantize after a resize (bilinear, or a nearest upscale) are taken into its
    two passes (1-byte input and output), and the result stays within one quantization step of onnxruntime."""
    from tvm import relax

    from optkit.backend.compiler import frontend

    model = qdq_resize_graph(*case, dtype, method, **attributes)
    path = save(model)
    front = frontend(path, get_target("host"), passes="")
    hint = "nearest_upscale2d" if method == "nearest" else "separable_resize2d"
    calls = [b.value for block in front.mod["main"].body.blocks for b in block.bindings
             if isinstance(b.value, relax.Call) and hint in str(b.value.args[0])]
    assert len(calls) == 1
    assert str(calls[0].args[1][0].ty.dtype) == dtype and str(calls[0].ty.dtype) == dtype
    compile_model(path, get_target("host"), tmp_path / "a", passes="")
    feeds = {"x": np.random.default_rng(1).uniform(-2, 2, size=(1, *case[:3])).astype(np.float32)}
    expected = run_ort(model, feeds)["y"]
    got = run_artifact(tmp_path / "a", feeds).outputs["y"]
    steps = np.abs(np.round((got - expected) / np.float32(0.017)))
    assert steps.max() <= 1 and (steps > 0).mean() < 0.01, (steps.max(), (steps > 0).mean())
