"""Running AArch64 artifacts on an x86 machine under qemu user-mode emulation, for correctness only
(timings under emulation mean nothing). The sysroot (Debian arm64 Python + aarch64 wheels of the TVM
runtime) is prepared once by `optkit emulator setup` and cached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from optkit.backend.runtime.isolated import run_library_isolated
from optkit.core.errors import ArtifactError
from optkit.core.safe_output import check_directory_output

SETUP_SCRIPT = Path(__file__).with_name("prepare_aarch64_sysroot.sh")


def sysroot_path() -> Path:
    default = Path.home() / ".cache" / "optkit" / "aarch64-sysroot"
    return Path(os.environ.get("OPTKIT_AARCH64_SYSROOT", str(default)))


def is_sysroot(path: Path) -> bool:
    """A sysroot this script prepared (complete, or the marker of one)."""
    return (path / ".complete").is_file() and (path / "opt" / "optkit-site").is_dir()


def prepare_sysroot(dest: Path | None = None) -> Path:
    """Run the setup script (apt + pip downloads; needs root or sudo). Idempotent. DEST must be new, empty
    or a sysroot prepared before: nothing else is ever replaced."""
    dest = dest or sysroot_path()
    check_directory_output(dest, option="emulator setup DEST", owned=is_sysroot, what="a prepared sysroot")
    env = {**os.environ, "PYTHON": sys.executable}  # wheels match the versions installed beside optkit
    proc = subprocess.run(["bash", str(SETUP_SCRIPT), str(dest)], env=env, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise ArtifactError(f"emulator setup into {dest} failed (exit {proc.returncode}): {tail}")
    return dest


def _check_ready(sysroot: Path) -> str:
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if qemu is None:
        raise ArtifactError("--emulate needs qemu user-mode emulation: apt-get install qemu-user-static "
                            "(or run `optkit emulator setup`, which installs it)")
    if not (sysroot / ".complete").exists():
        raise ArtifactError(f"--emulate needs the AArch64 sysroot at {sysroot}; prepare it once with "
                            f"`optkit emulator setup` (or set OPTKIT_AARCH64_SYSROOT)")
    return qemu


def emulation_ready() -> bool:
    """Whether `run --emulate` can run here (qemu on PATH and a prepared sysroot)."""
    try:
        _check_ready(sysroot_path())
        return True
    except ArtifactError:
        return False


def run_emulated(library: Path, inputs: list[np.ndarray], timeout: float = 900) -> list[np.ndarray]:
    sysroot = sysroot_path()
    qemu = _check_ready(sysroot)
    interpreter = [qemu, "-L", str(sysroot), "-E", f"PYTHONPATH={sysroot}/opt/optkit-site",
                   "-E", f"PYTHONHOME={sysroot}/usr", str(sysroot / "usr/bin/python3.11")]
    return run_library_isolated(library, inputs, timeout, interpreter, "emulated run")
