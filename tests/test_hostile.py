"""Hostile input: every reproducer found by fuzzing (tests/data/repro, table in its README) is a regression
test, a fast subset of the hostile-file corpus (tests/hostile.py) must end in exit 0 or one clean error line,
and seeded random vision graphs (tests/fuzz_graphs.py) must build and match onnxruntime or be refused cleanly.
The whole campaign is bench/hostile_campaign.py."""

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from fuzz_graphs import random_graph
from hostile import bit_flips, deep_and_wide, fast_subset
from test_cli_errors import invoke

import optkit.backend.compiler as compiler
from optkit.backend.artifact import read_manifest
from optkit.backend.compiler import compile_model
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.core.errors import CompileError, ResourceError
from optkit.graph.numerics import compare, make_inputs, run_ort
from optkit.pass_infra.calibration import from_npz

REPRO = Path(__file__).parent / "data" / "repro"


def compiled_matches_onnxruntime(model_path, out, seed=11, **kwargs):
    """Compile for host (validated), then run the artifact on inputs the validation did not use."""
    result = compile_model(model_path, get_target("host"), out, **kwargs)
    assert "outputs" in result.manifest["validation"]
    optimized = onnx.load(out / "model.opt.onnx")
    feeds = make_inputs(optimized, seed)
    worst, bad = compare(run_ort(optimized, feeds), run_artifact(out, feeds).outputs, 1e-4, 1e-4)
    assert not bad, bad
    return result


@pytest.mark.parametrize("name", ["resize_linear_scales_noninteger", "resize_nearest_scales_noninteger",
                                  "resize_cubic_scales_noninteger", "resize_nearest_tf_half_pixel_tie",
                                  "resize_align_corners_out1_traceback", "maxpool_kernel_gt_input_shape",
                                  "avgpool_kernel_gt_input_compile_error"])
def test_resize_and_pool_reproducers_build_and_match_the_source_model(name, tmp_path):
    """Against the *source* model, not only the optimized one: legalize's rewrite is what makes them right."""
    path = REPRO / f"{name}.onnx"
    compiled_matches_onnxruntime(path, tmp_path / "a")
    source = onnx.load(path)
    feeds = make_inputs(source, 3)
    worst, bad = compare(run_ort(source, feeds), run_artifact(tmp_path / "a", feeds).outputs, 1e-4, 1e-4)
    assert not bad, bad


@pytest.mark.parametrize("name", ["resize_linear_scales_noninteger", "resize_nearest_tf_half_pixel_tie",
                                  "maxpool_kernel_gt_input_shape"])
def test_validation_refuses_what_tvm_gets_wrong_and_writes_nothing(name, tmp_path, monkeypatch):
    """Without legalize TVM miscompiles these; the build-time validation must catch it, name the output, and
    leave no artifact."""
    monkeypatch.setattr(compiler, "LEGALIZE", "")
    with pytest.raises(CompileError, match=r"disagrees with onnxruntime.*output 'y'"):
        compile_model(REPRO / f"{name}.onnx", get_target("host"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_validation_off_is_recorded(small_model, tmp_path):
    result = compile_model(small_model, get_target("host"), tmp_path / "a", validate="off")
    assert read_manifest(tmp_path / "a")["validation"] == result.manifest["validation"]
    assert "skipped" in result.manifest["validation"]


def test_sum_of_3000_inputs_builds(tmp_path):
    """In a child process: without legalize, TVM's importer overflows the stack and kills the process."""
    proc = subprocess.run([sys.executable, "-m", "optkit.cli", "compile", str(REPRO / "crash_sum_3000_inputs_segv.onnx"),
                           "--target", "host", "-o", str(tmp_path / "a")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
    manifest = read_manifest(tmp_path / "a")
    assert next(p for p in manifest["passes"] if p["pass"] == "legalize")["stats"]["variadic"] == 1
    assert manifest["validation"]["outputs"]


@pytest.mark.parametrize("case", [c for c in deep_and_wide() if c[0] in ("chain-3000", "wide-concat-2000")],
                         ids=lambda case: case[0])
def test_deep_and_wide_graphs_build(case, tmp_path):
    """In a child process, as above: a 2000-input Concat killed TVM's importer before legalize split it."""
    (tmp_path / "m.onnx").write_bytes(case[1]["model.onnx"])
    proc = subprocess.run([sys.executable, "-m", "optkit.cli", "compile", str(tmp_path / "m.onnx"), "--target", "host",
                           "-o", str(tmp_path / "a")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
    assert read_manifest(tmp_path / "a")["validation"]["outputs"]


def test_endless_loop_is_stopped_naming_the_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTKIT_RUN_TIMEOUT_S", "2")
    with pytest.raises(ResourceError, match=r"pass 'simplify': verification run: onnxruntime did not finish in 2 s"):
        compile_model(REPRO / "hang_loop_tripcount_2p62.onnx", get_target("host"), tmp_path / "a")


def test_huge_tensor_is_refused_before_allocating(tmp_path):
    code, text = invoke("compile", REPRO / "memory_constantofshape_1x3x10000x10000.onnx", "--target", "host",
                        "-o", tmp_path / "a")
    assert code == 3 and "tensor 'x' of shape [1, 3, 10000, 10000] needs 1.12 GiB" in text


def test_tensor_limits_are_settable(small_model, monkeypatch):
    from optkit.graph.model_io import load_model

    monkeypatch.setenv("OPTKIT_MAX_TENSORS_GB", "0.00001")
    with pytest.raises(ResourceError, match=r"the model's tensors need \d+\.\d MiB together.*OPTKIT_MAX_TENSORS_GB"):
        load_model(small_model)
    monkeypatch.setenv("OPTKIT_MAX_TENSORS_GB", "lots")
    with pytest.raises(ResourceError, match="OPTKIT_MAX_TENSORS_GB='lots': expected a number"):
        load_model(small_model)


@pytest.mark.parametrize("name,pass_stat", [("int8_gemm_bias_shape1_quantizer_indexerror", "gemms_canonicalized"),
                                            ("int8_gemm_alpha_bias2d_quantizer_valueerror", "gemms_canonicalized"),
                                            ("int8_pad_constant_value_tvm_import_error", None)])
def test_int8_reproducers_quantize_and_build(name, pass_stat, tmp_path):
    result = compiled_matches_onnxruntime(REPRO / f"{name}.onnx", tmp_path / "a", passes="mobile,quantize-int8",
                                          calibration=from_npz(REPRO / f"{name}.calib.npz"))
    stats = {p["pass"]: p["stats"] for p in result.manifest["passes"]}
    if pass_stat:
        assert stats["quantize-int8"][pass_stat] == 1
    else:
        assert stats["legalize"]["pad_values"] == 1


@pytest.mark.parametrize("name,max_steps,max_fraction", [("int8_qdq_linear_resize_tie_rounding", 1, 0.05),
                                                          ("int8_cubic_resize_requant_flip", 3, 0.01)])
def test_int8_resize_reproducers_stay_within_their_measured_steps(name, max_steps, max_fraction, tmp_path):
    """Quantized on generated inputs: the linear resize shares its scale in and out, so every other output is a
    .5 tie and ~3 % land one step from onnxruntime; TVM's cubic resize is up to 3 steps off on ~0.4 %. The
    README states these numbers; this pins them (bit-exact QDQ resizes are open work)."""
    source = onnx.load(REPRO / f"{name}.onnx")
    result = compile_model(REPRO / f"{name}.onnx", get_target("host"), tmp_path / "a", passes="mobile,quantize-int8",
                           calibration=lambda: [make_inputs(source, k) for k in range(16)])
    assert all(o["sqnr_db"] >= 40 for o in result.manifest["validation"]["outputs"].values())   # 41 and 62 dB
    quantized = onnx.load(tmp_path / "a" / "model.opt.onnx")
    out = quantized.graph.output[0].name
    last = next(n for n in quantized.graph.node if out in n.output)
    scale = float(onnx.numpy_helper.to_array(next(t for t in quantized.graph.initializer if t.name == last.input[1])))
    feeds = make_inputs(quantized, 100)
    steps = abs(run_ort(quantized, feeds)[out] - run_artifact(tmp_path / "a", feeds).outputs[out]) / scale
    assert steps.max() <= max_steps + 1e-3 and (steps > 0.5).mean() <= max_fraction, (steps.max(), (steps > 0.5).mean())


@pytest.mark.parametrize("target", ["rk3399", "ios-arm64"])
def test_identity_only_graph_builds_for_devices(tmp_path, save, target):
    from graphs import fin, make
    from onnx import helper

    path = save(make([helper.make_node("Identity", ["x"], ["y"])], [fin("x", [1, 4])], [fin("y", [1, 4])], []))
    compile_model(path, get_target(target), tmp_path / "a")
    assert read_manifest(tmp_path / "a")["validation"]["outputs"]["y"]["max_abs_diff"] == 0


@pytest.mark.parametrize("case", fast_subset(), ids=lambda case: case[0])
def test_hostile_file_ends_in_success_or_one_clean_error(case, tmp_path, monkeypatch):
    name, files = case
    monkeypatch.setenv("OPTKIT_RUN_TIMEOUT_S", "5")
    for file, data in files.items():
        (tmp_path / file).write_bytes(data)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, _ = invoke("optimize", tmp_path / "model.onnx", "-o", tmp_path / "out.onnx")   # asserts one error line
    assert code in (0, 2, 3)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "out.onnx"} == before
    assert (tmp_path / "out.onnx").exists() == (code == 0)


def test_onnxruntime_logs_nothing_beside_the_error_line(tmp_path):
    """In a child process, where onnxruntime's own logger writes to the real stderr (CliRunner sees only
    Python's): a Resize onnxruntime refuses at load used to print its multi-line log before optkit's line."""
    case = dict(bit_flips(90, 1))["bit-flips-79"]
    (tmp_path / "model.onnx").write_bytes(case["model.onnx"])
    proc = subprocess.run([sys.executable, "-m", "optkit.cli", "optimize", str(tmp_path / "model.onnx"), "-o",
                           str(tmp_path / "out.onnx")], capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 3 and len(lines) == 1 and lines[0].startswith("optkit: error: pass "), proc.stderr


@pytest.mark.parametrize("seed", range(4))
def test_random_vision_graph_builds_and_matches(seed, tmp_path, save):
    """Seeds 0-3 are graphs TVM can build (no empty tensors): a refusal here would hide a broken compile, so
    they must build and match; the campaign counts the refusals of other seeds."""
    compiled_matches_onnxruntime(save(random_graph(seed)), tmp_path / "a")


def test_copied_reproducers_are_the_shared_ones():
    """tests/data/repro is a copy of the shared reproducers, so CI does not depend on a folder beside the clone."""
    shared = Path(__file__).parents[2] / "shared" / "repro"
    if not shared.is_dir():
        pytest.skip("no shared/ beside this checkout")
    for file in shared.glob("*.onnx"):
        assert (REPRO / file.name).read_bytes() == file.read_bytes(), file.name
