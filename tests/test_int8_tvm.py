"""TVM runs QDQ models with integer convolutions, equal to onnxruntime's QDQ execution within one
quantization step."""

import re
import subprocess

import numpy as np
import onnx
import pytest
from graphs import bn_inits, bn_node, channel_spread_net, fin, host_has_vnni, init, make, rand, side_by_side
from onnx import helper, numpy_helper

from optkit.backend.compiler import compile_model, frontend, to_relax
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.graph.numerics import run_ort
from optkit.pass_infra.calibration import from_npz, from_python
from optkit.pass_infra.contract import PassContext
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes


def _disassembly(artifact_dir) -> str:
    """objdump's disassembly of an AArch64 artifact's library."""
    return subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(artifact_dir / "model.so")],
                          capture_output=True, text=True, check=True).stdout


def _emulated_steps(artifact_dir, q, feeds) -> float:
    """Largest difference between the AArch64 build of the QDQ model `q` run under qemu and onnxruntime's run
    of `q`, on output y, in steps of y's quantization scale."""
    out_scale = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name == "y_scale")
    got = run_artifact(artifact_dir, feeds, emulate=True).outputs["y"]
    return float((np.abs(got - run_ort(q, feeds)["y"]) / float(out_scale)).max())


def conv_stack(height: int = 17, width: int = 23):
    """conv3x3 s2 → BN → ReLU → depthwise 3x3 → ReLU → 1x1 → ReLU → dilated 3x3 (all convs quantized)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
             bn_node("bn1", "c1", "n1"), helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "wd", "bd"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=8),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "wp", "bp"], ["c3"], name="pw"),
             helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
             helper.make_node("Conv", ["r3", "wo", "bo"], ["y"], name="dilated", pads=[2, 2, 2, 2], dilations=[2, 2])]
    inits = [init("w1", rand(rng, 8, 3, 3, 3)), *bn_inits(rng, "bn1", 8), init("wd", rand(rng, 8, 1, 3, 3)),
             init("bd", rand(rng, 8)), init("wp", rand(rng, 12, 8, 1, 1)), init("bp", rand(rng, 12)),
             init("wo", rand(rng, 5, 12, 3, 3)), init("bo", rand(rng, 5))]
    return make(nodes, [fin("x", [1, 3, height, width])], [fin("y", [1, 5, (height - 1) // 2 + 1, (width - 1) // 2 + 1])],
                inits)


@pytest.fixture
def quantized(tmp_path, save):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((12, 1, 3, 17, 23)).astype(np.float32))
    ctx = PassContext(calibration=from_npz(tmp_path / "calib.npz"))
    q, _ = PassManager(build_passes("mobile,quantize-int8")).run(conv_stack(), ctx)
    return q, save(q, "q.onnx")


def test_every_conv_becomes_an_integer_conv(quantized):
    from optkit.backend.rewrites.int8 import integer_convolutions

    q, _ = quantized
    mod, count, on_dot = integer_convolutions(to_relax(q, "q.onnx"))
    assert (count, on_dot) == (4, 0)
    text = mod.script()
    assert text.count("R.nn.conv2d(") == 3             # the dense ones: int16 x int8 -> int32
    assert text.count('out_dtype="int32"') == 3
    assert 'dtype="int16") = R.astype' in text       # activations enter as integers, zero point removed
    assert text.count("cls.group_conv2d_int8") == 1    # depthwise: exact float sums of the integers


def test_dense_convs_go_to_the_dot_product_form_when_the_cpu_has_it(quantized):
    """With VNNI the three dense convs become packed u8 x s8 convolutions; the depthwise one keeps its float
    form (it has no channel reduction to put in the instruction's groups of four)."""
    from optkit.backend.dot_product import KINDS
    from optkit.backend.rewrites.int8 import integer_convolutions

    q, _ = quantized
    for kind in KINDS:
        mod, count, on_dot = integer_convolutions(to_relax(q, "q.onnx"), dot_product=kind)
        assert (count, on_dot) == (4, 3)
        text = mod.script()
        assert text.count("R.nn.conv2d(") == 0
        assert text.count(f"cls.{kind.block}") == 3 and text.count("cls.group_conv2d_int8") == 1


def test_dot_product_kind_follows_the_target():
    import tvm

    from optkit.backend.dot_product import SDOT, WIDENING, dot_product_kind

    kinds = {name: dot_product_kind(tvm.target.Target(get_target(name).tvm_target_dict()))
             for name in ("rk3399", "snapdragon625", "snapdragon845", "ios-arm64")}
    # Apple A12 is ARMv8.3: the dot product came with the A13 (ARMv8.4), as LLVM's apple-a12 model says.
    assert kinds == {"rk3399": WIDENING, "snapdragon625": WIDENING, "snapdragon845": SDOT, "ios-arm64": WIDENING}


def test_weights_at_minus_128_keep_the_float_form_on_neon_widening(quantized):
    """smull + smlal sums two products in int16: exact only while no weight is -128 (-128 x -128 twice
    overflows), so such a layer stays on the exact float32 form (as does the 3-channel stem, one group)."""
    from optkit.backend.dot_product import WIDENING
    from optkit.backend.rewrites.int8 import integer_convolutions

    q, _ = quantized
    q = onnx.ModelProto.FromString(q.SerializeToString())
    pointwise = next(t for t in q.graph.initializer if numpy_helper.to_array(t).shape == (12, 8, 1, 1))
    w = numpy_helper.to_array(pointwise).copy()
    w.flat[0] = -128
    pointwise.CopyFrom(numpy_helper.from_array(w, pointwise.name))
    mod, count, on_dot = integer_convolutions(to_relax(q, "q.onnx"), dot_product=WIDENING, float_dense=True)
    assert (count, on_dot) == (4, 1)
    assert mod.script().count("cls.group_conv2d_int8") == 3


def test_arm_cores_without_dot_product_sum_dense_convs_in_float_where_exact(quantized):
    from optkit.backend.build import build
    from optkit.backend.rewrites.int8 import integer_convolutions, quantize_by_reciprocal
    from optkit.backend.runtime.vm_runner import run_main

    q, _ = quantized
    mod, count, on_dot = integer_convolutions(to_relax(q, "q.onnx"), float_dense=True)
    assert (count, on_dot) == (4, 0)
    assert mod.script().count("cls.group_conv2d_int8") == 4 and "R.nn.conv2d(" not in mod.script()
    executable, _ = build(quantize_by_reciprocal(mod)[0], get_target("host"))
    out_scale = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name == "y_scale")
    for seed in range(2):
        x = np.random.default_rng(30 + seed).standard_normal((1, 3, 17, 23)).astype(np.float32)
        (got,) = run_main(executable, [x])
        steps = np.abs(got - run_ort(q, {"x": x})["y"]) / float(out_scale)
        assert steps.max() <= 1.0 + 1e-3, steps.max()


@pytest.mark.emulation
@pytest.mark.parametrize("target, instruction", [("snapdragon845", "sdot"), ("rk3399", "smlal")])
def test_arm_int8_builds_match_onnxruntime_qdq_under_emulation(quantized, tmp_path, target, instruction, sysroot_ready):
    """snapdragon845 puts the dense convs (stride 2, padding, 1x1, dilation 2, odd sizes) on `sdot`, rk3399 on
    NEON widening multiplies, two channel groups at a time (smull, smlal, sadalp; 12 channels padded to an even
    group count, the 3-channel stem as float sums); the AArch64 library itself runs under qemu within one
    quantization step of onnxruntime."""
    q, path = quantized
    result = compile_model(path, get_target(target), tmp_path / "sd845", passes="", validate="emulate")
    packed = 3 if instruction == "sdot" else 2       # the widening kind leaves the 3-channel stem in float
    assert result.manifest["dot_product_convolutions"] == packed
    assert result.manifest["schedules"]["functions"].get("dot", 0) == packed     # tensorized, no fallback
    assert result.manifest["validation"]["how"] == "exported library under qemu-aarch64 user-mode emulation"
    disassembly = _disassembly(tmp_path / "sd845")
    mnemonics = {line.split("\t")[2].split()[0] for line in disassembly.splitlines() if line.count("\t") >= 2}
    assert instruction in mnemonics and ("sdot" in mnemonics) == (instruction == "sdot")
    if instruction == "sdot":       # 8 channels' weights loaded as vectors, each sdot reading its lane
        assert any("sdot" in line and ".4b[" in line for line in disassembly.splitlines())
    x = np.random.default_rng(20).standard_normal((1, 3, 17, 23)).astype(np.float32)
    steps = _emulated_steps(tmp_path / "sd845", q, {"x": x})
    assert steps <= 1.0 + 1e-3, steps


def test_integer_build_matches_onnxruntime_qdq_within_one_step(quantized, tmp_path):
    q, path = quantized
    result = compile_model(path, get_target("host"), tmp_path / "host", passes="")
    assert result.manifest["integer_convolutions"] == 4
    assert result.manifest["dot_product_convolutions"] == (3 if host_has_vnni() else 0)
    assert result.manifest["schedules"]["functions"].get("dot", 0) == result.manifest["dot_product_convolutions"]
    # A small net does not amplify one-step rounding differences: every output keeps the full 20 dB bar.
    assert all(o["bar_db"] == 20.0 for o in result.manifest["validation"]["outputs"].values())
    out_scale = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name == "y_scale")
    for seed in range(3):
        x = np.random.default_rng(10 + seed).standard_normal((1, 3, 17, 23)).astype(np.float32)
        got = run_artifact(tmp_path / "host", {"x": x}).outputs["y"]
        ref = run_ort(q, {"x": x})["y"]
        steps = np.abs(got - ref) / float(out_scale)
        assert steps.max() <= 1.0 + 1e-3, steps.max()


@pytest.mark.parametrize("dtype, zero_point", [(np.uint8, 131), (np.int8, -3)])
def test_quantize_multiplies_by_the_inverse_scale_and_matches_onnxruntime(dtype, zero_point, save, tmp_path):
    """QuantizeLinear runs as x * (1 / scale): equal to onnxruntime's division everywhere but within a float32
    ulp of a rounding boundary, where it is one step off; saturation and the zero point as in ONNX."""
    from optkit.backend.rewrites.int8 import quantize_by_reciprocal

    scale = np.float32(0.0137)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    model = make(nodes, [fin("x", [4, 8, 33, 35])], [fin("y", [4, 8, 33, 35])],
                 [init("s", np.array(scale)), numpy_helper.from_array(np.array(zero_point, dtype), "z")])
    path = save(model, "qdq.onnx")
    _, rewritten = quantize_by_reciprocal(to_relax(model, "qdq.onnx"))
    assert rewritten == 1
    assert "R.quantize(" not in frontend(path, get_target("host"), "").mod.script()     # compile applies it
    compile_model(path, get_target("host"), tmp_path / "a", passes="")
    x = (np.random.default_rng(3).standard_normal((4, 8, 33, 35)) * 1.2).astype(np.float32)   # saturates both ends
    got = run_artifact(tmp_path / "a", {"x": x}).outputs["y"]
    ref = run_ort(model, {"x": x})["y"]
    steps = np.abs(got - ref) / scale
    assert steps.max() <= 1.0 + 1e-3 and np.mean(steps > 0.5) < 1e-4, (steps.max(), np.mean(steps > 0.5))


@pytest.mark.parametrize("layer", ["gemm-transB", "matmul"])
def test_dense_layers_run_on_int8_weights_within_one_step(layer, save, tmp_path):
    """conv → ReLU → global pool → Gemm (transB, as PyTorch exports Linear) or MatMul: the dense layer reads its
    weights as int8 and sums in int32, like the convolutions, and stays within a step of onnxruntime."""
    from optkit.backend.rewrites.int8 import integer_convolutions

    rng = np.random.default_rng(3)
    dense = (helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], name="fc", transB=1) if layer == "gemm-transB"
             else helper.make_node("MatMul", ["f", "wg"], ["y"], name="fc"))
    weights = rand(rng, 10, 24) if layer == "gemm-transB" else rand(rng, 24, 10)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"), dense]
    inits = [init("w1", rand(rng, 24, 3, 3, 3)), init("b1", rand(rng, 24)), init("wg", weights)]
    inits += [init("bg", rand(rng, 10))] if layer == "gemm-transB" else []
    model = make(nodes, [fin("x", [1, 3, 9, 11])], [fin("y", [1, 10])], inits)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((12, 1, 3, 9, 11)).astype(np.float32))
    q, _ = PassManager(build_passes("mobile,quantize-int8")).run(model, PassContext(calibration=from_npz(tmp_path / "calib.npz")))
    mod, count, _ = integer_convolutions(to_relax(q, "q.onnx"))
    assert count == 2
    assert "R.matmul(" in mod.script() and mod.script().count('out_dtype="int32"') == 2
    compile_model(save(q, "q.onnx"), get_target("host"), tmp_path / "host", passes="")
    out_scale = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name == "y_scale")
    for seed in range(3):
        x = rng.standard_normal((1, 3, 9, 11)).astype(np.float32)
        steps = np.abs(run_artifact(tmp_path / "host", {"x": x}).outputs["y"] - run_ort(q, {"x": x})["y"]) / float(out_scale)
        assert steps.max() <= 1.0 + 1e-3, (seed, steps.max())


def residual_block():
    """conv3x3 (6 -> 6) → ReLU → + input → grouped conv (groups 2) → 1x1 stride 2 (6 -> 10): a residual add
    of int8 tensors, channels that fill neither 4-channel groups nor 8-channel tiles, and a grouped layer."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Add", ["r1", "x"], ["s"], name="residual"),
             helper.make_node("Conv", ["s", "wg", "bg"], ["g"], name="grouped", pads=[1, 1, 1, 1], group=2),
             helper.make_node("Conv", ["g", "wp", "bp"], ["y"], name="project", strides=[2, 2])]
    inits = [init("w1", rand(rng, 6, 6, 3, 3)), init("b1", rand(rng, 6)), init("wg", rand(rng, 6, 3, 3, 3)),
             init("bg", rand(rng, 6)), init("wp", rand(rng, 10, 6, 1, 1)), init("bp", rand(rng, 10))]
    return make(nodes, [fin("x", [1, 6, 15, 19])], [fin("y", [1, 10, 8, 10])], inits)


@pytest.mark.emulation
@pytest.mark.parametrize("target", ["rk3399", "snapdragon845"])
def test_arm_int8_residual_and_grouped_layers_match_onnxruntime_under_emulation(tmp_path, save, sysroot_ready, target):
    """On the NEON widening path (rk3399) and on sdot (snapdragon845): a residual add and a grouped conv after
    packed convs whose biases are held in their sums (backend/rewrites/requantize.py)."""
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((12, 1, 6, 15, 19)).astype(np.float32))
    q, _ = PassManager(build_passes("quantize-int8")).run(
        residual_block(), PassContext(calibration=from_npz(tmp_path / "calib.npz")))
    result = compile_model(save(q, "res.onnx"), get_target(target), tmp_path / "a", passes="", validate="off")
    assert (result.manifest["integer_convolutions"], result.manifest["dot_product_convolutions"]) == (3, 2)
    x = np.random.default_rng(40).standard_normal((1, 6, 15, 19)).astype(np.float32)
    steps = _emulated_steps(tmp_path / "a", q, {"x": x})
    assert steps <= 1.0 + 1e-3, steps


def qdq_concat_model(out_grid: tuple[float, int]) -> onnx.ModelProto:
    """Two uint8 tensors (grids 0.05/3 and 0.02/0) concatenated on channels and quantized on `out_grid`."""
    u8 = lambda name, v: numpy_helper.from_array(np.array(v, np.uint8), name)    # noqa: E731
    nodes = [helper.make_node("QuantizeLinear", ["a", "sa", "za"], ["qa"]),
             helper.make_node("DequantizeLinear", ["qa", "sa", "za"], ["da"]),
             helper.make_node("QuantizeLinear", ["b", "sb", "zb"], ["qb"]),
             helper.make_node("DequantizeLinear", ["qb", "sb", "zb"], ["db"]),
             helper.make_node("Concat", ["da", "db"], ["c"], axis=1),
             helper.make_node("QuantizeLinear", ["c", "sc", "zc"], ["qc"]),
             helper.make_node("DequantizeLinear", ["qc", "sc", "zc"], ["y"])]
    return make(nodes, [fin("a", [1, 5, 7, 9]), fin("b", [1, 3, 7, 9])], [fin("y", [1, 8, 7, 9])],
                [init("sa", np.array(0.05, np.float32)), u8("za", 3), init("sb", np.array(0.02, np.float32)), u8("zb", 0),
                 init("sc", np.array(out_grid[0], np.float32)), u8("zc", out_grid[1])])


@pytest.mark.parametrize("out_grid, rewritten", [((0.05, 3), 1), ((0.045, 10), 0)])
def test_quantized_concat_copies_inputs_on_the_output_grid_and_matches_onnxruntime(out_grid, rewritten, save, tmp_path):
    """The concatenation runs on the integers when an input is on the output's own grid: that input is
    copied byte for byte, the other requantized. With none to copy it is left alone. Either way the build
    equals onnxruntime's float round trip exactly, saturation included."""
    from optkit.backend.rewrites.quantized_concat import quantized_concats

    model = qdq_concat_model(out_grid)
    path = save(model, "concat.onnx")
    mod, got, copied = quantized_concats(to_relax(model, "concat.onnx"))
    assert (got, copied) == (rewritten, rewritten)
    concat = [line for line in mod.script().splitlines() if "R.concat(" in line][0]
    assert concat.count('dtype="uint8"') == rewritten and concat.count('dtype="float32"') == 1 - rewritten
    result = compile_model(path, get_target("host"), tmp_path / "c", passes="")
    assert result.manifest["integer_concatenations"] == rewritten
    rng = np.random.default_rng(4)
    feeds = {"a": rng.uniform(-1, 14, (1, 5, 7, 9)).astype(np.float32), "b": rng.uniform(-1, 6, (1, 3, 7, 9)).astype(np.float32)}
    np.testing.assert_array_equal(run_artifact(tmp_path / "c", feeds).outputs["y"], run_ort(model, feeds)["y"])


def _assert_host_build_within_one_step(mod, q, seed: int) -> None:
    """`mod` (rewritten from the QDQ model `q`) built for the host equals onnxruntime within one step on 3
    inputs, off by one only where a value lies within float32 rounding of a half step (under 1 %)."""
    from optkit.backend.build import build
    from optkit.backend.rewrites.int8 import quantize_by_reciprocal
    from optkit.backend.runtime.vm_runner import run_main

    executable, _ = build(quantize_by_reciprocal(mod)[0], get_target("host"))
    out_scale = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name == "y_scale")
    off = []
    for k in range(3):
        x = np.random.default_rng(seed + k).standard_normal((1, 3, 17, 23)).astype(np.float32)
        (got,) = run_main(executable, [x])
        steps = np.abs(got - run_ort(q, {"x": x})["y"]) / float(out_scale)
        assert steps.max() <= 1.0 + 1e-3, steps.max()
        off.append(np.mean(steps > 0.5))
    assert np.mean(off) < 0.01, off


def test_requantize_folds_into_one_multiply_add_and_matches_onnxruntime(quantized):
    """Each conv's rescale, bias and requantize become one multiply-add per output (Arm builds): every
    conv of the stack is folded, and the result is onnxruntime's within one step, off by one only where a
    value lies within float32 rounding of a half step (rare)."""
    from optkit.backend.rewrites.int8 import integer_convolutions
    from optkit.backend.rewrites.requantize import folded_requantize

    q, _ = quantized
    mod, _, _ = integer_convolutions(to_relax(q, "q.onnx"), float_dense=True)
    mod, folded = folded_requantize(mod)
    assert folded == 4                    # every conv feeds a quantize (the output too: y is quantized)
    assert mod.script().count("R.quantize(") == 1        # only the graph input's quantize is left
    _assert_host_build_within_one_step(mod, q, seed=40)


@pytest.mark.parametrize("kind_name", ["sdot", "smull"])
def test_packed_convs_hold_their_bias_in_the_sum_and_match_onnxruntime(quantized, kind_name):
    """On the Arm kinds a packed conv's int32 bias joins its correction constant, so its requantize is one
    multiply per output with no per-channel addend (2 operands, not 3), the zero point
    added by the saturating narrow; built for the host (no tensorize) the model is onnxruntime's within one
    step, off by one only where a value lies within float32 rounding of a half step."""
    import tvm
    from tvm import relax

    from optkit.backend.dot_product import KINDS
    from optkit.backend.rewrites.int8 import integer_convolutions
    from optkit.backend.rewrites.requantize import folded_requantize

    q, _ = quantized
    kind = next(k for k in KINDS if k.name == kind_name)
    mod, _, on_dot = integer_convolutions(to_relax(q, "q.onnx"), kind, float_dense=True)
    assert on_dot == (2 if kind.channel_pairs else 3)       # the 3-channel stem stays float on the pairs kind
    mod, folded = folded_requantize(mod)
    assert folded == 4
    requantizes = [b.value for block in mod["main"].body.blocks for b in block.bindings
                   if isinstance(b.value, relax.Call) and isinstance(b.value.args[0], tvm.ir.GlobalVar)
                   and b.value.args[0].name_hint.startswith("requantize")]
    operands = sorted(len(call.args[1].fields) for call in requantizes)
    assert operands == sorted([2] * on_dot + [3] * (4 - on_dot)), operands
    _assert_host_build_within_one_step(mod, q, seed=50)


def qdq_max_pool_model(dtype, zero_point: int, stride: int, out_grid=None, width: int = 35) -> onnx.ModelProto:
    """x quantized (scale 0.05), max-pooled 3x3 with padding 1, quantized again on `out_grid` (default: the
    input's own, as onnxruntime's quantizer leaves a MaxPool)."""
    scale, z = (0.05, zero_point) if out_grid is None else out_grid
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("MaxPool", ["d"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride] * 2),
             helper.make_node("QuantizeLinear", ["p", "so", "zo"], ["qp"]),
             helper.make_node("DequantizeLinear", ["qp", "so", "zo"], ["y"])]
    out = (17 - 1) // stride + 1
    return make(nodes, [fin("x", [1, 6, 17, width])], [fin("y", [1, 6, out, (width - 1) // stride + 1])],
                [init("s", np.array(0.05, np.float32)), numpy_helper.from_array(np.array(zero_point, dtype), "z"),
                 init("so", np.array(scale, np.float32)), numpy_helper.from_array(np.array(z, dtype), "zo")])


@pytest.mark.parametrize("dtype, zero_point, out_grid, rewritten", [
    (np.uint8, 0, None, 1), (np.int8, -20, None, 1), (np.uint8, 0, (0.04, 0), 0)])
def test_quantized_max_pool_runs_on_the_integers_only_on_its_own_grid(dtype, zero_point, out_grid, rewritten):
    """quantize(max_pool(dequantize(q))) on one grid is max_pool(q); on another grid it is left as it was."""
    from optkit.backend.rewrites.quantized_maxpool import quantized_max_pools

    mod, got = quantized_max_pools(to_relax(qdq_max_pool_model(dtype, zero_point, 2, out_grid), "pool.onnx"))
    assert got == rewritten
    pool = [line for line in mod.script().splitlines() if "R.nn.max_pool2d(" in line][0]
    assert (f'dtype="{np.dtype(dtype).name}"' in pool) == bool(rewritten)


@pytest.mark.emulation
def test_quantized_max_pool_on_aarch64_equals_onnxruntime_under_emulation(save, tmp_path, sysroot_ready):
    """The integer max pool built for snapdragon845 and run under qemu equals onnxruntime's QDQ run exactly:
    padding (the integers pad with the type's least value, the float pool with -inf), strides 1 and 2,
    uint8 and int8 with a zero point, values saturated at both ends of the grid. Where 16 output columns
    divide the row, each tap is one 16-byte vector max (umax/smax .16b). The three cases are built side by
    side in one library."""
    cases = [(np.uint8, 0, 2, 35), (np.int8, -20, 1, 32), (np.uint8, 0, 2, 64)]
    model = side_by_side([qdq_max_pool_model(dtype, zero_point, stride, width=width)
                          for dtype, zero_point, stride, width in cases])
    compile_model(save(model, "pool.onnx"), get_target("snapdragon845"), tmp_path / "arm", passes="", validate="off")
    disassembly = _disassembly(tmp_path / "arm")
    for vector_max in ("umax", "smax"):         # 64 columns at stride 2 (uint8), 32 at stride 1 (int8)
        assert re.search(rf"\t{vector_max}\tv\d+\.16b", disassembly), vector_max
    rng = np.random.default_rng(6)
    feeds = {f"b{k}_x": rng.uniform(-9, 14, (1, 6, 17, width)).astype(np.float32)
             for k, (_, _, _, width) in enumerate(cases)}
    got = run_artifact(tmp_path / "arm", feeds, emulate=True).outputs
    expected = run_ort(model, feeds)
    for k in range(len(cases)):
        np.testing.assert_array_equal(got[f"b{k}_y"], expected[f"b{k}_y"])


@pytest.mark.emulation
def test_float_max_pool_on_aarch64_is_vectorized_and_equals_onnxruntime_under_emulation(save, tmp_path, sysroot_ready):
    """An fp32 max pool on Arm takes the same vector rule (a compare and select on 4 lanes per tap) and equals
    onnxruntime."""
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    model = make(nodes, [fin("x", [1, 5, 9, 32])], [fin("y", [1, 5, 9, 32])], [])
    compile_model(save(model, "fpool.onnx"), get_target("snapdragon845"), tmp_path / "arm", passes="",
                  validate="emulate")
    disassembly = _disassembly(tmp_path / "arm")
    assert re.search(r"\t(fmax|fcmgt)\tv\d+\.4s", disassembly)      # TVM's max of floats is a compare and select
    feeds = {"x": np.random.default_rng(7).standard_normal((1, 5, 9, 32)).astype(np.float32)}
    got = run_artifact(tmp_path / "arm", feeds, emulate=True).outputs["y"]
    np.testing.assert_array_equal(got, run_ort(model, feeds)["y"])


@pytest.mark.emulation
def test_quantized_concat_on_aarch64_matches_onnxruntime_under_emulation(save, tmp_path, sysroot_ready):
    """The integer concatenation built for snapdragon845 (with its requantize fold) and run under qemu: the
    copied input and the requantized one equal onnxruntime's, saturation included."""
    model = qdq_concat_model((0.05, 3))
    result = compile_model(save(model, "concat.onnx"), get_target("snapdragon845"), tmp_path / "arm", passes="",
                           validate="emulate")
    assert result.manifest["integer_concatenations"] == 1
    rng = np.random.default_rng(5)
    feeds = {"a": rng.uniform(-1, 14, (1, 5, 7, 9)).astype(np.float32), "b": rng.uniform(-1, 6, (1, 3, 7, 9)).astype(np.float32)}
    got = run_artifact(tmp_path / "arm", feeds, emulate=True).outputs["y"]
    np.testing.assert_array_equal(got, run_ort(model, feeds)["y"])


@pytest.mark.emulation
@pytest.mark.parametrize("dtype, zero_point", [(np.uint8, 131), (np.int8, 0)])
def test_neon_saturating_round_matches_onnxruntime_bit_for_bit_under_emulation(dtype, zero_point, save, tmp_path,
                                                                               sysroot_ready):
    """AArch64 builds quantize with fcvtns, sqadd and saturating narrows (backend/saturating_round.py). Run
    under qemu on every half-step tie in range, both saturation ends, values past int32 and infinities, they
    equal onnxruntime's QuantizeLinear exactly (scale 0.5: its reciprocal is exact, so division and product
    agree)."""
    scale = np.float32(0.5)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    shape = [1, 8, 4, 40]
    model = make(nodes, [fin("x", shape)], [fin("y", shape)],
                 [init("s", np.array(scale)), numpy_helper.from_array(np.array(zero_point, dtype), "z")])
    ties = (np.arange(-400, 400) + 0.5) * scale                    # x / scale = k + 1/2: rounds to the even k
    extremes = np.array([np.inf, -np.inf, 3e9, -3e9, 1e6, -1e6, 64.0, -64.0, 127.75, -128.25, 0.0, -0.0])
    x = np.resize(np.concatenate([ties, extremes, np.random.default_rng(2).uniform(-200, 200, 512)]),
                  shape).astype(np.float32)
    compile_model(save(model, "qdq.onnx"), get_target("snapdragon845"), tmp_path / "arm", passes="", validate="off")
    disassembly = _disassembly(tmp_path / "arm")
    narrow = "sqxtun" if dtype == np.uint8 else "sqxtn"
    assert "fcvtns" in disassembly and f"{narrow}\t" in disassembly and ("sqadd" in disassembly) == bool(zero_point)
    got = run_artifact(tmp_path / "arm", {"x": x}, emulate=True).outputs["y"]
    np.testing.assert_array_equal(got, run_ort(model, {"x": x})["y"])


@pytest.mark.emulation
def test_stride2_int8_depthwise_deinterleaves_rows_and_matches_onnxruntime_under_emulation(tmp_path, save, sysroot_ready):
    """A stride-2 int8 depthwise layer on Arm copies its input rows into the two column phases with
    contiguous loads and a deinterleaving shuffle (backend/deinterleave.py): rows of 64, 48 and 24 columns take vectors of
    16, 8 and 4 column pairs (odd pairs keep the unrolled copy, run by the tests above); padding on one side only
    (an odd padded width) keeps the phased copy, and the convolution rule still schedules the layer. The four
    layers are built side by side in one library, run under qemu, each within one step of onnxruntime."""
    cases = [(64, [1, 1, 1, 1]), (48, [1, 1, 1, 1]), (24, [1, 1, 1, 1]), (64, [0, 0, 1, 1])]
    quantized_layers, inputs = [], {}
    for k, (width, pads) in enumerate(cases):
        rng = np.random.default_rng(width + k)
        nodes = [helper.make_node("Conv", ["x", "wd", "bd"], ["d"], name="dw", group=8, pads=pads, strides=[2, 2]),
                 helper.make_node("Relu", ["d"], ["y"], name="relu")]
        model = make(nodes, [fin("x", [1, 8, 6, width])], [fin("y", [1, 8, 3, width // 2])],
                     [init("wd", rand(rng, 8, 1, 3, 3)), init("bd", rand(rng, 8))])
        np.savez(tmp_path / "calib.npz", x=rng.standard_normal((8, 1, 8, 6, width)).astype(np.float32))
        q, _ = PassManager(build_passes("quantize-int8")).run(model, PassContext(calibration=from_npz(tmp_path / "calib.npz")))
        quantized_layers.append(q)
        inputs[f"b{k}_x"] = rng.standard_normal((1, 8, 6, width)).astype(np.float32)
    q = side_by_side(quantized_layers)
    result = compile_model(save(q, "dw.onnx"), get_target("snapdragon845"), tmp_path / "a", passes="", validate="off")
    assert result.manifest["schedules"]["functions"]["conv"] == len(cases)      # not the generic fallback
    disassembly = _disassembly(tmp_path / "a")
    assert re.search(r"\t(ld2|uzp1|uzp2)\t\{?v\d+\.(16b|8b)", disassembly)      # 64 and 48 columns: ld2, or uzp1/uzp2
    got = run_artifact(tmp_path / "a", inputs, emulate=True).outputs
    expected = run_ort(q, inputs)
    for k in range(len(cases)):
        out_scale = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name == f"b{k}_y_scale")
        steps = np.abs(got[f"b{k}_y"] - expected[f"b{k}_y"]) / float(out_scale)
        assert steps.max() <= 1.0 + 1e-3, (cases[k], steps.max())


@pytest.mark.emulation
def test_arm_int8_rgb_stem_reads_hwio_weights_and_deinterleaved_rows_under_emulation(tmp_path, save, sysroot_ready):
    """On a core without dot product (rk3399) an int8 RGB stem (3 -> 8 channels, 3x3, stride 2) stays a float
    sum over the integers: its weights are HWIO constants, multiplied by lane (`fmla v.4s, v.4s, v.s[i]`)
    instead of loaded one by one, and its padded input is copied into column phases by contiguous loads and
    a deinterleaving shuffle instead of byte by byte. Within one step of onnxruntime under qemu."""
    rng = np.random.default_rng(21)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="stem", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    model = make(nodes, [fin("x", [1, 3, 18, 64])], [fin("y", [1, 8, 9, 32])],
                 [init("w", rand(rng, 8, 3, 3, 3)), init("b", rand(rng, 8))])
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((8, 1, 3, 18, 64)).astype(np.float32))
    q, _ = PassManager(build_passes("quantize-int8")).run(model, PassContext(calibration=from_npz(tmp_path / "calib.npz")))
    result = compile_model(save(q, "stem.onnx"), get_target("rk3399"), tmp_path / "a", passes="", validate="off")
    assert (result.manifest["dot_product_convolutions"], result.manifest["schedules"]["functions"]["conv"]) == (0, 1)
    disassembly = _disassembly(tmp_path / "a")
    assert re.search(r"\tfmla\tv\d+\.4s, v\d+\.4s, v\d+\.s\[[1-3]\]", disassembly)
    assert re.search(r"\t(ld2|uzp1|uzp2)\t\{?v\d+\.(16b|8b)", disassembly)
    x = rng.standard_normal((1, 3, 18, 64)).astype(np.float32)
    steps = _emulated_steps(tmp_path / "a", q, {"x": x})
    assert steps <= 1.0 + 1e-3, steps


@pytest.mark.emulation
def test_arm_int8_depthwise_sums_int16_products_by_lane_and_matches_onnxruntime_under_emulation(tmp_path, save,
                                                                                                sysroot_ready):
    """On Arm an int8 depthwise layer whose rows are whole vectors multiplies int16 values into int32 sums
    (`smlal`/`smlal2` by lane), exactly: a 3x3 layer on 36 columns (a 16-column tile and an 8-column
    one) and a 5x5 dilation-2 layer after a ReLU, both with biases and a non-zero input zero point, within
    one step of onnxruntime under qemu. Rows of 35 columns keep the float32 sums."""
    from optkit.backend.rewrites.int8 import integer_convolutions

    def quantized_depthwise(width: int):
        rng = np.random.default_rng(12)
        nodes = [helper.make_node("Conv", ["x", "k3", "b3"], ["a"], name="dw3", group=8, pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["a"], ["r"], name="relu"),
                 helper.make_node("Conv", ["r", "k5", "b5"], ["y"], name="dw5", group=8, pads=[4, 4, 4, 4],
                                  dilations=[2, 2])]
        model = make(nodes, [fin("x", [1, 8, 13, width])], [fin("y", [1, 8, 13, width])],
                     [init("k3", rand(rng, 8, 1, 3, 3)), init("b3", rand(rng, 8)), init("k5", rand(rng, 8, 1, 5, 5)),
                      init("b5", rand(rng, 8))])
        np.savez(tmp_path / "calib.npz", x=rng.standard_normal((8, 1, 8, 13, width)).astype(np.float32))
        q, _ = PassManager(build_passes("quantize-int8")).run(model, PassContext(calibration=from_npz(tmp_path / "calib.npz")))
        return q

    for width, sums in ((35, "float32"), (36, "int32")):
        script = integer_convolutions(to_relax(quantized_depthwise(width), "dw.onnx"), float_dense=True)[0].script()
        signatures = [line.strip() for line in script.splitlines() if line.strip().startswith("def group_conv2d_int8")]
        assert len(signatures) == 2 and all(line.endswith(f'"{sums}")):') for line in signatures), width
    q = quantized_depthwise(36)
    rng = np.random.default_rng(13)
    zero_point = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name == "x_zero_point")
    assert int(zero_point) != 0
    result = compile_model(save(q, "dw.onnx"), get_target("rk3399"), tmp_path / "a", passes="", validate="off")
    assert result.manifest["schedules"]["functions"]["conv"] == 2          # not the generic fallback
    disassembly = _disassembly(tmp_path / "a")
    assert re.search(r"\tsmlal2?\tv\d+\.4s, v\d+\.[48]h, v\d+\.h\[", disassembly)
    x = rng.standard_normal((1, 8, 13, 36)).astype(np.float32)
    steps = _emulated_steps(tmp_path / "a", q, {"x": x})
    assert steps <= 1.0 + 1e-3, steps


def _group_conv_operands(mod) -> list[int]:
    """The operand count of each call to a grouped integer conv in the module's Relax functions."""
    import tvm
    from tvm import relax

    counts = []
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Call) and isinstance(value.args[0], tvm.ir.GlobalVar) \
                        and value.args[0].name_hint.startswith("group_conv2d_int8"):
                    counts.append(len(value.args[1].fields))
    return counts


@pytest.mark.emulation
def test_a_depthwise_input_on_a_grid_per_channel_stays_integer_on_the_host_and_on_arm_under_emulation(
        tmp_path, save, sysroot_ready):
    """passes/int8/channel_grids.py's grid per channel (here with different, non-zero zero points) keeps the
    depthwise layer an integer conv: each channel's zero point subtracted in its sum, s_x[c] * s_w[c] in the
    rescale; the layer writing that tensor folds its per-channel requantize (Arm). All three convs are
    rewritten, every quantize after a conv is folded, and the host and rk3399 builds (run under qemu) are
    onnxruntime's within one step on each Arm form of the depthwise sums: 36 columns (int16 by lane), 35
    (float32) and stride 2 on 36 (columns copied into phases)."""
    from optkit.backend.rewrites.int8 import integer_convolutions
    from optkit.backend.rewrites.requantize import folded_requantize

    rng = np.random.default_rng(21)

    def quantized(width: int, **kwargs):
        samples = [rng.uniform(-1, 1, (1, 4, 13, width)).astype(np.float32) for _ in range(8)]
        return PassManager(build_passes("quantize-int8{depthwise_channel_grids=true}")).run(
            channel_spread_net(width=width, **kwargs), PassContext(calibration=from_python(samples)))

    q, (record,) = quantized(36)
    assert record.stats["channel_grid_tensors"] == 1
    zero_points = next(numpy_helper.to_array(t) for t in q.graph.initializer if t.name.startswith("c1_channel_zero"))
    assert len(set(zero_points.tolist())) > 1
    for float_dense in (False, True):
        mod, rewritten, _ = integer_convolutions(to_relax(q, "q.onnx"), float_dense=float_dense)
        assert rewritten == 3, float_dense
    # On Arm all three run in the grouped form; the depthwise one takes each channel's zero point too.
    assert _group_conv_operands(mod) == [2, 3, 2]
    # After a ReLU every channel's zero point is 0: one immediate, no operand (pose int8 on a Cortex-A72
    # model: 202.0 M instructions either way; read per channel, 211.4 M).
    relu_q, _ = quantized(36, relu=True)
    assert _group_conv_operands(integer_convolutions(to_relax(relu_q, "r.onnx"), float_dense=True)[0]) == [2, 2, 2]
    mod, folded = folded_requantize(mod)
    assert folded == 3 and mod.script().count("R.quantize(") == 1       # only the graph input's is left
    cases = [(36, 1), (35, 1), (36, 2)]
    both = side_by_side([q, *(quantized(width, stride=stride)[0] for width, stride in cases[1:])])
    path = save(both, "q.onnx")
    compile_model(path, get_target("host"), tmp_path / "host", passes="")
    compile_model(path, get_target("rk3399"), tmp_path / "arm", passes="", validate="off")
    feeds = {f"b{k}_x": rng.uniform(-1, 1, (1, 4, 13, width)).astype(np.float32) for k, (width, _) in enumerate(cases)}
    expected = run_ort(both, feeds)
    for built in (run_artifact(tmp_path / "host", feeds), run_artifact(tmp_path / "arm", feeds, emulate=True)):
        for k in range(len(cases)):
            out_scale = next(numpy_helper.to_array(t) for t in both.graph.initializer if t.name == f"b{k}_y_scale")
            steps = np.abs(built.outputs[f"b{k}_y"] - expected[f"b{k}_y"]) / float(out_scale)
            assert steps.max() <= 1.0 + 1e-3, (cases[k], steps.max())


@pytest.mark.parametrize("kind_name", ["sdot", "smull"])
@pytest.mark.parametrize("channels, filters, kernel, stride, dilation, size", [
    (16, 16, 1, 1, 1, 13), (6, 9, 3, 2, 1, 13), (12, 20, 3, 1, 2, 13), (16, 3, 5, 1, 1, 13), (8, 8, 1, 1, 1, 20)])
def test_arm_dot_convolutions_are_exact(kind_name, channels, filters, kernel, stride, dilation, size):
    """The Arm kinds' own forms: sdot's accumulators start at -z_x * sum(weights) (TVM 0.27's create_prim_func
    drops a reduction's init, so with_accumulator_start writes it back: the function's init must read the
    correction); the widening kind sums two channel groups per call into 2 lanes per pixel (odd group counts
    padded) and computes output channels in tiles of 4 (sdot: 8), so a 3-channel output (style's last layer)
    computes 4; rows are padded to whole instructions (4 pixels), so a 20-wide row computes 20, not 24. The
    tensorized schedule must apply, and the untensorized build of the same schedule be exact."""
    import tvm
    from tvm import te
    from tvm.s_tir import Schedule

    from optkit.backend.dot_product import KINDS, dot_product_conv, pack_weights, with_accumulator_start
    from optkit.backend.schedules import schedule_dot_conv, schedule_function

    kind = next(k for k in KINDS if k.name == kind_name)
    rng = np.random.default_rng(3)
    pad, zero_point = dilation * (kernel // 2), -7
    x = rng.integers(-128, 128, (1, channels, size, size)).astype(np.int8)
    w = rng.integers(-127, 128, (filters, channels, kernel, kernel)).astype(np.int8)
    packed, correction = pack_weights(w, zero_point, kind)
    tensors = [te.placeholder(a.shape, str(a.dtype), name=n) for a, n in ((x, "x"), (packed, "w"), (correction, "c"))]
    out = dot_product_conv(*tensors, zero_point=zero_point, shift=0, strides=[stride] * 2, padding=[pad] * 4,
                           dilation=[dilation] * 2, out_channels=filters, kind=kind_name)
    tile = {"sdot": 8, "smull": 4}[kind_name]
    acc_shape = [int(d) for d in out.op.input_tensors[0].shape]
    out_size = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    assert acc_shape[1] == -(-filters // tile) * tile      # channels computed
    assert acc_shape[3] == -(-out_size // 4) * 4 * (2 if kind.channel_pairs else 1)    # columns computed
    func = te.create_prim_func([*tensors, out])
    if kind.correction_in_init:
        func = with_accumulator_start(func, kind)
        assert "= c[" in func.script().split("T.init():")[1].splitlines()[1]
    tensorized = Schedule(func)
    schedule_dot_conv(tensorized, tensorized.get_sblock(kind.block), 4, parallel=False, tensorize=True)

    scheduled, rule = schedule_function(func, 4, dot_kinds=set())
    assert rule == "dot"
    lib = tvm.compile(tvm.IRModule({"main": scheduled}), target="llvm")
    got = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], np.int32))
    lib["main"](*(tvm.runtime.tensor(a) for a in (x, packed, correction)), got)

    padded = np.pad(x.astype(np.int64) - zero_point, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    expected = np.zeros((1, filters, out_size, out_size), np.int64)
    for dy in range(kernel):
        for dx in range(kernel):
            window = padded[:, :, dy * dilation::stride, dx * dilation::stride][:, :, :out_size, :out_size]
            expected += np.einsum("nchw,fc->nfhw", window, w[:, :, dy, dx].astype(np.int64))
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.emulation
def test_widening_convs_add_each_pixels_lanes_with_addp_under_emulation(tmp_path, save, sysroot_ready):
    """On rows of whole 8-pixel tiles (16 wide) the channel-pair kind adds each pixel's two partial lanes with
    one `addp` per 4 pixels (backend/pair_sum.py); the library runs under qemu within one step of
    onnxruntime."""

    rng = np.random.default_rng(2)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((8, 1, 3, 32, 32)).astype(np.float32))
    q, _ = PassManager(build_passes("mobile,quantize-int8")).run(
        conv_stack(32, 32), PassContext(calibration=from_npz(tmp_path / "calib.npz")))
    path = save(q, "q32.onnx")
    result = compile_model(path, get_target("rk3399"), tmp_path / "rk", passes="", validate="emulate")
    assert result.manifest["validation"]["how"] == "exported library under qemu-aarch64 user-mode emulation"
    disassembly = _disassembly(tmp_path / "rk")
    assert any("addp" in line and ".4s" in line for line in disassembly.splitlines())
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    steps = _emulated_steps(tmp_path / "rk", q, {"x": x})
    assert steps <= 1.0 + 1e-3, steps
