"""`import optkit` mirrors the CLI: compile / optimize / check / load_artifact, taking paths or ModelProtos,
target names or Target objects, shapes as text or dicts, calibration as files, iterables or readers."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from graphs import small_convnet

import optkit
from optkit.backend.targets import get_target
from optkit.core.errors import OptionError
from optkit.graph.numerics import run_ort, sqnr_db


def test_import_is_light_and_exports_the_api():
    out = subprocess.run([sys.executable, "-c", "import sys, optkit; optkit.compile; optkit.load_artifact; "
                          "print(any(m == 'tvm' or m.startswith('tvm.') for m in sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert {"compile", "optimize", "check", "load_artifact"} <= set(optkit.__all__)


def test_compile_a_modelproto_with_dict_shapes_and_python_calibration(tmp_path):
    model = small_convnet()
    samples = [np.random.default_rng(i).standard_normal((1, 3, 24, 32)).astype(np.float32) for i in range(6)]
    result = optkit.compile(model, target="host", output=tmp_path / "a", passes="mobile,quantize-int8",
                            input_shapes={"x": (1, 3, 24, 32)}, calibration=samples)
    quantize = next(r for r in result.records if r.name == "quantize-int8")
    assert quantize.stats["calibration_samples"] == 6
    artifact = optkit.load_artifact(tmp_path / "a")
    assert [i["name"] for i in artifact.inputs] == ["x"] and "host" in repr(artifact)
    x = samples[0]
    got = artifact.run(x)["y"]
    reference = run_ort(onnx.load(tmp_path / "a" / "model.opt.onnx"), {"x": x})["y"]
    assert sqnr_db(reference, got) >= 20            # compile's own criterion for quantized graphs


def test_optimize_and_a_target_object(tmp_path):
    optimized = optkit.optimize(small_convnet(), passes="mobile").model
    assert not any(n.op_type == "BatchNormalization" for n in optimized.graph.node)
    built = optkit.compile(optimized, target=get_target("host"), output=tmp_path / "b", validate="off")
    assert built.manifest["target"]["name"] == "host"


def test_check_takes_option_fields_and_names_unknown_ones():
    with pytest.raises(OptionError, match="unknown option\\(s\\) limits; valid: budgets, limit"):
        optkit.check(["face"], ["host"], limits=3)
