"""Tuning databases: compile applies a committed MetaSchedule database (tuned here for graphs.small_convnet
with `optkit tune --trials 4`), says so in the manifest, and stays exact; `optkit tune` records optkit's
default schedules first and resumes without re-tuning what the database holds; bad uses are named. A real
search is in the slow set."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import graphs
import pytest

from optkit.backend.compiler import compile_model
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.core.errors import OptionError
from optkit.graph.numerics import make_inputs

DB = Path(__file__).parent / "data" / "tuning-small"


def test_compile_applies_the_database_and_stays_exact(small_model, tmp_path):
    result = compile_model(small_model, get_target("host"), tmp_path / "a", tuning_db=DB)
    tuning = result.manifest["tuning"]
    assert tuning["tuned_functions"] == tuning["functions"] == 7
    assert result.manifest["schedules"]["functions"]["from_database"] == 7
    feeds = make_inputs(graphs.small_convnet(), 0)
    run = run_artifact(tmp_path / "a", feeds, compare_reference=True)
    assert not run.mismatches and run.reference_max_abs_diff < 1e-4


def test_a_database_covering_nothing_leaves_the_build_untuned(save, tmp_path):
    path = save(graphs.conv_bn_net(dynamic_batch=False))
    result = compile_model(path, get_target("host"), tmp_path / "a", tuning_db=DB)
    assert result.manifest["tuning"] == "untuned"


def test_database_errors_name_the_directory_and_target(small_model, tmp_path):
    with pytest.raises(OptionError, match=r"--tuning-db .*nowhere: no MetaSchedule database"):
        compile_model(small_model, get_target("host"), tmp_path / "a", tuning_db=tmp_path / "nowhere")
    with pytest.raises(OptionError, match=r"tuned for target 'host', not 'rk3399'"):
        compile_model(small_model, get_target("rk3399"), tmp_path / "b", tuning_db=DB)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def optkit(*args):
    return subprocess.run([sys.executable, "-m", "optkit.cli", *args], capture_output=True, text=True, timeout=900)


def test_tune_resumes_without_retuning(small_model, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(DB, db)
    before = (db / "database_tuning_record.json").read_bytes()
    out = optkit("tune", str(small_model), "--db", str(db), "--trials", "1")
    assert out.returncode == 0, out.stderr
    assert "7 distinct tasks" in out.stdout
    assert (db / "database_tuning_record.json").read_bytes() == before      # every task already had a record


def test_tune_refuses_a_device_target_without_rpc(small_model, tmp_path):
    out = optkit("tune", str(small_model), "--target", "rk3399", "--db", str(tmp_path / "db"), "--trials", "1")
    assert out.returncode == 2 and "tune it on the device with --rpc HOST:PORT --key rk3399" in out.stderr
    out = optkit("tune", "nosuch.onnx", "--db", str(tmp_path / "db"))
    assert out.returncode == 2 and "nosuch.onnx: neither a model file nor a reference model" in out.stderr


def test_tune_records_the_default_schedules_first(small_model, tmp_path):
    """One trial per task is what the default rules give: recorded (measured, replayable traces) without a
    search, and a build from that database is exact."""
    db = tmp_path / "db"
    out = optkit("tune", str(small_model), "--db", str(db), "--trials", "1")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in (db / "database_tuning_record.json").read_text().splitlines()]
    assert len(records) == 7 and len({r[0] for r in records}) == 7
    assert all(0 < r[1][1][0] < 1 for r in records)                       # measured seconds, not 1e10
    result = compile_model(small_model, get_target("host"), tmp_path / "a", tuning_db=db)
    assert result.manifest["tuning"]["tuned_functions"] == 7
    run = run_artifact(tmp_path / "a", make_inputs(graphs.small_convnet(), 0), compare_reference=True)
    assert not run.mismatches and run.reference_max_abs_diff < 1e-4


@pytest.mark.slow
def test_tune_from_scratch_then_compile_uses_it(small_model, tmp_path):
    db = tmp_path / "db"
    out = optkit("tune", str(small_model), "--db", str(db), "--trials", "2")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in (db / "database_tuning_record.json").read_text().splitlines()]
    assert len({r[0] for r in records}) == 7 and all(r[1][1][0] < 1e9 for r in records)   # all measured
    result = compile_model(small_model, get_target("host"), tmp_path / "a", tuning_db=db)
    assert result.manifest["tuning"]["tuned_functions"] == 7


def test_gate_uses_the_given_database_else_the_shipped_one(tmp_path):
    from optkit.harness.gate import CheckOptions, tuning_db_for

    assert tuning_db_for(CheckOptions(tuning_db=DB), get_target("host")) == DB
    shipped = tuning_db_for(CheckOptions(), get_target("host"))
    assert shipped is not None and shipped.parts[-2:] == ("tuning", "host")   # reference_models/tuning/host
    assert (shipped / "database_tuning_record.json").is_file()
    assert tuning_db_for(CheckOptions(), get_target("rk3399")) is None      # nothing shipped for devices


@pytest.mark.parametrize("passes", ["mobile", "mobile,quantize-int8"])
def test_the_shipped_database_covers_every_function_of_face(passes, tmp_path):
    """The gate compiles face with reference_models/tuning/host; a lowering change (or a calibration count
    that differs between tune and compile) silently leaves it untuned, so re-tune when this fails."""
    from optkit.reference_models.catalog import calibration_provider, get_task

    from optkit.harness.gate import CheckOptions, tuning_db_for

    if "int8" in passes and not graphs.host_has_vnni():
        pytest.skip("the shipped int8 records are for the VNNI form of the convolutions (tuned on a VNNI host)")
    task = get_task("face")
    result = compile_model(task.onnx_path, get_target("host"), tmp_path / "face", passes=passes,
                           input_shapes=task.compile_shapes, tuning_db=tuning_db_for(CheckOptions(), get_target("host")),
                           calibration=calibration_provider("face"))
    tuning = result.manifest["tuning"]
    assert tuning["tuned_functions"] == tuning["functions"], tuning
