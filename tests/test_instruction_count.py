"""Instruction counts under qemu: the plugin counts a program of known length exactly, classes included;
a compiled artifact's count is deterministic and attributed to its functions; onnxruntime runs in the same
emulator as an anchor."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import emulation_required

from optkit.backend.compiler import compile_model
from optkit.backend.runtime.emulation import sysroot_path
from optkit.backend.runtime.instruction_count import (
    CPU_MODELS,
    count_inference,
    elf_functions,
    plugin_path,
    qemu_with_plugins,
    read_marks,
    summarize,
)
from optkit.backend.targets import get_target
from optkit.core.errors import ArtifactError
from optkit.graph.numerics import make_inputs
from optkit.harness.arm_profile import profile_artifact

pytestmark = pytest.mark.emulation
PROBE = Path(__file__).parent / "data" / "count_probe.S"


def _require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        if emulation_required():
            pytest.fail(f"instruction counting needs {', '.join(missing)} (apt-get install qemu-user gcc "
                        f"gcc-aarch64-linux-gnu)")
        pytest.skip(f"needs {', '.join(missing)}")


@pytest.fixture(scope="module")
def counting_ready():
    _require("qemu-aarch64", "gcc")
    if not (sysroot_path() / ".complete").is_file() or not (sysroot_path() / "opt/anchors-site/.complete").is_file():
        if emulation_required():
            pytest.fail(f"no complete AArch64 sysroot with anchors at {sysroot_path()}: run `optkit emulator setup`")
        pytest.skip("no AArch64 sysroot with anchors (optkit emulator setup)")


def test_plugin_counts_a_known_program_exactly(tmp_path):
    _require("qemu-aarch64", "gcc", "aarch64-linux-gnu-gcc")
    probe = tmp_path / "probe"
    subprocess.run(["aarch64-linux-gnu-gcc", "-nostdlib", "-static", "-march=armv8.2-a+dotprod", "-o", str(probe),
                    str(PROBE)], check=True)
    out = tmp_path / "counts.txt"
    subprocess.run([qemu_with_plugins(), "-cpu", "cortex-a76", "-plugin", f"{plugin_path()},outfile={out}",
                    str(probe)], check=True, timeout=60)
    counts = summarize("probe", "cortex-a76", read_marks(out), [], None)
    # Between two marks: ret, bl, the loop function (mov + 1000 x 7 + ret), mov, bl, and mark's 4 up to svc.
    assert counts.instructions == 1 + 1 + (1 + 1000 * 7 + 1) + 1 + 1 + 4
    assert (counts.simd, counts.dot_products, counts.loads, counts.stores) == (2000, 1000, 1000, 1000)


def test_counts_that_differ_between_identical_inferences_are_refused():
    block = (0x1000, 10, 0, 0, 0, 0)
    marks = {"0": {block: 0}, "1": {block: 100_000}, "2": {block: 250_000}}
    with pytest.raises(ArtifactError, match="not deterministic"):
        summarize("tvm", "cortex-a72", marks, [], None)
    with pytest.raises(ArtifactError, match="not deterministic"):      # the anchors get 2 %, not 50 %
        summarize("onnxruntime", "cortex-a72", marks, [], None)
    near = {"0": {block: 0}, "1": {block: 100_000}, "2": {block: 201_000}}
    assert summarize("onnxruntime", "cortex-a72", near, [], None).instructions == 1_005_000   # their mean


def test_artifact_count_is_deterministic_and_names_its_functions(small_model, tmp_path, counting_ready):
    """`optkit profile` of an rk3399 build: optkit and onnxruntime on the same graph, counted; the build counted
    again in another process gives the same count, its own library exactly."""
    built = compile_model(small_model, get_target("rk3399"), tmp_path / "a", validate="off")
    library = tmp_path / "a" / built.manifest["library"]["file"]
    profile = profile_artifact(tmp_path / "a")
    assert profile.cpu == "cortex-a72" and [r.graph for r in profile.rows][1].endswith("(the same graph)")
    first, onnxruntime = profile.rows[0].counts, profile.rows[1].counts
    assert onnxruntime.instructions > 0 and onnxruntime.by_object        # onnxruntime's library is where it ran
    feeds = make_inputs(__import__("onnx").load(tmp_path / "a" / "model.opt.onnx"), 0)
    again = count_inference("tvm", library, [feeds[s["name"]] for s in built.manifest["inputs"]], "cortex-a72")
    assert abs(first.instructions - again.instructions) < 50_000 < first.instructions
    assert first.by_object["model.so"] == again.by_object["model.so"]     # the model's own code: exact
    tvm_functions = {name for _, _, name in elf_functions(library)}
    hottest = next(iter(first.by_function))
    assert any(hottest in name for name in tvm_functions), hottest
    assert 0 < first.simd < first.instructions and first.dot_products == 0     # Cortex-A72 build: no sdot


def test_only_aarch64_shared_objects_are_counted(small_model, tmp_path):
    compile_model(small_model, get_target("host"), tmp_path / "h", validate="off")
    with pytest.raises(ArtifactError, match="AArch64 Linux shared object"):
        profile_artifact(tmp_path / "h")
    with pytest.raises(ArtifactError, match="unknown qemu CPU model"):
        from optkit.backend.runtime.instruction_count import cpu_view

        cpu_view(sysroot_path(), "pentium")
    assert set(CPU_MODELS) == {"cortex-a53", "cortex-a72", "cortex-a76"}
    np.testing.assert_equal(len(CPU_MODELS), 3)


def test_gate_counts_an_arm_build_and_fails_an_injected_regression(tmp_path, counting_ready):
    """CI's one counted build: face for rk3399 through `optkit check`, its latency estimated from the count; a
    baseline 3 % smaller fails it, one equal passes it, whatever the machine's load (counts are deterministic:
    test_artifact_count_is_deterministic_and_names_its_functions)."""
    from optkit.harness.budgets import Tolerance
    from optkit.harness.gate import CheckOptions, baseline_verdicts, run_check

    report = run_check(["face"], ["rk3399"], CheckOptions(limit=2, work_dir=tmp_path, counts="on"))
    (cell,) = report.cells
    assert cell.error is None, cell.error
    counted = cell.latency["instructions"]
    assert counted["cpu"] == "cortex-a72" and counted["total"] > 1_000_000 and counted["hot_functions"]
    assert cell.latency["kind"] == "counted" and "estimated from emulated instruction counts" in cell.latency["source"]

    def verdict(baseline_total):
        base = {"accuracy": cell.accuracy, "size": cell.size,
                "latency": {**cell.latency, "instructions": {**counted, "total": baseline_total}}}
        return next(v for v in baseline_verdicts(cell, base, Tolerance(), True) if v.check == "baseline-instructions")

    assert verdict(counted["total"]).status == "pass"
    regressed = verdict(int(counted["total"] / 1.03))
    assert regressed.status == "fail" and "grew beyond +1%" in regressed.message


def test_ncnn_params_fold_activations_and_split_shared_blobs():
    from optkit.harness.anchor_nets import ANCHOR_NETS
    from optkit.harness.ncnn_anchor import to_ncnn_param

    text, image, outputs = to_ncnn_param(ANCHOR_NETS["mobilenet_v2"]())
    lines = text.splitlines()
    assert lines[0] == "7767517" and image == "image" and outputs == ["logits"]
    layers = [line.split() for line in lines[2:]]
    assert int(lines[1].split()[0]) == len(layers)
    splits = [layer for layer in layers if layer[0] == "Split"]
    assert len(splits) == 10 and all(layer[3] == "2" for layer in splits)      # each residual's input, read twice
    reads = [blob for layer in layers for blob in layer[4:4 + int(layer[2])]]
    assert len(reads) == len(set(reads))                                       # one consumer per blob
    assert not any(layer[0] in ("Clip", "ReLU") for layer in layers)
    assert sum("9=3 10=2,0,6" in line for line in lines) == 35                 # every Clip(0, 6) folded


def test_count_based_estimate_is_calibrated_and_labelled():
    from optkit.harness.arm_estimate import calibration_errors, estimate_from_counts, fitted_cpi

    rows = calibration_errors()
    assert {r["net"] for r in rows} == {"mobilenet_v2", "mnasnet", "mobilenet_ssd"}
    assert all(abs(r["error_pct"]) < 25 for r in rows) and len(fitted_cpi()) == 3
    rk3399, sd625 = get_target("rk3399"), get_target("snapdragon625")
    one = estimate_from_counts(100_000_000, rk3399)
    assert estimate_from_counts(200_000_000, rk3399).ms == pytest.approx(2 * one.ms, rel=1e-6)
    assert one.anchors == 3 and one.error_pct is not None and "estimated from emulated" in one.source("cortex-a72")
    assert estimate_from_counts(100_000_000, sd625).error_pct is None            # one anchor: no error claimed
    with pytest.raises(Exception, match="no count-based cost model"):
        estimate_from_counts(1, get_target("host"))


def test_committed_anchor_count_is_what_ncnn_executes(tmp_path, counting_ready):
    """The calibration rests on anchor_counts.json: one of its counts, measured again."""
    from optkit.harness.anchor_nets import ANCHOR_NETS
    from optkit.harness.arm_estimate import measured_counts
    from optkit.harness.ncnn_anchor import write_param

    param, data = write_param(ANCHOR_NETS["mobilenet_v2"](), tmp_path / "mobilenet_v2.param")
    counted = count_inference("ncnn", param, [data], "cortex-a72")
    assert counted.instructions == pytest.approx(measured_counts()["mobilenet_v2@cortex-a72"], rel=0.02)
