"""The example plugin of docs/writing-passes.md, installed the way a user installs it (a real wheel build
with its entry points), then seen by `optkit passes list`, used by `optkit optimize`, and its own unit
tests run against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from onnx import load

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "optkit-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The plugin installed into a private folder; the environment that puts it on the path."""
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(PLUGIN)], check=True, timeout=300,
                   cwd=tmp_path_factory.mktemp("build"))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


def optkit(env, *args):
    return subprocess.run([sys.executable, "-m", "optkit.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_installed_plugin_is_listed_like_a_built_in_pass(installed):
    proc = optkit(installed, "passes", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    passes = {p["name"]: p for p in json.loads(proc.stdout)["passes"]}
    assert passes["clip-to-relu"]["origin"] == "optkit_example_plugin.clip_to_relu:ClipToRelu"
    assert passes["clip-to-relu"]["exact"] is True and "skip" in passes["clip-to-relu"]["options"]
    assert "fold-bn" in passes


def test_installed_plugin_runs_in_a_pass_spec(installed, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN / "tests"))        # the plugin's own test graph builder
    monkeypatch.syspath_prepend(installed["PYTHONPATH"].split(os.pathsep)[0])
    from test_clip_to_relu import clips

    (tmp_path / "m.onnx").write_bytes(clips(("a", 0.0, None), ("b", 0.0, 6.0)).SerializeToString())
    proc = optkit(installed, "optimize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out.onnx"),
                  "--passes", "clip-to-relu,eliminate-dead")
    assert proc.returncode == 0, proc.stderr
    assert [n.op_type for n in load(tmp_path / "out.onnx").graph.node] == ["Relu", "Clip"]
    assert "clips_rewritten=1" in proc.stdout


def test_plugin_unit_tests_pass_against_the_installed_plugin(installed):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
                          env=installed, capture_output=True, text=True, timeout=300, cwd=PLUGIN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
