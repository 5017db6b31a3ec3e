"""optkit's default CPU schedules: numerics against onnxruntime across convolution shapes (odd sizes,
strides, padding, dilation, groups, depthwise, 1x1, fused epilogues, int8), and proof the conv rule
actually took each function (a schedule that silently fell back would test nothing)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optkit.backend.compiler import compile_model
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.graph.numerics import compare, run_ort

# (cin, cout, h, w, kernel, stride, pads, dilation, groups, epilogue)
CASES = [
    (3, 16, 17, 23, 3, 2, (1, 1, 1, 1), 1, 1, "relu6"),
    (16, 16, 15, 20, 3, 1, (1, 1, 1, 1), 1, 16, "hardswish"),      # depthwise, the 15x20 rows of parsing
    (8, 24, 9, 7, 1, 1, (0, 0, 0, 0), 1, 1, "bias"),               # 1x1 on an odd 9x7 map
    (12, 12, 13, 11, 3, 1, (2, 2, 2, 2), 2, 1, "residual"),        # dilation 2, residual add
    (8, 16, 10, 10, 3, 2, (1, 1, 1, 1), 1, 4, "relu"),             # grouped, stride 2
    (4, 6, 31, 33, 5, 1, (2, 2, 2, 2), 1, 1, "none"),              # 5x5 on a 33-wide row
    (16, 32, 8, 40, 3, 1, (0, 1, 1, 0), 1, 1, "relu"),             # asymmetric pads, row multiple of 8
    (24, 24, 19, 19, 3, 2, (1, 1, 1, 1), 1, 24, "relu6"),          # depthwise stride 2, odd
    (8, 8, 5, 37, 3, 1, (1, 1, 1, 1), 1, 1, "relu"),               # prime row: predicated last tile
    (16, 32, 4, 4, 1, 1, (0, 0, 0, 0), 1, 1, "relu6"),             # 1x1 on a 4x4 map: one flattened row
    (24, 24, 8, 8, 1, 1, (0, 0, 0, 0), 1, 1, "residual"),          # 1x1 on 8x8: tiles of two whole rows
    (8, 16, 7, 9, 1, 1, (0, 0, 0, 0), 1, 1, "bias"),               # 1x1, tiles of one 9-wide row
    (6, 8, 14, 17, 3, 3, (1, 2, 1, 0), 1, 1, "relu"),              # stride 3: three column phases
    (8, 8, 11, 12, 3, 2, (0, 0, 0, 0), 1, 1, "relu"),              # stride 2 without padding
    (16, 16, 12, 40, 3, 2, (1, 1, 1, 1), 1, 16, "relu6"),          # depthwise stride 2, rows of 20: phased
    (8, 8, 9, 37, 5, 2, (2, 2, 2, 2), 1, 8, "hardswish"),          # depthwise 5x5 stride 2, odd row: phased
    (6, 13, 9, 11, 3, 1, (1, 1, 1, 1), 1, 1, "relu6"),             # 13 output channels: predicated channel tile
    (16, 27, 10, 12, 1, 1, (0, 0, 0, 0), 1, 1, "bias"),            # 1x1, 27 channels (a pruned layer's count)
    (32, 32, 8, 8, 3, 1, (1, 1, 1, 1), 1, 32, "residual"),         # depthwise on an 8x8 map: unrolled padding rows
]


def conv_graph(cin, cout, h, w, k, stride, pads, dilation, groups, epilogue, seed=0):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(size=(cout, cin // groups, k, k)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(rng.normal(size=cout).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[stride] * 2, pads=list(pads),
                              dilations=[dilation] * 2, group=groups, kernel_shape=[k, k])]
    last = "c"
    if epilogue == "relu6":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(6, np.float32), "hi")]
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
        last = "y"
    elif epilogue in ("relu", "hardswish"):
        nodes.append(helper.make_node({"relu": "Relu", "hardswish": "HardSwish"}[epilogue], ["c"], ["y"]))
        last = "y"
    elif epilogue == "residual":
        nodes.append(helper.make_node("Add", ["c", "x"], ["y"]))
        last = "y"
    if last != "y":
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.fixture(params=["parallel", "one-thread"])
def threading_rule(request, monkeypatch):
    """Run a case both ways the rules can lay it out: loops in parallel, and on one thread (small work)."""
    from optkit.backend import schedules as cpu_schedules

    monkeypatch.setattr(cpu_schedules, "PARALLEL_MIN_WORK", 0 if request.param == "parallel" else 10**15)
    return request.param


def built_rules_matching_onnxruntime(model, feeds, save, tmp_path) -> dict[str, int]:
    """Build `model` for the host with the default schedules, assert its outputs match onnxruntime's, and
    return how many functions each rule took (callers assert their rule took one)."""
    result = compile_model(save(model), get_target("host"), tmp_path / "a", passes="simplify")
    _, bad = compare(run_ort(model, feeds), run_artifact(tmp_path / "a", feeds).outputs, rtol=1e-4, atol=1e-4)
    assert not bad, bad
    return result.manifest["schedules"]["functions"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[2]}x{c[3]}-k{c[4]}s{c[5]}d{c[7]}g{c[8]}-{c[9]}" for c in CASES])
def test_default_schedule_matches_onnxruntime(case, save, tmp_path, threading_rule):
    feeds = {"x": np.random.default_rng(1).normal(size=(1, case[0], case[2], case[3])).astype(np.float32)}
    counts = built_rules_matching_onnxruntime(conv_graph(*case), feeds, save, tmp_path)
    assert counts["conv"] >= 1 and counts["unscheduled"] == 0, counts


def conv_function(case, tmp_path):
    """The unscheduled TIR function of a one-conv graph, and the host's TVM target."""
    from optkit.backend.build import lower
    from optkit.backend.compiler import frontend

    host = get_target("host")
    path = tmp_path / "conv.onnx"
    onnx.save(conv_graph(*case), path)
    mod, tvm_target = lower(frontend(path, host, "simplify").mod, host)
    return next(f for gv, f in mod.functions.items() if gv.name_hint.startswith("fused_conv2d")), tvm_target


def test_short_row_1x1_convs_run_as_one_pixel_row(tmp_path):
    """The rule that flattens small 1x1 maps must take the 4x4, 8x8 and 7x9 cases above (the numerics test
    alone would pass if it never did) and leave the 9x7 map, whose tiles would end inside a row."""
    from tvm.s_tir import Schedule

    from optkit.backend import schedules as cpu_schedules

    taken = {}
    for cin, cout, h, w in [(16, 32, 4, 4), (24, 24, 8, 8), (8, 16, 7, 9), (8, 24, 9, 7)]:
        func, tvm_target = conv_function((cin, cout, h, w, 1, 1, (0, 0, 0, 0), 1, 1, "bias"), tmp_path)
        sch = Schedule(func)
        conv = cpu_schedules._block_named(sch, cpu_schedules.CONV_BLOCK_PREFIXES)
        taken[(h, w)] = cpu_schedules._pointwise_on_short_rows(sch, conv, cpu_schedules.vector_lanes(tvm_target))
    assert taken == {(4, 4): True, (8, 8): True, (7, 9): True, (9, 7): False}


def test_strided_convs_read_their_padding_in_column_phases(tmp_path):
    """The padding of a strided conv is laid out as [.., row, phase, column / stride] (even and odd padded
    widths, dense and grouped, stride 3, depthwise on rows of a vector or more); stride-1 convs and
    depthwise ones on short rows keep their 4-d padding."""
    from optkit.backend import schedules as cpu_schedules

    layouts = {}
    for case in [CASES[0], CASES[4], CASES[7], CASES[14], CASES[15], CASES[12], CASES[3]]:
        func, tvm_target = conv_function(case, tmp_path)
        sch, rule = cpu_schedules.default_schedule(func, cpu_schedules.vector_lanes(tvm_target))
        pad = next(b for b in cpu_schedules._blocks(sch) if sch.get(b).name_hint.startswith("pad"))
        layouts[case[5]] = layouts.get(case[5], []) + [[int(d) for d in sch.get(pad).writes[0].source.shape]]
    assert layouts == {2: [[1, 3, 19, 2, 13], [1, 8, 12, 2, 6], [1, 24, 21, 21], [1, 16, 14, 2, 21], [1, 8, 13, 2, 21]],
                       3: [[1, 6, 16, 3, 7]],
                       1: [[1, 12, 17, 15]]}, layouts


# (rows, inputs, outputs, transB, epilogue)
GEMM_CASES = [(1, 300, 136, 1, "Sigmoid"), (3, 64, 37, 0, "Relu"), (1, 96, 600, 1, "Identity")]


def gemm_graph(m, k, n, trans_b, epilogue, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n, k) if trans_b else (k, n)).astype(np.float32) * 0.1
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(rng.normal(size=n).astype(np.float32), "b")]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=trans_b), helper.make_node(epilogue, ["g"], ["y"])]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("case", GEMM_CASES, ids=[f"{c[0]}x{c[1]}x{c[2]}-t{c[3]}-{c[4]}" for c in GEMM_CASES])
def test_matmul_rule_matches_onnxruntime(case, save, tmp_path, threading_rule):
    feeds = {"x": np.random.default_rng(1).normal(size=case[:2]).astype(np.float32)}
    counts = built_rules_matching_onnxruntime(gemm_graph(*case), feeds, save, tmp_path)
    assert counts["matmul"] == 1 and counts["unscheduled"] == 0, counts


INT8_CASES = [(16, 32, 15, 20, 3, 1, (1, 1, 1, 1), 1, 1, "relu", "uint8"),
              CASES[0] + ("uint8",),                     # 3 input channels (padded to 4), stride 2, odd map
              CASES[3] + ("int8",),                      # dilation 2, residual; symmetric int8 activations
              CASES[6] + ("uint8",),                     # asymmetric pads
              CASES[8] + ("int8",),                      # prime row: 37 = 4 vectors of 8 + 5 dropped columns
              CASES[9] + ("uint8",),                     # 1x1 on 4x4: half a vector
              CASES[12] + ("uint8",),                    # stride 3
              CASES[4] + ("uint8",),                     # grouped: float sums of the integers
              CASES[7] + ("int8",),                      # depthwise stride 2
              CASES[17] + ("uint8",),                    # depthwise 8x8, its cast done by the padding copy
              CASES[15] + ("uint8",)]                    # depthwise 5x5 stride 2 on phased rows


@pytest.mark.parametrize("case", INT8_CASES, ids=[f"{c[0]}x{c[2]}x{c[3]}-k{c[4]}s{c[5]}d{c[7]}g{c[8]}-{c[10]}"
                                                  for c in INT8_CASES])
def test_int8_convolutions_are_scheduled_and_exact(case, tmp_path, save):
    """Integer convolutions (VNNI dot-product form where the host has it, else int16 x int8; grouped ones as
    exact float sums) against onnxruntime's QDQ execution: at most one output quantization step."""
    from graphs import host_has_vnni

    from optkit.graph.model_io import load_model
    from optkit.pass_infra.calibration import from_npz

    *conv, activations = case
    path = save(conv_graph(*conv))
    rng = np.random.default_rng(2)
    shape = (1, conv[0], conv[2], conv[3])
    np.savez(tmp_path / "cal.npz", x=rng.normal(size=(8, *shape)).astype(np.float32))
    result = compile_model(path, get_target("host"), tmp_path / "q", passes=f"quantize-int8{{activations={activations}}}",
                           calibration=from_npz(tmp_path / "cal.npz"))
    dense = conv[8] == 1
    assert result.manifest["integer_convolutions"] == 1
    assert result.manifest["dot_product_convolutions"] == int(dense and host_has_vnni())
    rules = result.manifest["schedules"]["functions"]
    assert rules["dot" if dense and host_has_vnni() else "conv"] == 1 and rules["unscheduled"] == 0, rules
    feeds = {"x": rng.normal(size=shape).astype(np.float32)}
    reference = run_ort(load_model(tmp_path / "q" / "model.opt.onnx", check=False), feeds)["y"]
    got = run_artifact(tmp_path / "q", feeds).outputs["y"]
    step = float(np.abs(reference).max()) / 127
    assert np.abs(got - reference).max() <= 1.01 * step      # at most one output quantization step


def test_int8_residual_epilogue_is_repeatable(tmp_path):
    """gesture's int8 blocks fuse the quantize of a residual input into the conv function. Computed at the
    conv tile, that stage covered part of its tensor and the add read the previous run's values: outputs
    changed from run to run (AP 1.0 vs 0.92 in the gate). Every run must give the same bytes."""
    import onnx
    from optkit.reference_models.catalog import calibration_provider, get_task

    from optkit.backend.runtime.vm_runner import flatten
    from optkit.graph.numerics import make_inputs
    from optkit.harness.measure import vm_runner

    task = get_task("gesture")
    result = compile_model(task.onnx_path, get_target("host"), tmp_path / "a", passes="mobile,quantize-int8",
                           calibration=calibration_provider("gesture", 16))
    feeds = make_inputs(onnx.load(task.onnx_path), seed=1)
    run = vm_runner(tmp_path / "a" / result.manifest["library"]["file"],
                    [feeds[i["name"]] for i in result.manifest["inputs"]])
    first, *rest = [[x.numpy().copy() for x in flatten(run())] for _ in range(4)]
    for outputs in rest:
        for a, b in zip(first, outputs):
            np.testing.assert_array_equal(a, b)


def test_schedules_none_is_plain_tvm_and_both_agree(tmp_path, save):
    model = conv_graph(8, 16, 12, 12, 3, 1, (1, 1, 1, 1), 1, 1, "relu")
    path = save(model)
    a = compile_model(path, get_target("host"), tmp_path / "none", passes="simplify", schedules="none")
    assert set(v for k, v in a.manifest["schedules"]["functions"].items()) == {0}
    compile_model(path, get_target("host"), tmp_path / "default", passes="simplify")
    feeds = {"x": np.random.default_rng(3).normal(size=(1, 8, 12, 12)).astype(np.float32)}
    np.testing.assert_allclose(run_artifact(tmp_path / "none", feeds).outputs["y"],
                               run_artifact(tmp_path / "default", feeds).outputs["y"], rtol=1e-5, atol=1e-5)


def test_default_schedules_build_for_arm_targets(tmp_path, save):
    path = save(conv_graph(16, 16, 15, 20, 3, 1, (1, 1, 1, 1), 1, 16, "relu6"))
    for target in ("rk3399", "ios-arm64"):
        result = compile_model(path, get_target(target), tmp_path / target, passes="simplify")
        assert result.manifest["schedules"]["functions"]["conv"] >= 1


# (op, channels, h, w): reductions over trailing axes; 16x16 takes the vector-partial-sum path, 15x15 not
REDUCTION_CASES = [("InstanceNormalization", 8, 16, 16), ("InstanceNormalization", 5, 15, 15),
                   ("GlobalAveragePool", 12, 16, 20), ("ReduceMean", 6, 9, 64)]


def reduction_graph(op, c, h, w, seed=0):
    rng = np.random.default_rng(seed)
    inits, inputs = [], ["x"]
    kwargs = {}
    if op == "InstanceNormalization":
        inits = [numpy_helper.from_array(rng.normal(size=c).astype(np.float32), "scale"),
                 numpy_helper.from_array(rng.normal(size=c).astype(np.float32), "bias")]
        inputs += ["scale", "bias"]
    elif op == "ReduceMean":
        kwargs = {"axes": [-1], "keepdims": 1}
    out = {"InstanceNormalization": [1, c, h, w], "GlobalAveragePool": [1, c, 1, 1], "ReduceMean": [1, c, h, 1]}[op]
    graph = helper.make_graph([helper.make_node(op, inputs, ["y"], **kwargs)], "reduce",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("case", REDUCTION_CASES, ids=[f"{c[0]}-{c[1]}x{c[2]}x{c[3]}" for c in REDUCTION_CASES])
def test_reductions_match_onnxruntime(case, save, tmp_path, threading_rule):
    feeds = {"x": np.random.default_rng(1).normal(size=(1, *case[1:])).astype(np.float32) * 3 + 1}
    counts = built_rules_matching_onnxruntime(reduction_graph(*case), feeds, save, tmp_path)
    assert counts["generic"] >= 1 and counts["unscheduled"] == 0, counts


@pytest.mark.parametrize("shape, axis", [((1, 300, 4), -1), ((1, 6, 5, 7), 1)], ids=["scores-last-axis", "channels"])
def test_softmax_computes_its_exp_once_and_matches_onnxruntime(shape, axis, save, tmp_path, threading_rule):
    """The generic rule inlines elementwise stages, but not one that calls exp and has two readers (the sum
    and the normalization): it stays a stage of its own."""
    from optkit.backend.build import lower
    from optkit.backend.compiler import frontend
    from optkit.backend.schedules import schedule_function, vector_lanes

    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], "softmax",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.random.default_rng(2).normal(size=shape).astype(np.float32) * 3}
    counts = built_rules_matching_onnxruntime(model, feeds, save, tmp_path)
    assert counts["generic"] >= 1 and counts["unscheduled"] == 0, counts
    mod, target = lower(frontend(save(model), get_target("host"), "").mod, get_target("host"))
    func = next(f for gv, f in mod.functions.items() if "softmax" in gv.name_hint)
    scheduled, rule = schedule_function(func, vector_lanes(target))
    assert rule == "generic" and str(scheduled).count("T.exp(") == 1
