"""Host speed before and after a change, in one run: the reference models' fp32 (`mobile`) and budget-pipeline
(int8) host builds, compiled once with optkit at a git revision (a temporary worktree) and once with this
checkout, then timed interleaved on the same inputs and threads (median of REPEAT after warm-up).

    python bench/host_before_after.py --before HEAD~1 [--models pose,parsing,face,gesture] [--threads 2]

Each build runs in its own process with that tree first on the import path, so the two sides share nothing
but the interpreter and the installed packages. Prints after / before per build; below 1 is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUILD = """
import sys
from pathlib import Path
from optkit.backend.compiler import compile_model
from optkit.backend.targets import get_target
from optkit.harness.budgets import load_budgets
from optkit.reference_models.catalog import calibration_provider, get_task
out, budgets = Path(sys.argv[1]), load_budgets()[0]
for name in sys.argv[2].split(","):
    task = get_task(name)
    for kind, passes, calibration in (("fp32", "mobile", None),
                                      ("int8", budgets[name].pipeline, calibration_provider(name))):
        compile_model(task.onnx_path, get_target("host"), out / name / kind, passes=passes, validate="off",
                      input_shapes=task.compile_shapes, calibration=calibration, force=True)
"""


def build(tree: Path, out: Path, models: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", BUILD, str(out), models], cwd=tree, env=env, check=True)


def runner(directory: Path):
    from optkit.graph.model_io import load_model
    from optkit.graph.numerics import make_inputs
    from optkit.harness.measure import vm_runner

    manifest = json.loads((directory / "manifest.json").read_text())
    feeds = make_inputs(load_model(directory / "model.opt.onnx", check=False), seed=0)
    return vm_runner(directory / manifest["library"]["file"], [feeds[i["name"]] for i in manifest["inputs"]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision of the 'before' side")
    ap.add_argument("--models", default="pose,parsing,face,gesture")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    from optkit.backend.runtime.vm_runner import configure_threads
    from optkit.harness.measure import interleaved

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(["git", "worktree", "add", "--detach", str(tmp / "tree"), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            build(tmp / "tree", tmp / "before", args.models)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "tree")], cwd=ROOT, check=True)
        build(ROOT, tmp / "after", args.models)
        configure_threads(args.threads)
        print(f"host, {args.threads} threads, median of {args.repeat}; before = {args.before}, after = this checkout")
        for name in args.models.split(","):
            runners = {f"{kind} {side}": runner(tmp / side / name / kind)
                       for kind in ("fp32", "int8") for side in ("before", "after")}
            lat = interleaved(runners, warmup=3, repeat=args.repeat)
            for kind in ("fp32", "int8"):
                before, after = lat[f"{kind} before"].median_ms, lat[f"{kind} after"].median_ms
                print(f"{name:10s} {kind}: before {before:.3f} ms, after {after:.3f} ms, after/before {after / before:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
