"""Build validation of quantized graphs: each output's SQNR bar against onnxruntime comes down only as far as
the model itself moves when values a few ulps from a rounding boundary round the other way, and never below
0 dB."""

import numpy as np
import pytest
from graphs import fin, init, make
from onnx import helper

from optkit.backend import validate


def quantize_roundtrip(scale: float = 1.0):
    """y = dequantize(quantize(x)) with int8 steps of `scale`."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    return make(nodes, [fin("x", [1, 2])], [fin("y", [1, 2])],
                [init("s", np.float32(scale)), init("z", np.int8(0))])


def test_rounding_sensitivity_sees_a_value_on_a_rounding_boundary():
    model = quantize_roundtrip()
    # 0.5 rounds to 0 (half to even); nudged by a few ulps it rounds to 1: noise 1 against 10^2 of signal.
    on_boundary = validate.rounding_sensitivity_db(model, {"x": np.array([[0.5, 10.0]], np.float32)})
    assert on_boundary["y"] == pytest.approx(20.0, abs=1e-6)
    away = validate.rounding_sensitivity_db(model, {"x": np.array([[0.3, 10.0]], np.float32)})
    assert away["y"] == float("inf")


def test_bars_come_down_only_below_the_outputs_own_sensitivity_and_never_below_zero():
    bars = validate.qdq_bars({"calm": float("inf"), "pose_pafs": 24.8, "handedness": 15.9, "dead": -40.0})
    assert bars == {"calm": validate.MIN_QDQ_SQNR_DB, "pose_pafs": pytest.approx(14.8),
                    "handedness": pytest.approx(5.9), "dead": validate.MIN_BAR_DB}


def test_a_sensitive_output_passes_at_its_bar_and_a_miscompile_still_fails():
    rng = np.random.default_rng(0)
    reference = {"y": rng.standard_normal(1000).astype(np.float32)}
    noise = rng.standard_normal(1000).astype(np.float32)

    def at_db(db):
        return {"y": reference["y"] + noise * np.float32(np.sqrt(np.mean(reference["y"] ** 2) / 10 ** (db / 10)))}

    numbers, failure = validate.check_outputs(reference, at_db(16.0), True)
    assert failure is not None and "at least 20.0 dB expected of a quantized graph" in failure
    bars = validate.qdq_bars({"y": 15.9})
    numbers, failure = validate.check_outputs(reference, at_db(16.0), True, bars)
    assert failure is None and numbers["y"]["bar_db"] == pytest.approx(5.9)
    numbers, failure = validate.check_outputs(reference, at_db(2.0), True, bars)    # a wrong neighbour or scale
    assert failure is not None and "output 'y' is" in failure and "at least 5.9 dB" in failure
    assert "round the other way" in failure
