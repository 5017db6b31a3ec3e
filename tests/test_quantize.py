"""quantize-int8, the per-tensor error report and the accuracy-aware mode."""

import numpy as np
import onnx
import pytest
from graphs import small_convnet
from optkit.reference_models.task import Evaluation, Task

from optkit.core.errors import OptionError, PassFailedError
from optkit.graph.numerics import make_inputs, sqnr_db
from optkit.harness.accuracy_aware import compute_node_behind, quantize_within_budget
from optkit.harness.quant_report import tensor_errors
from optkit.pass_infra.calibration import from_npz
from optkit.pass_infra.contract import PassContext
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes


@pytest.fixture
def calib(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "calib.npz"
    np.savez(path, x=rng.uniform(-1, 1, (16, 1, 3, 24, 32)).astype(np.float32))
    return from_npz(path)


def test_quantize_int8_stores_int8_weights_and_records_its_error(calib):
    model = small_convnet()
    out, records = PassManager(build_passes("mobile,quantize-int8")).run(model, PassContext(calibration=calib))
    rec = records[-1]
    assert not rec.exact and rec.max_abs_diff is None
    assert rec.output_sqnr_db is not None and rec.output_sqnr_db > 15
    int8 = [t for t in out.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8) == 4      # every conv weight is stored as int8
    scales = {t.name: t for t in out.graph.initializer}
    weight_dq = [n for n in out.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in {t.name for t in int8}]
    assert weight_dq and all(len(scales[n.input[1]].dims) == 1 for n in weight_dq)   # one scale per channel
    assert rec.stats["calibration_samples"] == 16


def test_quantize_int8_refuses_without_calibration_and_bad_options(calib):
    with pytest.raises(OptionError, match="needs calibration data"):
        PassManager(build_passes("quantize-int8")).run(small_convnet())
    with pytest.raises(OptionError, match="bad value 'kl' for option 'calibrator'"):
        build_passes("quantize-int8{calibrator=kl}")
    with pytest.raises(OptionError, match="exclude names unknown node"):
        PassManager(build_passes("quantize-int8{exclude=nope}")).run(small_convnet(), PassContext(calibration=calib))


@pytest.mark.parametrize("calibrator", ["minmax", "percentile", "entropy"])
def test_every_calibrator_runs(calib, calibrator):
    _, records = PassManager(build_passes(f"quantize-int8{{calibrator={calibrator}}}")).run(
        small_convnet(), PassContext(calibration=calib))
    assert records[0].output_sqnr_db > 10


def test_tensor_report_ranks_worst_first(calib):
    model, _ = PassManager(build_passes("mobile")).run(small_convnet())
    q, _ = PassManager(build_passes("quantize-int8")).run(model, PassContext(calibration=calib))
    rows = tensor_errors(model, q, list(calib())[:4])
    assert len(rows) >= 5
    assert [r.sqnr_db for r in rows] == sorted(r.sqnr_db for r in rows)
    assert {"Conv", "Softmax"} <= {r.op for r in rows}
    assert all(-1 <= r.cosine <= 1.0000001 for r in rows)
    assert compute_node_behind(model, "r1") == "conv1"  # through the Relu to its conv


class OutputFidelity(Task):
    """A real metric for a model without labels: SQNR of the output against the float model's, in dB."""

    name = "toy"
    metric_name = "output SQNR"
    eval_size = 6

    def __init__(self, float_model):
        from optkit.reference_models.catalog import session_runner

        self.inputs = [make_inputs(float_model, seed=100 + i) for i in range(self.eval_size)]
        self.reference = [session_runner(float_model)(f) for f in self.inputs]

    def sample(self, index, seed=0):
        return self.inputs[index], self.reference[index]

    def score(self, outputs, labels):
        value = min(sqnr_db(lab["y"], out["y"]) for out, lab in zip(outputs, labels))
        return Evaluation(self.name, self.metric_name, min(value, 200.0), len(labels))


def test_accuracy_aware_mode_meets_a_budget_by_keeping_layers_float(calib):
    model, _ = PassManager(build_passes("mobile")).run(small_convnet())
    task = OutputFidelity(model)
    # float scores 200 dB (capped); all-int8 scores far less; a budget of 170 dB cost forces float layers
    first = quantize_within_budget(model, task, budget=1e9, ctx=PassContext(calibration=calib), log=lambda m: None)
    all_int8_cost = first.steps[0].cost
    budget = all_int8_cost - 1.0
    result = quantize_within_budget(model, task, budget=budget, ctx=PassContext(calibration=calib), log=lambda m: None)
    assert result.within_budget and result.steps[-1].cost <= budget
    assert result.kept_float and all("worst SQNR" in s.reason for s in result.steps[1:])
    kept = set(result.kept_float)
    # the float-kept convs read float weights, the others read dequantized int8 ones
    producers = {o: n for n in result.model.graph.node for o in n.output}
    for conv in (n for n in result.model.graph.node if n.op_type == "Conv"):
        w_producer = producers.get(conv.input[1])
        assert (w_producer is None) == (conv.name in kept), conv.name


def test_parsing_int8_meets_the_seed_size_and_accuracy_goal():
    from optkit.reference_models.catalog import calibration_provider, evaluate, get_task, session_runner

    from optkit.graph.model_io import load_model

    task = get_task("parsing")
    ctx = PassContext(calibration=calibration_provider("parsing", 16))
    q, records = PassManager(build_passes("mobile,quantize-int8")).run(load_model(task.onnx_path), ctx)
    assert q.ByteSize() <= 0.5e6
    fp32 = evaluate("parsing", limit=10).value
    int8 = task.evaluate(session_runner(q), 10).value
    assert abs(fp32 - int8) <= 0.01, (fp32, int8)


def test_manager_still_rejects_exact_claims_of_lossy_rewrites(calib):
    from optkit.passes.quantize_int8 import QuantizeInt8

    from optkit.pass_infra.contract import Pass

    class Liar(QuantizeInt8):
        name = "liar"
        exact = True

    with pytest.raises(PassFailedError, match="claims to be exact"):
        PassManager([Liar()]).run(small_convnet(), PassContext(calibration=calib))
    assert Pass


def test_accuracy_aware_mode_meets_a_tight_budget_on_pose(tmp_path):
    """All-int8 pose costs ~0.005 OKS-AP on 20 scenes; a 0.002 budget makes the mode keep the layer with
    the worst tensor SQNR in float, and the result is within budget."""
    from click.testing import CliRunner
    from optkit.reference_models.catalog import get_task

    from optkit.cli import main

    out = CliRunner().invoke(main, ["quantize", str(get_task("pose").onnx_path), "-o", str(tmp_path / "p.onnx"),
                                    "--reference-model", "pose", "--accuracy-budget", "0.002", "--eval-samples", "20"])
    assert out.exit_code == 0, out.output
    assert "within budget" in out.output and "kept in float: none" not in out.output
    assert "had the worst SQNR left" in out.output
