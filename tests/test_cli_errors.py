"""Every user error ends in one line that names what is wrong, exit status 1, no traceback, no output
written and the input untouched."""

import hashlib

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from graphs import fin, init, make, small_convnet
from onnx import helper

from optkit.cli import main


def invoke(*args):
    """Run the CLI in-process with exceptions propagating (catch_exceptions=False: an escaped exception fails
    the test instead of being caught by the runner). A failure must print exactly one `optkit: error:` line
    on stderr; an internal error (exit 70) never passes for a user error."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code != 0:
        assert_one_error_line(result.stderr)
    return result.exit_code, result.output


def assert_one_error_line(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("optkit: error: "), stderr
    assert "internal error" not in lines[0] and "Traceback" not in stderr, stderr


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def celu_model():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Celu", ["c"], ["y"], name="celu_1")]
    return make(nodes, [fin("x", [1, 3, 4, 4])], [fin("y", [1, 2, 4, 4])],
                [init("w", np.ones((2, 3, 1, 1), np.float32))])


def broken_model_bytes():
    model = small_convnet()
    model.graph.node[2].input[0] = "undefined_tensor"
    return model.SerializeToString()


CASES = {
    "missing file": (None, r"missing\.onnx: no such file"),
    "not onnx": (b"this is a text file, not a model\n" * 10, r"not a valid ONNX protobuf|holds no ONNX graph"),
    "truncated": ("truncated", r"not a valid ONNX protobuf \(truncated or not ONNX\)"),
    "fails checker": (broken_model_bytes(), r"fails the ONNX checker.*undefined_tensor"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", ["compile", "optimize"])
def test_bad_model_files(tmp_path, case, command):
    content, pattern = CASES[case]
    path = tmp_path / ("missing.onnx" if content is None else "bad.onnx")
    if content == "truncated":
        full = small_convnet().SerializeToString()
        content = full[: len(full) // 2]
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    args = ["compile", path, "--target", "host", "-o", out] if command == "compile" else ["optimize", path, "-o", out]
    code, text = invoke(*args)
    assert code == 3, text
    assert text.startswith("optkit: error: ") and "Traceback" not in text
    assert __import__("re").search(pattern, text), text
    assert not out.exists()
    if content is not None:
        assert path.read_bytes() == content


def test_op_tvm_cannot_import_is_named_with_its_node(save, tmp_path):
    path = save(celu_model())
    code, text = invoke("compile", path, "--target", "host", "-o", tmp_path / "out")
    assert code == 3
    assert "op Celu of node 'celu_1' cannot be imported by TVM" in text
    assert not (tmp_path / "out").exists()


def test_unknown_target_lists_valid_ones(small_model, tmp_path):
    code, text = invoke("compile", small_model, "--target", "rk3388", "-o", tmp_path / "out")
    assert code == 2 and "unknown target 'rk3388'" in text
    for name in ("host", "ios-arm64", "rk3399", "snapdragon625", "snapdragon845"):
        assert name in text


def test_unknown_pass_and_bad_option(small_model, tmp_path):
    code, text = invoke("optimize", small_model, "-o", tmp_path / "o.onnx", "--passes", "fold-bn,prune")
    assert code == 2 and "unknown pass 'prune'" in text and "specialize-input" in text
    code, text = invoke("optimize", small_model, "-o", tmp_path / "o.onnx", "--passes", "simplify{fuse=1}")
    assert code == 2 and "pass 'simplify': unknown option(s) fuse; valid: fuse-bn" in text
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("spec,pattern", [
    ("y:1x3x24x32", "shape spec names input 'y', but the model's inputs are: x"),
    ("x:1x3x24", "has rank 3, but input 'x' has rank 4"),
    ("x:1x4x24x32", "sets axis 1 to 4, but the model fixes it to 3"),
    ("x:1x3xAx32", "dimensions must be integers"),
    ("x1x3", "dimensions must be integers joined by 'x' or ','"),
    (":1x3", "expected NAME:D1xD2x"),
])
def test_shape_spec_that_does_not_match_an_input(small_model, tmp_path, spec, pattern):
    before = digest(small_model)
    code, text = invoke("optimize", small_model, "-o", tmp_path / "o.onnx", "--input-shape", spec)
    assert code == 2 and pattern in text, text
    assert digest(small_model) == before and not (tmp_path / "o.onnx").exists()


def test_optimize_writes_model_and_report(small_model, tmp_path):
    code, text = invoke("optimize", small_model, "-o", tmp_path / "o.onnx", "--report", tmp_path / "r.json",
                        "--passes", "specialize-input{shape=x:1x3x24x32},simplify,fold-bn")
    assert code == 0, text
    out = onnx.load(tmp_path / "o.onnx")
    assert not any(n.op_type == "BatchNormalization" for n in out.graph.node)
    report = __import__("json").loads((tmp_path / "r.json").read_text())
    assert [r["pass"] for r in report] == ["specialize-input", "simplify", "fold-bn"]


def test_run_errors_name_the_input(small_model, tmp_path):
    assert invoke("compile", small_model, "--target", "host", "-o", tmp_path / "h")[0] == 0
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 8, 8), np.float32))
    code, text = invoke("run", tmp_path / "h", "--input", tmp_path / "bad.npy")
    assert code == 2 and "input 'x' has shape [1, 3, 8, 8]; the artifact was built for [1, 3, 24, 32]" in text
    code, text = invoke("run", tmp_path / "h", "--input", f"z={tmp_path / 'bad.npy'}")
    assert code == 2 and "input(s) z not in the model; its inputs are: x" in text
    code, text = invoke("run", tmp_path / "nothing", "--input", tmp_path / "bad.npy")
    assert code == 3 and "not an optkit artifact directory" in text


def test_cli_compile_and_run_host(small_model, tmp_path):
    code, text = invoke("compile", small_model, "--target", "host", "-o", tmp_path / "h")
    assert code == 0 and "model.so" in text
    x = np.random.default_rng(0).standard_normal((1, 3, 24, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, text = invoke("run", tmp_path / "h", "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy", "--compare")
    assert code == 0 and "(match)" in text, text
    from optkit.graph.numerics import run_ort

    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), run_ort(small_convnet(), {"x": x})["y"],
                               rtol=1e-4, atol=1e-5)
