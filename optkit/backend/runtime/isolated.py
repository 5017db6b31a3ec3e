"""Running a compiled library in a child process (vm_runner.py as a script), natively or under qemu: a
crash or a hang in generated code becomes a one-line error naming the library, not the end of optkit, and
the library is loaded fresh (dlopen hands back an already loaded library of the same path)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from optkit.core.errors import ArtifactError

RUNNER_SCRIPT = Path(__file__).with_name("vm_runner.py")


def run_library_isolated(library: Path, inputs: list[np.ndarray], timeout: float,
                         interpreter: list[str] | None = None, label: str = "run") -> list[np.ndarray]:
    """Run `main` of the library in a child Python (`interpreter`, default this one) on the inputs."""
    with tempfile.TemporaryDirectory(prefix="optkit-run-") as tmp:
        in_path, out_path = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(in_path, *inputs)
        cmd = [*(interpreter or [sys.executable]), str(RUNNER_SCRIPT), str(library), str(in_path), str(out_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ArtifactError(f"{label} of {library} did not finish in {timeout:g} s; stopped") from exc
        if proc.returncode != 0:
            if proc.returncode < 0:
                what = f"killed by {signal.Signals(-proc.returncode).name}"
            else:
                lines = (proc.stderr or proc.stdout).strip().splitlines()
                what = f"exit {proc.returncode}: {lines[-1] if lines else 'no message'}"
            raise ArtifactError(f"{label} of {library} failed ({what})")
        with np.load(out_path) as data:
            return [data[f"arr_{k}"] for k in range(len(data.files))]
