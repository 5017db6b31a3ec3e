"""The compiler driver: host build runs and matches onnxruntime, ARM builds are real binaries,
rebuilds are byte-identical, failures leave nothing behind."""

import json
import os
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from graphs import small_convnet

from optkit.backend.artifact import read_manifest
from optkit.backend.compiler import compile_model
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.core.errors import ArtifactError, CompileError
from optkit.graph.numerics import make_inputs, run_ort

EM_AARCH64 = 183
MH_MAGIC_64 = 0xFEEDFACF
CPU_TYPE_ARM64 = 0x0100000C


def test_host_build_runs_and_matches_onnxruntime(small_model, tmp_path):
    result = compile_model(small_model, get_target("host"), tmp_path / "host")
    manifest = read_manifest(tmp_path / "host")
    assert manifest == result.manifest
    assert manifest["inputs"] == [{"name": "x", "shape": [1, 3, 24, 32], "dtype": "float32"}]
    assert [p["pass"] for p in manifest["passes"]] == ["fold-bn", "simplify", "eliminate-dead", "legalize"]
    assert manifest["versions"]["tvm_ffi"] == "0.1.14.post0"
    assert set(manifest["files"]) == {"model.so", "model.opt.onnx"}
    feeds = make_inputs(small_convnet(), seed=4)
    out = run_artifact(tmp_path / "host", feeds, compare_reference=True)
    ref = run_ort(small_convnet(), feeds)
    np.testing.assert_allclose(out.outputs["y"], ref["y"], rtol=1e-4, atol=1e-5)
    assert not out.mismatches and out.how.startswith("native")


def elf_machine(path) -> int:
    data = path.read_bytes()[:20]
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1  # 64-bit little-endian
    assert struct.unpack_from("<H", data, 16)[0] == 3  # ET_DYN: a shared object
    return struct.unpack_from("<H", data, 18)[0]


@pytest.mark.parametrize("target", ["rk3399", "snapdragon625", "snapdragon845"])
def test_arm_linux_targets_produce_aarch64_shared_objects(small_model, tmp_path, target):
    compile_model(small_model, get_target(target), tmp_path / target)
    assert elf_machine(tmp_path / target / "model.so") == EM_AARCH64
    manifest = json.loads((tmp_path / target / "manifest.json").read_text())
    assert manifest["target"]["tvm_resolved"]["mtriple"] == "aarch64-linux-gnu"
    with pytest.raises(ArtifactError, match="--emulate"):
        run_artifact(tmp_path / target, make_inputs(small_convnet()))


def test_ios_target_produces_macho_arm64_objects(small_model, tmp_path):
    compile_model(small_model, get_target("ios-arm64"), tmp_path / "ios")
    manifest = read_manifest(tmp_path / "ios")
    assert "Mac" in manifest["library"]["kind"] and manifest["library"]["file"] == "model.tar"
    with tarfile.open(tmp_path / "ios" / "model.tar") as tar:
        members = tar.getmembers()
        assert members and all(m.mtime == 0 for m in members)
        for m in members:
            head = tar.extractfile(m).read(8)
            magic, cputype = struct.unpack("<II", head)
            assert (magic, cputype) == (MH_MAGIC_64, CPU_TYPE_ARM64), m.name
    with pytest.raises(ArtifactError, match="cannot run here"):
        run_artifact(tmp_path / "ios", make_inputs(small_convnet()))


@pytest.mark.parametrize("target", ["host", "rk3399", "ios-arm64"])
def test_same_inputs_give_byte_identical_artifacts(small_model, tmp_path, target):
    a = compile_model(small_model, get_target(target), tmp_path / "a").manifest
    compile_model(small_model, get_target(target), tmp_path / "b")
    for name in a["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()


def test_missing_cross_compiler_says_how_to_install(small_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(CompileError, match=r"aarch64-linux-gnu-gcc.*apt-get install gcc-aarch64-linux-gnu"):
        compile_model(small_model, get_target("rk3399"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary left either


def test_failed_rebuild_keeps_the_previous_artifact(small_model, tmp_path, monkeypatch):
    compile_model(small_model, get_target("rk3399"), tmp_path / "out")
    before = (tmp_path / "out" / "manifest.json").read_bytes()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(CompileError):
        compile_model(small_model, get_target("rk3399"), tmp_path / "out")
    assert (tmp_path / "out" / "manifest.json").read_bytes() == before


def test_tampered_artifact_is_refused(small_model, tmp_path):
    compile_model(small_model, get_target("host"), tmp_path / "h")
    with open(tmp_path / "h" / "model.opt.onnx", "ab") as f:
        f.write(b"x")
    with pytest.raises(ArtifactError, match="sha256 differs"):
        read_manifest(tmp_path / "h")


def test_thread_pool_gets_the_threads_asked_for():
    """TVM halves x86 core counts unless TVM_NUM_THREADS is set, and its pool can only shrink later: a fresh
    process asking for 2 threads must get 2, and then 1 when it asks for 1."""
    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    code = ("import os; before = os.sched_getaffinity(0); "
            "from optkit.backend.runtime.vm_runner import configure_threads as c; import tvm; "
            "n = tvm.get_global_func('runtime.NumThreads'); print(c(2), n(), os.sched_getaffinity(0) == before)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    # a one-worker pool pinned the main thread to core 0, and every thread created later (onnxruntime's) with it
    assert out.stdout.split() == ["2", "2", "True"]
    code = code.replace("print(c(2), n(),", "print(c(2), c(1), n(),")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[:3] == ["2", "1", "1"]
