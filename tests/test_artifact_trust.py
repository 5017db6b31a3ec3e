"""An artifact is checked before anything in it is loaded: the manifest's schema, files inside the directory,
the library and optimized ONNX always hashed, every hash, a complete ELF; outputs are checked on every run."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from graphs import small_convnet

from optkit.backend.artifact import read_manifest
from optkit.backend.compiler import compile_model
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.core.errors import ArtifactError
from optkit.graph.numerics import run_ort


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("trust") / "small.onnx"
    path.write_bytes(small_convnet().SerializeToString())
    out = path.parent / "art"
    compile_model(path, get_target("host"), out)
    return out


def edited(artifact, tmp_path, edit):
    """A copy of the artifact whose manifest `edit` changed (the hashes are not recomputed)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest, copy)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("edit,pattern", [
    (lambda m, d: m.pop("files"), "manifest has no 'files'"),
    (lambda m, d: m["files"].pop("model.so"), "'model.so' is not among the manifest's hashed files"),
    (lambda m, d: m["files"].pop("model.opt.onnx"), "'model.opt.onnx' is not among the manifest's hashed files"),
    (lambda m, d: m["library"].update(file="../outside.so"), "not among the manifest's hashed files"),
    (lambda m, d: m["files"].update({"../outside.so": m["files"]["model.so"]}), "not a plain file inside"),
    (lambda m, d: m.pop("inputs"), "manifest has no 'inputs'"),
    (lambda m, d: m["outputs"][0].pop("shape"), r"outputs\[0\] needs a name, a shape and a dtype"),
    (lambda m, d: m.update(format="something-else"), "not an optkit artifact manifest"),
])
def test_tampered_manifest_is_refused(artifact, tmp_path, edit, pattern):
    with pytest.raises(ArtifactError, match=pattern):
        read_manifest(edited(artifact, tmp_path, edit))


def test_truncated_library_with_a_recomputed_hash_is_an_error_not_a_signal(artifact, tmp_path):
    def truncate(manifest, copy):
        data = (copy / "model.so").read_bytes()[:4096]
        (copy / "model.so").write_bytes(data)
        manifest["files"]["model.so"] = hashlib.sha256(data).hexdigest()

    copy = edited(artifact, tmp_path, truncate)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 24, 32), np.float32))
    # in a child process: loading a truncated library would kill this one with SIGBUS
    proc = subprocess.run([sys.executable, "-m", "optkit.cli", "run", str(copy), "--input", str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3 and proc.stderr.strip().splitlines() == [
        f"optkit: error: {copy / 'model.so'}: truncated (4096 bytes; its headers point past the end)"], proc.stderr


def test_output_shapes_are_checked_on_every_run(artifact, tmp_path):
    def lie(manifest, copy):
        manifest["outputs"][0]["shape"] = [1, 2, 3]
        (copy / "manifest.json").write_text(json.dumps(manifest))

    copy = edited(artifact, tmp_path, lie)
    with pytest.raises(ArtifactError, match=r"output 'y' came back as \[1, 4, 24, 32\].*declares \[1, 2, 3\]"):
        run_artifact(copy, {"x": np.zeros((1, 3, 24, 32), np.float32)})


def test_rebuilding_in_place_runs_the_new_library_in_the_same_process(tmp_path, save):
    """dlopen hands back a library already loaded from the same path; the runner loads a private copy."""
    x = np.random.default_rng(0).standard_normal((1, 3, 24, 32)).astype(np.float32)
    first = small_convnet()
    second = small_convnet()
    weight = next(t for t in second.graph.initializer if len(t.dims) == 4)
    weight.CopyFrom(onnx.numpy_helper.from_array(-onnx.numpy_helper.to_array(weight), weight.name))
    for model in (first, second):
        compile_model(save(model), get_target("host"), tmp_path / "art")
        got = run_artifact(tmp_path / "art", {"x": x}).outputs["y"]
        np.testing.assert_allclose(got, run_ort(model, {"x": x})["y"], rtol=1e-4, atol=1e-4)
