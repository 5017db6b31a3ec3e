"""The numerics behind quantize-int8's options: im2col patches that reproduce each Conv, GPTQ rounding
that lowers a layer's output error on its own inputs and stays on the int8 grid the quantizer reproduces,
and per-tensor ranges chosen by error."""

import numpy as np
import onnx
import pytest
from graphs import channel_spread_net, fin, init, make, rand, small_convnet
from onnx import helper, numpy_helper
from optkit.passes.int8 import channel_grids, layer_inputs, ranges, rounding, sensitivity

from optkit.graph.im2col import conv_patches
from optkit.graph.index import GraphIndex
from optkit.graph.numerics import ort_session, run_ort, sqnr_db
from optkit.pass_infra.calibration import from_python
from optkit.pass_infra.contract import PassContext
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes


def conv_net(c_in, c_out, kernel, group=1, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), hw=(11, 13), seed=0):
    rng = np.random.default_rng(seed)
    w = rand(rng, c_out, c_in // group, *kernel)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=group, strides=list(strides),
                            pads=list(pads), dilations=list(dilations))
    return make([node], [fin("x", [1, c_in, *hw])], [fin("y", [1, c_out, "h", "w"])],
                [init("w", w)])


@pytest.mark.parametrize("c_in, c_out, kernel, group, strides, pads, dilations", [
    (3, 4, (3, 3), 1, (1, 1), (1, 1, 1, 1), (1, 1)),
    (4, 6, (3, 3), 2, (2, 2), (0, 1, 1, 0), (1, 1)),
    (5, 5, (3, 3), 5, (2, 1), (1, 1, 1, 1), (1, 1)),          # depthwise
    (3, 2, (3, 2), 1, (1, 1), (2, 2, 2, 2), (2, 2)),
    (6, 3, (1, 1), 1, (1, 1), (0, 0, 0, 0), (1, 1)),
])
def test_patches_times_weight_is_the_conv(c_in, c_out, kernel, group, strides, pads, dilations):
    model = conv_net(c_in, c_out, kernel, group, strides, pads, dilations)
    x = np.random.default_rng(1).standard_normal((1, c_in, 11, 13)).astype(np.float32)
    expected = run_ort(model, {"x": x})["y"]
    node = model.graph.node[0]
    w = GraphIndex(model.graph).constant("w").reshape(group, c_out // group, -1)
    cols = conv_patches(x.astype(np.float64), node, kernel, group)
    got = np.einsum("gok,gkp->gop", w, cols).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_collect_sums_each_layers_input_moments():
    model = conv_net(3, 4, (3, 3), pads=(1, 1, 1, 1))
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 3, 11, 13)).astype(np.float32)} for s in range(3)]
    (layer,) = layer_inputs.collect(model, feeds)
    cols = [conv_patches(f["x"].astype(np.float64), layer.node, (3, 3), 1)[0] for f in feeds]
    expected = sum(c @ c.T for c in cols)
    np.testing.assert_allclose(layer.hessian[0], expected, rtol=1e-6)
    assert layer.count == sum(c.shape[1] for c in cols)


def test_gptq_rounding_lowers_output_error_and_stays_on_the_grid():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((6, 48))
    x = rng.standard_normal((400, 6)) @ basis + 0.05 * rng.standard_normal((400, 48))   # correlated inputs
    w = rng.standard_normal((1, 16, 48))
    h = (x.T @ x)[None]
    nearest, gptq = rounding.nearest_round(w), rounding.gptq_round(w, h)
    scale = rounding.channel_scales(w)
    steps = gptq / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert np.abs(np.round(steps)).max() <= rounding.QMAX
    error = lambda q: np.sum(((q[0] - w[0]) @ x.T) ** 2)        # noqa: E731
    assert error(gptq) < 0.5 * error(nearest)


def test_quantize_with_gptq_reproduces_its_grid_and_beats_nearest_on_calibration_data(tmp_path):
    model, _ = PassManager(build_passes("mobile")).run(small_convnet())
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32) for _ in range(16)]
    outputs = {}
    for mode in ("nearest", "gptq"):
        q, records = PassManager(build_passes(f"quantize-int8{{rounding={mode}}}")).run(
            model, PassContext(calibration=from_python(samples)))
        assert records[0].stats["rounding"] == mode
        outputs[mode] = q
    # Each int8 weight times its scale is what the quantizer stores; GPTQ's weights are whole steps of the
    # per-channel scale max|w|/127 of the float weight, so the stored scales equal the nearest mode's.
    def weight_scales(q):
        inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
        return [inits[n.input[1]] for n in q.graph.node
                if n.op_type == "DequantizeLinear" and inits.get(n.input[0], np.zeros(0)).dtype == np.int8]
    for a, b in zip(weight_scales(outputs["nearest"]), weight_scales(outputs["gptq"])):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    reference = [run_ort(model, {"x": s}) for s in samples]
    def noise(q):
        return sum(np.sum((run_ort(q, {"x": s})[k] - r[k]) ** 2) for s, r in zip(samples, reference) for k in r)
    assert noise(outputs["gptq"]) < noise(outputs["nearest"])


def test_best_range_never_loses_to_min_max_and_clips_outliers():
    rng = np.random.default_rng(0)
    values = rng.laplace(size=200_000)                   # a heavy tail, like a pre-activation
    lo, hi = float(values.min()), float(values.max())
    hist = np.histogram(values, ranges.BINS, (lo, hi))[0].astype(float)
    best = ranges.best_range((lo, hi), hist, symmetric=False)
    assert lo < best[0] <= 0 <= best[1] < hi

    def measured(r):
        step = (r[1] - r[0]) / 255
        q = np.clip(np.round((values - r[0]) / step), 0, 255) * step + r[0]
        return np.mean((q - values) ** 2)
    assert measured(best) < 0.8 * measured((lo, hi))
    edges = np.linspace(lo, hi, ranges.BINS + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    predicted = ranges.expected_error(centers, hist, np.array([lo]), np.array([hi]), 256)[0]
    assert predicted == pytest.approx(measured((lo, hi)), rel=0.2)


def test_mse_calibrator_sets_each_activation_range():
    model, _ = PassManager(build_passes("mobile")).run(small_convnet())
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32) for _ in range(8)]
    chosen = ranges.choose_ranges(model, [{"x": s} for s in samples])
    q, records = PassManager(build_passes("quantize-int8{calibrator=mse}")).run(
        model, PassContext(calibration=from_python(samples)))
    assert records[0].output_sqnr_db > 15
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    # Concat and Resize outputs share their input's grid (onnxruntime's rule); every other tensor has its own.
    own = {"x"} | {o for n in model.graph.node if n.op_type in ("Conv", "Relu") for o in n.output}
    checked = 0
    for node in q.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in chosen and node.input[0] in own:
            lo, hi = chosen[node.input[0]]
            assert float(inits[node.input[1]]) == pytest.approx((hi - lo) / 255, rel=1e-5)
            checked += 1
    assert checked >= 3


def test_switched_model_is_the_float_model_with_switches_off_and_adds_each_tensors_noise():
    model, _ = PassManager(build_passes("mobile")).run(small_convnet())
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32)} for _ in range(3)]
    bounds, _ = ranges.observe(model, feeds, ranges.activation_tensors(model))
    bounds = {n: b for n, b in bounds.items() if b[1] > b[0]}
    switched, switches = sensitivity.with_switches(model, bounds)
    off = {s: np.zeros(1, np.float32) for s in switches}
    for f in feeds:
        np.testing.assert_array_equal(run_ort(switched, {**f, **off})["y"], run_ort(model, f)["y"])
    noise = sensitivity.tensor_noise(model, bounds, feeds)
    assert set(noise) == set(bounds) and all(v.shape == (1,) and v[0] >= 0 for v in noise.values())
    assert max(v[0] for v in noise.values()) > 0
    # All switches on is close to the sum of the single-tensor noises (independent rounding errors).
    on = {s: np.ones(1, np.float32) for s in switches}
    ref = [run_ort(model, f)["y"].astype(np.float64) for f in feeds]
    together = sum(np.sum((run_ort(switched, {**f, **on})["y"] - r) ** 2) for f, r in zip(feeds, ref))
    together /= sum(np.sum(r ** 2) for r in ref)
    assert together == pytest.approx(sum(v[0] for v in noise.values()), rel=0.5)


def test_keep_wide_takes_the_worst_outputs_largest_noise_within_the_conv_budget():
    noise = {"a": np.array([1e-2, 0.0]), "b": np.array([1e-3, 0.0]), "c": np.array([0.0, 5e-3]),
             "d": np.array([2e-2, 0.0])}
    cost = {"a": 1, "b": 0, "c": 0, "d": 2}
    chosen, predicted = sensitivity.keep_wide(noise, 30.0, cost, max_cost=1)
    # d alone would spend more than the budget; once a and b are kept nothing affordable lowers the worst
    # output's noise any more, so the other output is served (c is free), and the choice stops there.
    assert chosen == ["a", "b", "c"]
    assert predicted == pytest.approx(-10 * np.log10(2e-2))
    assert sensitivity.keep_wide(noise, 10.0, cost, 5)[0] == []          # already 10 dB: nothing kept


def mixed_model():
    """small_convnet quantized with half its convs allowed out of int8, and its calibration samples."""
    model, _ = PassManager(build_passes("mobile")).run(small_convnet())
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32) for _ in range(8)]
    q, records = PassManager(build_passes("quantize-int8{mixed_sqnr_db=60,mixed_conv_share=0.5}")).run(
        model, PassContext(calibration=from_python(samples)))
    return q, records[0]


@pytest.mark.emulation
def test_mixed_precision_builds_for_aarch64_and_runs_under_emulation(tmp_path, save, sysroot_ready):
    """The 16-bit pairs legalized to float arithmetic, built for rk3399 and run under qemu, agree with
    onnxruntime on the mixed QDQ graph."""
    from optkit.backend.compiler import compile_model
    from optkit.backend.runtime.runner import run_artifact
    from optkit.backend.targets import get_target

    q, record = mixed_model()
    assert record.stats["int16_activations"]
    result = compile_model(save(q, "mixed.onnx"), get_target("rk3399"), tmp_path / "arm", passes="", validate="emulate")
    assert result.manifest["validation"]["how"] == "exported library under qemu-aarch64 user-mode emulation"
    x = np.random.default_rng(5).uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32)
    got = run_artifact(tmp_path / "arm", {"x": x}, emulate=True).outputs["y"]
    assert sqnr_db(run_ort(q, {"x": x})["y"], got) > 30


def test_mixed_precision_keeps_the_costliest_activations_16_bit_and_builds_on_the_host(tmp_path, save):
    from optkit.backend.compiler import compile_model
    from optkit.backend.runtime.runner import run_artifact
    from optkit.backend.targets import get_target

    model, _ = PassManager(build_passes("mobile")).run(small_convnet())
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32) for _ in range(8)]
    _, (all_int8,) = PassManager(build_passes("quantize-int8")).run(model, PassContext(calibration=from_python(samples)))
    q, record = mixed_model()
    wide = record.stats["int16_activations"]
    assert wide and record.stats["convs_not_int8"] <= 2            # half of the 4 convs
    sixteen = {n.input[0].removesuffix("_QuantizeLinear_Input") for n in q.graph.node if n.op_type == "QuantizeLinear"
               and q.graph.initializer[[t.name for t in q.graph.initializer].index(n.input[2])].data_type
               == onnx.TensorProto.UINT16}
    assert sixteen and sixteen <= set(wide)
    assert record.output_sqnr_db > all_int8.output_sqnr_db
    # legalize turns the 16-bit pairs into float arithmetic TVM imports correctly; the build is validated
    # against onnxruntime, and checked here once more.
    result = compile_model(save(q, "mixed.onnx"), get_target("host"), tmp_path / "host", passes="")
    legalize = next(r for r in result.records if r.name == "legalize")
    assert legalize.stats["wide_qdq"] == len(sixteen)
    x = rng.uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32)
    got, ref = run_artifact(tmp_path / "host", {"x": x}).outputs["y"], run_ort(q, {"x": x})["y"]
    assert sqnr_db(ref, got) > 30


def test_a_weight_switch_swaps_in_the_rounded_weight():
    model = conv_net(3, 4, (3, 3), pads=(1, 1, 1, 1))
    w = GraphIndex(model.graph).constant("w")
    rounded = rounding.nearest_round(w.reshape(1, 4, -1).astype(np.float64)).reshape(w.shape).astype(np.float32)
    switched, switches = sensitivity.with_switches(model, {}, {"w": rounded})
    x = np.random.default_rng(0).standard_normal((1, 3, 11, 13)).astype(np.float32)
    swapped = onnx.ModelProto()
    swapped.CopyFrom(model)
    GraphIndex(swapped.graph).set_initializer("w", rounded)
    got = run_ort(switched, {"x": x, switches[0]: np.ones(1, np.float32)})["y"]
    np.testing.assert_allclose(got, run_ort(swapped, {"x": x})["y"], rtol=1e-5, atol=1e-5)
    noise = sensitivity.tensor_noise(model, {}, [{"x": x}], {"w": rounded})
    assert noise["w"][0] == pytest.approx(sqnr_db_inverse(run_ort(model, {"x": x})["y"], got), rel=1e-3)


def sqnr_db_inverse(reference, approx):
    """Noise power over signal power, the quantity tensor_noise reports."""
    return 10 ** (-sqnr_db(reference, approx) / 10)


def test_bad_mixed_options_and_a_too_lossy_int8_name_the_fix():
    from optkit.passes.quantize_int8 import QuantizeInt8

    from optkit.core.errors import OptionError, PassFailedError

    samples = [np.random.default_rng(0).uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32)]
    for spec in ("quantize-int8{mixed_conv_share=1.5}", "quantize-int8{mixed_sqnr_db=-3}"):
        with pytest.raises(OptionError, match="mixed_conv_share within 0..1"):
            PassManager(build_passes(spec)).run(small_convnet(), PassContext(calibration=from_python(samples)))

    class Demanding(QuantizeInt8):          # a floor no int8 model meets, to see the failure a user sees
        min_output_sqnr_db = 200.0
    with pytest.raises(PassFailedError, match=r"below the 200 dB it guarantees; try quantize-int8\{rounding=gptq"):
        PassManager([Demanding()]).run(small_convnet(), PassContext(calibration=from_python(samples)))


def _layer_means(model, feeds, tensors):
    from optkit.graph.numerics import ort_session, with_intermediate_outputs
    session = ort_session(with_intermediate_outputs(model, tensors))
    runs = [dict(zip([o.name for o in session.get_outputs()], session.run(None, f))) for f in feeds]
    return {t: np.mean([r[t].mean(axis=(0, 2, 3)) for r in runs], axis=0) for t in tensors}


def test_bias_correction_moves_each_layers_output_mean_back_to_the_float_models():
    model, _ = PassManager(build_passes("mobile")).run(small_convnet())
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1, 1, (1, 3, 24, 32)).astype(np.float32) for _ in range(8)]
    feeds = [{"x": s} for s in samples]
    float_out = {n.name: n.output[0] for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2}
    means = {}
    for corrected in (False, True):
        q, records = PassManager(build_passes(f"quantize-int8{{bias_correction={str(corrected).lower()}}}")).run(
            model, PassContext(calibration=from_python(samples)))
        assert records[0].stats.get("bias_corrected_layers") == (len(float_out) if corrected else None)
        # The quantized Conv's output is its pre-activation sum (the quantizer names it after a folded Relu).
        q_out = {n.name: n.output[0] for n in q.graph.node if n.name in float_out}
        got = _layer_means(q, feeds, list(q_out.values()))
        means[corrected] = {name: got[q_out[name]] for name in float_out}
    expected = _layer_means(model, feeds, list(float_out.values()))
    for name, tensor in float_out.items():
        before = np.abs(means[False][name] - expected[tensor]).max()
        after = np.abs(means[True][name] - expected[tensor]).max()
        assert after < 1e-3 and after < 0.2 * before, (name, before, after)


@pytest.mark.parametrize("out_grid, shared", [((0.0475, 3), (0.05, 3)),      # input a covers it, 5 % coarser
                                              ((0.04, 3), None),             # a would be 25 % coarser
                                              ((0.0499, 0), None)])          # a's grid ends at 12.6, below 0.0499·255
def test_a_concat_takes_an_input_grid_that_covers_it_when_at_most_10_percent_coarser(out_grid, shared):
    from optkit.passes.int8.concat_grids import share_concat_grids
    from test_int8_tvm import qdq_concat_model

    from optkit.graph.index import GraphIndex

    model = qdq_concat_model(out_grid)
    assert share_concat_grids(model) == (shared is not None)
    index = GraphIndex(model.graph)
    for node in model.graph.node:
        if "qc" in (*node.input, *node.output):          # the Concat's quantize and its dequantize alike
            scale, zero = index.constant(node.input[1]), index.constant(node.input[2])
            assert (float(scale), int(zero)) == pytest.approx(shared or out_grid)
    onnx.checker.check_model(model)


def test_a_concat_readers_int32_bias_follows_its_new_input_grid(tmp_path):
    """The Conv reading a Concat whose grid changed keeps its bias on input scale × weight scale, so
    onnxruntime still runs it as one integer QLinearConv (it fell back to float otherwise)."""
    import onnxruntime as ort
    from optkit.passes.int8.concat_grids import share_concat_grids
    from test_int8_tvm import qdq_concat_model

    model = qdq_concat_model((0.0475, 3))
    rng = np.random.default_rng(0)
    w_scale = np.array([0.01, 0.02, 0.015], np.float32)
    bias = np.array([0.3, -0.2, 0.05], np.float32)
    graph = model.graph
    graph.output[0].name = "out"
    graph.output[0].type.tensor_type.shape.dim[1].dim_value = 3
    graph.initializer.extend([
        numpy_helper.from_array(rng.integers(-127, 128, (3, 8, 1, 1)).astype(np.int8), "wq"),
        numpy_helper.from_array(w_scale, "ws"), numpy_helper.from_array(np.zeros(3, np.int8), "wz"),
        numpy_helper.from_array(np.round(bias / (np.float32(0.0475) * w_scale)).astype(np.int32), "bq"),
        numpy_helper.from_array(np.float32(0.0475) * w_scale, "bs"), numpy_helper.from_array(np.zeros(3, np.int32), "bz"),
        numpy_helper.from_array(np.array(0.05, np.float32), "os"), numpy_helper.from_array(np.array(128, np.uint8), "oz")])
    graph.node.extend([helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
                       helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bias"], axis=0),
                       helper.make_node("Conv", ["y", "w", "bias"], ["conv"]),
                       helper.make_node("QuantizeLinear", ["conv", "os", "oz"], ["qo"]),
                       helper.make_node("DequantizeLinear", ["qo", "os", "oz"], ["out"])])
    assert share_concat_grids(model) == 1
    index = GraphIndex(model.graph)
    conv_bias = next(n for n in model.graph.node if n.output[0] == "bias")
    new_bias_scale = index.constant(conv_bias.input[1])
    np.testing.assert_array_equal(new_bias_scale, np.float32(0.05) * w_scale)
    np.testing.assert_allclose(index.constant(conv_bias.input[0]) * new_bias_scale, bias, atol=0.5 * new_bias_scale.max())
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "ort.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node].count("QLinearConv") == 1


def test_depthwise_inputs_get_a_grid_per_channel_that_lowers_the_error():
    """A depthwise layer's input whose channels span 0.02 to 4 gets one uint8 grid per channel (axis 1, on
    the quantize and its dequantize), each inside the tensor's own range; the output is much closer to the
    float model's than with one grid; tensors read by other layers keep one grid."""
    model = channel_spread_net()
    assert channel_grids.depthwise_inputs(model) == ["c1"]
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1, 1, (1, 4, 13, 36)).astype(np.float32) for _ in range(8)]
    ctx = PassContext(calibration=from_python(samples))
    q_one, (one,) = PassManager(build_passes("quantize-int8")).run(model, ctx)
    q_per, (per,) = PassManager(build_passes("quantize-int8{depthwise_channel_grids=true}")).run(model, ctx)
    assert per.stats["channel_grid_tensors"] == 1 and "channel_grid_tensors" not in one.stats
    inits = {t.name: numpy_helper.to_array(t) for t in q_per.graph.initializer}
    quantize = next(n for n in q_per.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "c1")
    pairs = [quantize, *(n for n in q_per.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == quantize.output[0])]
    assert len(pairs) == 2 and pairs[1].input[1:] == quantize.input[1:]
    assert all([a.i for a in n.attribute if a.name == "axis"] == [1] for n in pairs)
    scale = inits[pairs[0].input[1]]
    zero = inits[pairs[0].input[2]]
    assert scale.shape == (8,) and scale.max() / scale.min() > 20 and len(set(zero.tolist())) > 1
    one_grid = next(numpy_helper.to_array(t) for t in q_one.graph.initializer if t.name == "c1_scale")
    assert float(one_grid) >= scale.max() * (1 - 1e-6)                     # never wider than the tensor's grid
    x = rng.uniform(-1, 1, (1, 4, 13, 36)).astype(np.float32)
    ref = run_ort(model, {"x": x})["y"]
    assert sqnr_db(ref, run_ort(q_per, {"x": x})["y"]) > sqnr_db(ref, run_ort(q_one, {"x": x})["y"]) + 10
    # onnxruntime's extended optimizations would fuse the expansion into a QLinearConv that fails at run time
    # on a per-channel output grid; optkit's optimized sessions of such graphs stop at the basic ones.
    optimized = ort_session(q_per, optimize=True).run(["y"], {"x": x})[0]
    np.testing.assert_allclose(optimized, run_ort(q_per, {"x": x})["y"], atol=1e-5)
    # Symmetric int8 activations: a symmetric grid per channel, zero points 0.
    q_sym_one, _ = PassManager(build_passes("quantize-int8{activations=int8}")).run(model, ctx)
    q_sym, (sym,) = PassManager(build_passes("quantize-int8{activations=int8,depthwise_channel_grids=true}")).run(model, ctx)
    assert sym.stats["channel_grid_tensors"] == 1
    (zero,) = [numpy_helper.to_array(t) for t in q_sym.graph.initializer if "channel_zero_point" in t.name]
    assert zero.dtype == np.int8 and not zero.any()
    assert sqnr_db(ref, run_ort(q_sym, {"x": x})["y"]) > sqnr_db(ref, run_ort(q_sym_one, {"x": x})["y"]) + 10
