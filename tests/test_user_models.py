"""A model of the user's own in the gate: declared in a budgets file, quantized from a folder of PNGs,
scored by a task-free criterion or by an evaluator plugin installed through its entry point; checked,
estimated, tuned and compiled through the CLI and again through the Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from graphs import small_convnet
from PIL import Image

import optkit
from optkit.core.errors import OptionError
from optkit.harness.budgets import load_budgets

BUDGETS = """
[mine]
path = "mine.onnx"
pipeline = "mobile,quantize-int8"
calibration = "pngs"
calibration_mean = [0.5]
criterion = "cosine"
metric_min = 0.9
size_mb_max = 1.0
[mine.latency_ms_max]
host = 500.0

[mine_plugin]
path = "mine.onnx"
pipeline = "mobile"
evaluation = "pngs"
evaluator = "argmax-agreement"
metric_min = 0.99
[mine_plugin.evaluator_options]
axis = 1
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's folder: their ONNX (not a reference model), a folder of PNGs, a budgets file."""
    root = tmp_path_factory.mktemp("mine")
    (root / "mine.onnx").write_bytes(small_convnet(seed=7).SerializeToString())
    (root / "pngs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / "pngs" / f"{i}.png")
    (root / "budgets.toml").write_text(BUDGETS)
    return root


def optkit_cli(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "optkit.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def test_budgets_declare_user_models_and_name_what_is_wrong(project, tmp_path):
    budgets, _ = load_budgets(project / "budgets.toml")
    assert budgets["mine"].user.path == project / "mine.onnx" and budgets["mine"].higher_is_better
    bad = tmp_path / "bad.toml"
    for text, message in [
        ('[x]\npipeline = "mobile"\n', "not a reference model .*needs path = \"FILE.onnx\""),
        ('[x]\npath = "nope.onnx"\npipeline = "mobile"\n', r"\[x\].path: .*nope.onnx: no such file"),
        (f'[x]\npath = "{project / "mine.onnx"}"\npipeline = "mobile"\ncriterion = "psnr"\n', "criterion: 'psnr'"),
        (f'[x]\npath = "{project / "mine.onnx"}"\npipeline = "mobile"\ncriterion = "max_abs"\nmetric_min = 1\n',
         "lower-is-better; use metric_max"),
    ]:
        bad.write_text(text)
        with pytest.raises(OptionError, match=message):
            load_budgets(bad)


def test_gate_cli_with_a_criterion_and_an_evaluator_plugin(project, example_plugin_env, tmp_path):
    result = optkit_cli(example_plugin_env, "check", "--budgets", project / "budgets.toml", "-t", "host", "--repeat", "2",
                        "--work-dir", tmp_path / "work", "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stdout + result.stderr
    cells = {c["model"]: c for c in json.loads((tmp_path / "r.json").read_text())["cells"]}
    assert cells["mine"]["accuracy"]["metric"] == "output cosine" and cells["mine"]["accuracy"]["value"] > 0.9
    assert cells["mine"]["accuracy"]["samples"] == 6
    assert cells["mine_plugin"]["accuracy"]["metric"] == "argmax agreement"
    assert cells["mine_plugin"]["accuracy"]["value"] == 1.0           # fp32 build against fp32
    quantize = json.loads((tmp_path / "work" / "mine" / "host" / "manifest.json").read_text())["passes"][-2]
    assert quantize["pass"] == "quantize-int8" and quantize["stats"]["calibration_samples"] == 6
    # without the plugin, that model's cell fails naming the missing evaluator
    env = {k: v for k, v in example_plugin_env.items() if k != "PYTHONPATH"}
    missing = optkit_cli(env, "check", "--budgets", project / "budgets.toml", "-t", "host", "--models", "mine_plugin",
                         "--work-dir", tmp_path / "work2")
    assert missing.returncode == 1 and "no evaluator 'argmax-agreement' is installed" in missing.stderr


def test_estimate_the_user_model_and_extract_its_int8_tuning_tasks(project):
    estimate = optkit_cli(dict(os.environ), "estimate", "--budgets", project / "budgets.toml", "--models", "mine",
                          "-t", "rk3399")
    assert estimate.returncode == 0 and "mine" in estimate.stdout, estimate.stderr
    from optkit.backend.targets import get_target
    from optkit.backend.tuning import lowered

    mod, _ = lowered(project / "mine.onnx", get_target("host"), "mobile,quantize-int8", "",
                     optkit.calibration(data=project / "pngs"))      # what `optkit tune` searches over
    assert any("int8" in gv.name_hint or "dot" in gv.name_hint for gv in mod.functions)


@pytest.mark.slow
def test_tune_and_compile_the_user_model_int8(project, tmp_path):
    """MetaSchedule search needs the tune extra (xgboost): in the slow set, as the other tuning runs."""
    env = dict(os.environ)
    tuned = optkit_cli(env, "tune", project / "mine.onnx", "-t", "host", "--db", tmp_path / "db", "--trials", "2",
                       "--passes", "mobile,quantize-int8", "--calibration-data", project / "pngs")
    assert tuned.returncode == 0, tuned.stderr
    built = optkit_cli(env, "compile", project / "mine.onnx", "-t", "host", "-o", tmp_path / "a", "--passes",
                       "mobile,quantize-int8", "--calibration-data", project / "pngs", "--tuning-db", tmp_path / "db")
    assert built.returncode == 0, built.stderr
    assert "tuned" in json.dumps(json.loads((tmp_path / "a" / "manifest.json").read_text())["tuning"])


def test_the_same_through_the_python_api(project, tmp_path):
    report = optkit.check(["mine"], ["host"], budgets=project / "budgets.toml", repeat=2, work_dir=tmp_path / "w")
    assert report.passed, report.failures()
    (row,) = optkit.estimate(["mine"], ["rk3399"], budgets=project / "budgets.toml")
    assert row.cells["rk3399"][0] > 0
    result = optkit.compile(project / "mine.onnx", "host", tmp_path / "a", passes="mobile,quantize-int8",
                            calibration=project / "pngs")
    x = np.random.default_rng(1).standard_normal((1, 3, 24, 32)).astype(np.float32)
    assert optkit.load_artifact(result.directory).run(x)["y"].shape == (1, 4, 24, 32)


def test_accuracy_aware_quantize_and_prune_scan_take_the_user_model(project, tmp_path):
    from optkit import api

    result = api.quantize(project / "mine.onnx", tmp_path / "q.onnx", "mine", accuracy_budget=0.05,
                          budgets=project / "budgets.toml", eval_samples=4)
    assert result.float_metric == pytest.approx(1.0, abs=1e-6) and (tmp_path / "q.onnx").exists()
    scan = api.prune_scan(project / "mine.onnx", "mine", ratio=0.5, budgets=project / "budgets.toml", eval_samples=3)
    assert scan.metric_name == "output cosine" and scan.groups and all(g.metric <= 1.0 + 1e-6 for g in scan.groups)
    with pytest.raises(OptionError, match="--reference-model nosuch: not in"):
        api.quantize(project / "mine.onnx", tmp_path / "q2.onnx", "nosuch", 0.05, budgets=project / "budgets.toml")


def test_the_cosine_of_a_one_element_output_is_taken_over_the_samples():
    """Per sample, the cosine of two single numbers is 1 whenever they share a sign: a presence score off
    by a factor of ten would pass. Over the samples it is a real comparison."""
    from optkit.harness.user_models import _score

    reference = [{"score": np.array([[s]]), "vector": np.array([1.0, 2.0, 3.0])} for s in (0.9, 0.1, 0.5, 0.05)]
    close = [{"score": r["score"] * 1.001, "vector": r["vector"]} for r in reference]
    wrong = [{"score": np.array([[s]]), "vector": r["vector"]} for r, s in zip(reference, (0.1, 0.9, 0.5, 0.6))]
    assert _score("cosine", close, reference) > 0.9999
    assert _score("cosine", wrong, reference) < 0.7
    assert _score("sqnr_db", wrong, reference) < 0          # each sample on its own, as before
