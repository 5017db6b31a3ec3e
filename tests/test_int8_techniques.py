"""The numerics behind quantize-int8's options: im2col patches that reproduce each Conv, GPTQ rounding
that lowers a layer's output error on its own inputs and stays on the int8 grid the quantizer reproduces,
and per-tensor ranges chosen by error."""

import numpy as np
import pytest
from graphs import fin, init, make, rand, small_convnet
from onnx import helper, numpy_helper
from optkit.passes.int8 import layer_inputs, ranges, rounding

from optkit.graph.index import GraphIndex
from optkit.graph.numerics import run_ort
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
    cols = layer_inputs.conv_patches(x.astype(np.float64), node, kernel, group)
    got = np.einsum("gok,gkp->gop", w, cols).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_collect_sums_each_layers_input_moments():
    model = conv_net(3, 4, (3, 3), pads=(1, 1, 1, 1))
    feeds = [{"x": np.random.default_rng(s).standard_normal((1, 3, 11, 13)).astype(np.float32)} for s in range(3)]
    (layer,) = layer_inputs.collect(model, feeds)
    cols = [layer_inputs.conv_patches(f["x"].astype(np.float64), layer.node, (3, 3), 1)[0] for f in feeds]
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
