"""Nothing optkit did not create is deleted or overwritten: -o may replace only an earlier artifact or an empty
directory (or anything, with --force), never an input or a special file; results get the umask's permissions;
a killed run's temporary directory is cleaned up by the next; concurrent writers take turns."""

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys

import pytest
from graphs import small_convnet
from test_cli_errors import invoke

from optkit.core.errors import OutputError
from optkit.core.safe_output import PARTIAL_MARKER, atomic_directory


def tree_digest(path):
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def user_dir(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("my notes")
    (d / "sub").mkdir()
    (d / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return d


def test_compile_refuses_a_directory_it_did_not_create(small_model, user_dir):
    before = tree_digest(user_dir)
    code, text = invoke("compile", small_model, "--target", "host", "-o", user_dir)
    assert code == 2 and "not an optkit artifact" in text and "--force" in text
    assert tree_digest(user_dir) == before


def test_force_replaces_it_and_an_artifact_is_replaced_without_force(small_model, user_dir):
    assert invoke("compile", small_model, "--target", "host", "-o", user_dir, "--force")[0] == 0
    assert not (user_dir / "notes.txt").exists() and (user_dir / "manifest.json").is_file()
    first = tree_digest(user_dir)
    assert invoke("compile", small_model, "--target", "host", "-o", user_dir)[0] == 0   # an artifact: replaced
    assert tree_digest(user_dir) == first                                             # deterministic bytes


def test_artifact_with_a_foreign_file_is_not_replaced(small_model, tmp_path):
    out = tmp_path / "art"
    assert invoke("compile", small_model, "--target", "host", "-o", out)[0] == 0
    (out / "keep.txt").write_text("added by the user")
    code, text = invoke("compile", small_model, "--target", "host", "-o", out)
    assert code == 2 and (out / "keep.txt").read_text() == "added by the user"


def test_output_that_is_or_holds_the_input_is_refused_even_forced(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    model = folder / "m.onnx"
    model.write_bytes(small_convnet().SerializeToString())
    before = model.read_bytes()
    for args in (["compile", model, "--target", "host", "-o", folder, "--force"],
                 ["compile", model, "--target", "host", "-o", model],
                 ["optimize", model, "-o", model]):
        code, text = invoke(*args)
        assert code == 2 and "input" in text, text
        assert model.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx"]


def test_special_files_are_never_replaced(small_model, tmp_path):
    code, text = invoke("optimize", small_model, "-o", "/dev/null")
    assert code == 2 and "not a regular file" in text
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, text = invoke("optimize", small_model, "-o", fifo)
    assert code == 2 and fifo.is_fifo()
    (tmp_path / "d").mkdir()
    code, text = invoke("optimize", small_model, "-o", tmp_path / "d")
    assert code == 2 and "is a directory" in text


@pytest.mark.parametrize("output,pattern", [(".", "give a file or directory name"),
                                            ("/proc/optkit-out", "cannot write in /proc"),
                                            ("x" * 240, "name too long")])
def test_unusable_output_paths(small_model, output, pattern):
    code, text = invoke("optimize", small_model, "-o", output)
    assert code == 2 and pattern in text, text


def test_results_follow_the_umask(small_model, tmp_path):
    old = os.umask(0o022)
    try:
        assert invoke("compile", small_model, "--target", "host", "-o", tmp_path / "art")[0] == 0
        assert invoke("optimize", small_model, "-o", tmp_path / "o.onnx")[0] == 0
    finally:
        os.umask(old)
    assert (tmp_path / "art").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "o.onnx").stat().st_mode & 0o777 == 0o644


def test_a_killed_runs_temporary_directory_is_removed_by_the_next(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / ".out.abc123.tmp"
    stale.mkdir()
    (stale / PARTIAL_MARKER).write_text(dead.stdout.strip())
    foreign = tmp_path / ".out.zzz.tmp"          # the same name pattern without optkit's marker: not ours
    foreign.mkdir()
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "f").write_text("x")
    assert not stale.exists() and foreign.is_dir() and (tmp_path / "out" / "f").is_file()


def _write_artifact(args):
    path, k = args
    manifest = {"format": "optkit-artifact/1", "files": {"payload": ""}, "writer": k}
    try:
        for _ in range(30):                       # many swaps, so that unserialised writers would collide
            with atomic_directory(path) as tmp:
                (tmp / "payload").write_text(str(k) * 1000)
                (tmp / "manifest.json").write_text(json.dumps(manifest))
        return "ok"
    except (OutputError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_concurrent_writers_take_turns(tmp_path):
    out = tmp_path / "shared"
    with multiprocessing.get_context("fork").Pool(6) as pool:
        results = pool.map(_write_artifact, [(out, k) for k in range(6)])
    assert all(r == "ok" for r in results), results
    writer = json.loads((out / "manifest.json").read_text())["writer"]
    assert (out / "payload").read_text() == str(writer) * 1000           # one writer's files, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]      # no temporaries left behind


def test_emulator_setup_refuses_a_folder_with_files(user_dir):
    before = tree_digest(user_dir)
    code, text = invoke("emulator", "setup", user_dir)
    assert code == 2 and "not a prepared sysroot" in text
    assert tree_digest(user_dir) == before
