"""The example plugin of docs/writing-passes.md, installed the way a user installs it (a real wheel build
with its entry points), then seen by `optkit passes list`, used by `optkit optimize`, and its own unit
tests run against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import EXAMPLE_PLUGIN as PLUGIN
from onnx import load


def optkit(env, *args):
    return subprocess.run([sys.executable, "-m", "optkit.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_installed_plugin_is_listed_like_a_built_in_pass(example_plugin_env):
    proc = optkit(example_plugin_env, "passes", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    passes = {p["name"]: p for p in json.loads(proc.stdout)["passes"]}
    assert passes["clip-to-relu"]["origin"] == "optkit_example_plugin.clip_to_relu:ClipToRelu"
    assert passes["clip-to-relu"]["exact"] is True and "skip" in passes["clip-to-relu"]["options"]
    assert "fold-bn" in passes


def test_installed_plugin_runs_in_a_pass_spec(example_plugin_env, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN / "tests"))        # the plugin's own test graph builder
    monkeypatch.syspath_prepend(example_plugin_env["PYTHONPATH"].split(os.pathsep)[0])
    from test_clip_to_relu import clips

    (tmp_path / "m.onnx").write_bytes(clips(("a", 0.0, None), ("b", 0.0, 6.0)).SerializeToString())
    proc = optkit(example_plugin_env, "optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out.onnx"),
                  "--passes", "clip-to-relu,eliminate-dead")
    assert proc.returncode == 0, proc.stderr
    assert [n.op_type for n in load(tmp_path / "out.onnx").graph.node] == ["Relu", "Clip"]
    assert "clips_rewritten=1" in proc.stdout


def test_plugin_unit_tests_pass_against_the_installed_plugin(example_plugin_env):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
                          env=example_plugin_env, capture_output=True, text=True, timeout=300, cwd=PLUGIN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
