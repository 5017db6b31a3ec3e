"""Reference models: generators are deterministic and labelled, every committed model meets its size
budget, learned its task (evaluated on a slice of its evaluation set), and compiles for the host with
outputs that match onnxruntime."""

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from optkit.reference_models import faces, hands, people, style_data
from optkit.reference_models.catalog import TASKS, evaluate, get_task

from optkit.backend.compiler import compile_model
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.cli import main

# Every reference model is committed and held to everything below.
COMMITTED = list(TASKS)  # all six reference models are trained and committed

# Loose floors for a small slice: far above what an untrained network scores, below the full-set value.
SLICE = {"parsing": (8, 0.70), "parsing_hp": (8, 0.70), "gesture": (16, 0.70), "pose": (6, 0.30),
         "face": (16, 0.10), "style": (3, None)}


def test_generators_are_deterministic_and_labelled():
    a, b = people.sample(3, 5, 120, 160, people=2), people.sample(3, 5, 120, 160, people=2)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.parts, b.parts)
    assert not np.array_equal(a.image, people.sample(3, 6, 120, 160, people=2).image)
    assert a.keypoints.shape == (2, 14, 3) and set(np.unique(a.parts)) <= set(range(len(people.PARTS)))
    scene = people.sample(0, 0, 240, 320, people=1)
    assert len(np.unique(scene.parts)) >= 5  # background + at least four parts visible
    h = hands.sample(1, 0, 256, 256)
    assert h.boxes.shape[1] == 4 and ((h.boxes >= 0) & (h.boxes <= 256)).all()
    assert len(h.boxes) == len(h.labels)
    f = faces.sample(2, 0, 128)
    assert f.landmarks.shape == (68, 2) and 0 < faces.interocular(f.landmarks) < 128
    assert style_data.exemplar(64, 0.0).shape == (64, 64, 3)


def test_data_cover_every_class_and_the_edge_cases():
    counts = {n: 0 for n in range(4)}
    labels = set()
    for i in range(40):
        s = hands.sample(9, i, 128, 128)
        counts[min(len(s.boxes), 3)] += 1
        labels.update(s.labels.tolist())
    assert labels == {0, 1, 2} and counts[0] > 0 and counts[2] + counts[3] > 0  # no hands, several hands


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_model_learned_its_task(name):
    task = get_task(name)
    assert task.onnx_path.exists(), f"{task.onnx_path} is not committed"
    if task.size_budget_mb:
        assert task.onnx_path.stat().st_size <= task.size_budget_mb * 1e6
    n, floor = SLICE[name]
    result = evaluate(name, limit=n)
    assert result.samples == n
    if name == "face":
        assert result.value < floor, result       # NME: lower is better
    elif name == "style":
        # stylised output is much closer to the exemplar's statistics than the content itself
        assert result.value < 0.5 * result.details["content_style_loss"], result
    else:
        assert result.value > floor, result


def test_models_cli_list_and_eval(tmp_path):
    out = CliRunner().invoke(main, ["models", "list", "--json"])
    assert out.exit_code == 0
    names = [m["name"] for m in __import__("json").loads(out.output)]
    assert names == list(TASKS)
    out = CliRunner().invoke(main, ["models", "eval", "parsing", "--limit", "2", "--json", str(tmp_path / "e.json")])
    assert out.exit_code == 0 and "mIoU" in out.output
    out = CliRunner().invoke(main, ["models", "eval", "nosuch"])
    assert out.exit_code == 2 and "unknown model 'nosuch'" in out.output
    wrong = get_task("parsing").onnx_path
    out = CliRunner().invoke(main, ["models", "eval", "style", "--model", str(wrong), "--limit", "1"])
    assert out.exit_code == 2 and "do not match model 'style'" in out.output


@pytest.mark.parametrize("name", COMMITTED)
def test_compiles_for_host_and_matches_onnxruntime(name, tmp_path):
    task = get_task(name)
    shape = "" if name != "style" else "image:1x3x64x64"   # style has dynamic H, W: specialize it
    compile_model(task.onnx_path, get_target("host"), tmp_path / "host", input_shapes=shape)
    feeds, _ = task.sample(0)
    if name == "style":
        feeds["image"] = np.ascontiguousarray(feeds["image"][:, :, :64, :64])
    result = run_artifact(tmp_path / "host", feeds, compare_reference=True)
    assert not result.mismatches, result.mismatches


@pytest.mark.parametrize("name", COMMITTED)
def test_cross_compiles_for_rk3399(name, tmp_path):
    task = get_task(name)
    shape = "" if name != "style" else "image:1x3x256x256"
    # Validation of an ARM build is a second, host build of the same module; the host tests above validate
    # every model already, so here one model keeps it (face, the quickest) and the rest save the time.
    built = compile_model(task.onnx_path, get_target("rk3399"), tmp_path / "rk", input_shapes=shape,
                          validate="auto" if name == "face" else "off")
    assert ("outputs" in built.manifest["validation"]) == (name == "face")
    head = (tmp_path / "rk" / "model.so").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


def test_host_artifact_evaluates_like_onnxruntime(tmp_path):
    compile_model(get_task("parsing").onnx_path, get_target("host"), tmp_path / "host")
    via_tvm = evaluate("parsing", artifact=tmp_path / "host", limit=3)
    via_ort = evaluate("parsing", limit=3)
    assert via_tvm.value == pytest.approx(via_ort.value, abs=1e-3)


def test_face_fusion_demo_writes_a_picture(tmp_path):
    out = CliRunner().invoke(main, ["models", "fusion-demo", "-o", str(tmp_path / "f.png")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TASKS))
def test_one_training_step(name, tmp_path):
    """Each training script runs end to end (render, step, export) at toy size."""
    pytest.importorskip("torch")
    cmd = [sys.executable, "-m", f"optkit.reference_models.{name}.train", "--iters", "1", "--samples", "4",
           "--batch", "2", "--out", str(tmp_path / f"{name}.onnx")]
    subprocess.run(cmd, check=True, timeout=600)
    assert (tmp_path / f"{name}.onnx").stat().st_size > 10_000
    assert (tmp_path / "train_log.json").exists()
