"""The whole hostile-input campaign: every file of tests/hostile.py's corpus through `optimize`, `compile --target
host` and `compile --target rk3399`, each in its own process, plus seeded random vision graphs (fp32 and int8)
built for host and compared with onnxruntime on inputs the build-time validation did not use.

Counts what a user must never see: tracebacks, crashes (signals), hangs, internal errors, errors of more than
one line, files changed that optkit did not create, and silent mismatches. Writes docs/hostile.{json,md}.

    python bench/hostile_campaign.py                  # the full campaign (~30 min on 2 cores)
    python bench/hostile_campaign.py --quick          # a few of each kind
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import hostile  # noqa: E402

COMMANDS = {"optimize": ["optimize", "{model}", "-o", "{out}.onnx"],
            "compile host": ["compile", "{model}", "--target", "host", "-o", "{out}"],
            "compile rk3399": ["compile", "{model}", "--target", "rk3399", "-o", "{out}"]}
TIMEOUT_S = 300


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def classify(returncode: int | None, stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if returncode is None:
        return "hang"
    if "Traceback" in stderr:
        return "traceback"
    if returncode < 0 or returncode >= 128:
        return "crash"
    if returncode == 0:
        return "ok"
    if returncode == 70:
        return "internal error"
    if len(lines) == 1 and lines[0].startswith("optkit: error: "):
        return "clean error"
    return "multi-line error"


def run_case(case, command: str) -> dict:
    name, files = case
    with tempfile.TemporaryDirectory(prefix="optkit-hostile-") as tmp:
        folder = Path(tmp)
        for file, data in files.items():
            (folder / file).write_bytes(data)
        before = _tree(folder)
        args = [a.format(model=folder / "model.onnx", out=folder / "out") for a in COMMANDS[command]]
        env = {**os.environ, "OPTKIT_RUN_TIMEOUT_S": "20"}
        try:
            proc = subprocess.run([sys.executable, "-m", "optkit.cli", *args], capture_output=True, text=True,
                                  timeout=TIMEOUT_S, env=env)
            code, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            code, stderr = None, ""
        after = {k: v for k, v in _tree(folder).items() if not k.startswith("out")}
        touched = before != after or any(p.name.startswith(".out") for p in folder.iterdir())
        return {"case": name, "command": command, "outcome": classify(code, stderr), "touched": touched,
                "message": (stderr.strip().splitlines() or [""])[-1][:300]}


def fuzz_case(seed: int, int8: bool) -> dict:
    """Build a random graph for host; 'ok' needs the artifact to match onnxruntime on fresh inputs."""
    code = f"""
import sys, json
sys.path.insert(0, {str(ROOT / 'tests')!r})
import numpy as np, onnx
from fuzz_graphs import random_graph
from optkit.backend.compiler import compile_model
from optkit.core.errors import OptkitError
from optkit.graph.numerics import compare, make_inputs, run_ort
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
model = random_graph({seed})
path = {{tmp!r}} + "/m.onnx"
onnx.save(model, path)
calibration = (lambda: [make_inputs(model, k) for k in range(8)]) if {int8} else None
try:
    compile_model(path, get_target("host"), {{tmp!r}} + "/a", passes="mobile,quantize-int8" if {int8} else "mobile",
                  calibration=calibration)
except OptkitError as exc:
    print(json.dumps({{"outcome": "refused", "message": str(exc)[:300]}})); sys.exit(0)
opt = onnx.load({{tmp!r}} + "/a/model.opt.onnx")
feeds = make_inputs(opt, 99)
ref, got = run_ort(opt, feeds), run_artifact({{tmp!r}} + "/a", feeds).outputs
if {int8}:
    from optkit.backend.validate import check_outputs
    bad = check_outputs(ref, got, True)[1]
else:
    bad = compare(ref, got, 1e-4, 1e-4)[1]
print(json.dumps({{"outcome": "silent mismatch" if bad else "ok", "message": str(bad)[:300]}}))
"""
    with tempfile.TemporaryDirectory(prefix="optkit-fuzz-") as tmp:
        try:
            proc = subprocess.run([sys.executable, "-c", code.replace("{tmp!r}", repr(tmp))], capture_output=True,
                                  text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"seed": seed, "int8": int8, "outcome": "hang", "message": ""}
        if proc.returncode != 0:
            return {"seed": seed, "int8": int8, "outcome": classify(proc.returncode, proc.stderr),
                    "message": proc.stderr.strip()[-300:]}
        return {"seed": seed, "int8": int8, **json.loads(proc.stdout.strip().splitlines()[-1])}


def _reason(message: str) -> str:
    """A refusal's message without its file path and numbers, to group refusals by cause."""
    text = re.sub(r"^\S*\.onnx( \(after passes\))?: ", "", message)
    text = re.sub(r"\s*\([^)]*\)", "", re.sub(r"'[^']*'", "'…'", text)).split(";")[0]
    return re.sub(r"\[[^\]]*\]", "[…]", re.sub(r"\d+(\.\d+)?", "N", text))[:110]


def render(summary: dict, quick: bool) -> str:
    outcomes, fuzz_outcomes = summary["outcomes"], summary["fuzz_outcomes"]
    refusals = Counter(f"{'int8' if g['int8'] else 'fp32'}: {_reason(g['message'])}" for g in summary["graphs"]
                       if g["outcome"] == "refused")
    lines = ["# Hostile-input campaign", "", f"`python bench/hostile_campaign.py{' --quick' if quick else ''}`: "
             f"{summary['cases']} hostile files (tests/hostile.py) x {len(summary['commands'])} commands "
             f"({len(summary['runs'])} runs), each in its own process, and {len(summary['graphs'])} random vision "
             f"graphs (tests/fuzz_graphs.py) built for host and compared with onnxruntime on inputs the build-time "
             f"validation did not use.", "",
             "| outcome | runs |", "|---|---|", *[f"| {k} | {v} |" for k, v in sorted(outcomes.items())],
             f"| files touched that optkit did not create | {summary['files_touched']} |", "",
             "| random graphs | count |", "|---|---|", *[f"| {k} | {v} |" for k, v in sorted(fuzz_outcomes.items())],
             "", "A refusal is a one-line error before any artifact is written; a silent mismatch would be an artifact "
             "that disagrees with onnxruntime. Refusals by cause:", "",
             "| refused because | graphs |", "|---|---|", *[f"| {k} | {v} |" for k, v in refusals.most_common()], ""]
    if summary["failures"]:
        lines += ["## Failures", "", *[f"- {json.dumps(f)}" for f in summary["failures"]], ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the default test run's subset, optimize only")
    parser.add_argument("--fuzz", type=int, default=200, help="random fp32 graphs (int8: a quarter as many)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--render-only", action="store_true", help="rewrite hostile.md from hostile.json")
    args = parser.parse_args()
    if args.render_only:
        summary = json.loads((args.out / "hostile.json").read_text())
        (args.out / "hostile.md").write_text(render(summary, args.quick))
        return 0
    cases = hostile.fast_subset() if args.quick else hostile.corpus()
    commands = ["optimize"] if args.quick else list(COMMANDS)
    fuzz = 4 if args.quick else args.fuzz
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(lambda job: run_case(*job), [(c, cmd) for c in cases for cmd in commands]))
        graphs = list(pool.map(lambda job: fuzz_case(*job),
                               [(s, False) for s in range(fuzz)] + [(1000 + s, True) for s in range(fuzz // 4)]))
    never = {"traceback", "crash", "hang", "internal error", "multi-line error", "silent mismatch"}
    summary = {"cases": len(cases), "commands": commands,
               "outcomes": dict(sorted(Counter(r["outcome"] for r in runs).items())),
               "files_touched": sum(r["touched"] for r in runs),
               "fuzz_outcomes": dict(sorted(Counter(f"{'int8' if g['int8'] else 'fp32'} {g['outcome']}"
                                                    for g in graphs).items())),
               "failures": [r for r in runs if r["outcome"] in never or r["touched"]]
               + [g for g in graphs if g["outcome"] in never], "runs": runs, "graphs": graphs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = render(summary, args.quick)
    (args.out / "hostile.md").write_text(text)
    print(text)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
