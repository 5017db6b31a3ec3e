"""The roofline estimate: anchor networks rebuilt to their published size, calibration against published
timings, int8 and depthwise costing, and labelling."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from optkit.backend.targets import Peak, get_target
from optkit.graph.stats import model_stats
from optkit.harness.anchor_nets import ANCHOR_NETS
from optkit.harness.estimate import LABEL, calibrated_efficiency, calibration_table, estimate_latency, layer_costs

# Published sizes: MobileNetV2 3.4 M params / 300 M MACs; MnasNet-B1 4.4 M / 315 M; MobileNet-SSD ~5.8 M / 1.15 G.
PUBLISHED = {"mobilenet_v2": (3.47e6, 300e6), "mnasnet": (4.38e6, 315e6), "mobilenet_ssd": (5.8e6, 1.15e9)}


@pytest.mark.parametrize("name", sorted(ANCHOR_NETS))
def test_anchor_nets_match_published_size(name):
    stats = model_stats(ANCHOR_NETS[name]())
    params, macs = PUBLISHED[name]
    assert stats.params == pytest.approx(params, rel=0.03)
    assert stats.flops / 2 == pytest.approx(macs, rel=0.03)


def test_calibration_within_thirty_percent_of_every_published_timing():
    rows = calibration_table()
    assert len(rows) == 5
    for row in rows:
        assert abs(row["error_pct"]) <= 30, row
    eff = calibrated_efficiency()
    assert 0 < eff.depthwise < eff.dense <= 1   # depthwise runs far below peak on every published device


def _conv_net(groups: int, quantized: bool):
    rng = np.random.default_rng(0)
    c = 32
    w = numpy_helper.from_array(rng.normal(size=(c, c // groups, 3, 3)).astype(np.float32), "w")
    nodes, inits = [], [w]
    weight = "w"
    if quantized:
        inits = [numpy_helper.from_array(rng.integers(-127, 127, (c, c // groups, 3, 3)).astype(np.int8), "wq"),
                 numpy_helper.from_array(np.full(c, 0.01, np.float32), "ws"),
                 numpy_helper.from_array(np.zeros(c, np.int8), "wz")]
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0))
        weight = "wd"
    nodes.append(helper.make_node("Conv", ["x", weight], ["y"], pads=[1] * 4, group=groups, name="conv"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 56, 56])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 56, 56])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_convolution_is_estimated_faster_and_depthwise_is_classified():
    peak = get_target("rk3399").peak
    fp32, int8 = estimate_latency(_conv_net(1, False), peak), estimate_latency(_conv_net(1, True), peak)
    assert int8.total_ms < fp32.total_ms
    assert [c.int8 for c in layer_costs(_conv_net(1, True))] == [True]
    assert [c.kind for c in layer_costs(_conv_net(32, False))] == ["depthwise"]
    assert fp32.label == LABEL == "estimated" and fp32.as_dict()["label"] == "estimated"


def test_estimate_is_deterministic_and_host_has_no_peak():
    model = ANCHOR_NETS["mobilenet_v2"]()
    peak = get_target("snapdragon845").peak
    assert estimate_latency(model, peak).as_dict() == estimate_latency(model, peak).as_dict()
    with pytest.raises(ValueError, match="measured, not estimated"):
        estimate_latency(model, Peak(0, 0, 0, "measured"))


def test_estimate_command_prints_estimates_beside_budgets_and_calibration():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "optkit.cli", "estimate", "--models", "pose", "--targets",
                          "rk3399,snapdragon845"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "estimated latency, ms" in out.stdout and "rk3399 est." in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("│ pose"))
    assert "66" in row and "11" in row                 # the seed's budgets beside the estimates
    assert "calibration: estimated vs published" in out.stdout and "mobilenet_ssd" in out.stdout
