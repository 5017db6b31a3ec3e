"""Instructions per inference on Arm core models, side by side (qemu user mode, one thread, optkit's counting
plugin): optkit fp32, optkit's shipped pipeline (int8 for the reference models), onnxruntime on the original
graph and on the same QDQ graph, LiteRT (XNNPACK) where a .tflite exists (the real models). Writes
docs/arm-counts.json and docs/arm-counts.md. Counts are deterministic; they are not times.

    python bench/arm_counts.py                       # every model, cores A72 (rk3399) and A76 (snapdragon845)
    python bench/arm_counts.py --models parsing,pose --cores cortex-a53
    python bench/arm_counts.py --plot-only           # redraw docs/arm-counts.png from docs/arm-counts.json
    python bench/arm_counts.py --anchors-from docs/arm-counts.json   # count optkit's builds only

The anchors (onnxruntime, LiteRT) do not change with optkit's code, and counting them is most of the run on a
2-core machine: `--anchors-from` takes their counts from an earlier run's JSON (the table says so) and
re-counts only optkit's builds.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optkit.reference_models.catalog import calibration_provider, get_task  # noqa: E402

from optkit.backend.compiler import compile_model  # noqa: E402
from optkit.backend.runtime.instruction_count import count_inference  # noqa: E402
from optkit.backend.targets import get_target  # noqa: E402
from optkit.graph.model_io import load_model  # noqa: E402
from optkit.graph.numerics import make_inputs  # noqa: E402
from optkit.harness.arm_profile import _inputs_for  # noqa: E402
from optkit.harness.budgets import load_budgets  # noqa: E402

REAL = ROOT.parent / "shared" / "real-models"
CORE_TARGETS = {"cortex-a72": "rk3399", "cortex-a76": "snapdragon845", "cortex-a53": "snapdragon625"}
ENGINES = ("optkit fp32", "optkit shipped", "onnxruntime fp32", "onnxruntime QDQ", "LiteRT")


def models(names: list[str] | None) -> list[dict]:
    budgets, _ = load_budgets()
    out = []
    for name, budget in budgets.items():
        task = get_task(name)
        out.append({"name": name, "onnx": task.onnx_path, "shapes": task.compile_shapes, "shipped": budget.pipeline,
                    "calibration": name, "tflite": None, "budgets": budget.latency_ms_max})
    for stem in ("palm_detection_lite", "hand_landmark_lite"):
        if (REAL / f"{stem}.onnx").is_file():
            out.append({"name": stem, "onnx": REAL / f"{stem}.onnx", "shapes": "", "shipped": None, "calibration": None,
                        "tflite": REAL / f"{stem}.tflite", "budgets": {}})
    return [m for m in out if not names or m["name"] in names]


def build(model: dict, target: str, pipeline: str, out: Path) -> Path:
    specialize = pipeline.startswith("specialize-input")
    compile_model(model["onnx"], get_target(target), out, passes=pipeline,
                  input_shapes="" if specialize else model["shapes"],
                  calibration=calibration_provider(model["calibration"]) if model["calibration"] else None,
                  validate="off", force=True)
    return out


def jobs_for(model: dict, core: str, work: Path, recount: set[str]) -> list[tuple]:
    """The counting jobs of one model on one core; the builds a job needs only when it is counted anew."""
    target = CORE_TARGETS[core]
    jobs = []
    if recount & {"optkit fp32", "onnxruntime fp32"}:
        fp32 = build(model, target, "specialize-input{shape=image:1x3x256x256},mobile" if model["name"] == "style"
                     else "mobile", work / model["name"] / target / "fp32")
        feeds = make_inputs(load_model(fp32 / "model.opt.onnx"), 0)
        jobs += [("optkit fp32", "tvm", fp32 / "model.so", list(feeds.values())),
                 ("onnxruntime fp32", "onnxruntime", model["onnx"], _inputs_for(Path(model["onnx"]), feeds, 0))]
    else:
        jobs += [("optkit fp32", None, None, None), ("onnxruntime fp32", None, None, None)]
    if model["shipped"] and recount & {"optkit shipped", "onnxruntime QDQ"}:
        shipped = build(model, target, model["shipped"], work / model["name"] / target / "shipped")
        q_feeds = make_inputs(load_model(shipped / "model.opt.onnx"), 0)
        jobs += [("optkit shipped", "tvm", shipped / "model.so", list(q_feeds.values())),
                 ("onnxruntime QDQ", "onnxruntime", shipped / "model.opt.onnx", list(q_feeds.values()))]
    elif model["shipped"]:
        jobs += [("optkit shipped", None, None, None), ("onnxruntime QDQ", None, None, None)]
    if model["tflite"]:
        jobs.append(("LiteRT", "litert", model["tflite"], None))
    return [(model["name"], core, label, engine, path, inputs) for label, engine, path, inputs in jobs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated (default: the budgeted reference models and the real ones)")
    parser.add_argument("--cores", default="cortex-a72,cortex-a76")
    parser.add_argument("--work", default="build/arm-counts")
    parser.add_argument("--jobs", type=int, default=2, help="counting processes at once (each is single-threaded)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "arm-counts"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from OUT.json")
    parser.add_argument("--anchors-from", help="an earlier run's JSON: its rows are reused, but for --recount's")
    parser.add_argument("--recount", default="optkit fp32,optkit shipped",
                        help="with --anchors-from: the engines counted anew (e.g. 'optkit shipped,onnxruntime QDQ' "
                             "after an int8-only change); only their builds are made")
    parser.add_argument("--recount-models", help="with --anchors-from: the models --recount applies to (default: all)")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(Path(args.out + ".json").read_text()), Path(args.out + ".png"))
        return 0
    chosen = models(args.models.split(",") if args.models else None)
    cores = args.cores.split(",")
    earlier = json.loads(Path(args.anchors_from).read_text())["models"] if args.anchors_from else {}
    recount = set(args.recount.split(",")) if args.anchors_from else set(ENGINES)
    anew = set(args.recount_models.split(",")) if args.recount_models else {m["name"] for m in chosen}
    jobs = [j for m in chosen for core in cores
            for j in jobs_for(m, core, Path(args.work), recount if m["name"] in anew else set())]

    def reused(job) -> dict | None:
        name, core, label = job[:3]
        return None if label in recount and name in anew else earlier.get(name, {}).get(core, {}).get(label)

    def run(job):
        name, core, label, engine, path, inputs = job
        counts = count_inference(engine, path, inputs, core)
        print(f"{name:22s} {core:11s} {label:17s} {counts.instructions / 1e6:9.1f} M", flush=True)
        return name, core, label, {"instructions": counts.instructions, "simd": counts.simd,
                                   "dot_products": counts.dot_products, "spread": counts.spread}

    with ThreadPoolExecutor(args.jobs) as pool:
        counted = {tuple(r[:3]): r[3] for r in pool.map(run, [j for j in jobs if reused(j) is None])}
    table: dict = {}
    for job in jobs:                                 # the table in job order, counted or reused
        name, core, label = job[:3]
        table.setdefault(name, {}).setdefault(core, {})[label] = counted.get((name, core, label)) or reused(job)
    data = {"kind": "instructions per inference under qemu user mode, 1 thread (emulated counts, not times)",
            "cores": {c: CORE_TARGETS[c] for c in cores}, "models": table,
            "budgets_ms": {m["name"]: m["budgets"] for m in chosen},
            "anchors_from": args.anchors_from and Path(args.anchors_from).name,
            "recounted": {"engines": sorted(recount), "models": sorted(anew)}}
    Path(args.out + ".json").write_text(json.dumps(data, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(data) + "\n")
    plot(data, Path(args.out + ".png"))
    print(markdown(data))
    return 0


def plot(data: dict, path: Path) -> None:
    """One bar group per model x core: every engine's count over onnxruntime's best (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = [(name, core, row) for name, cores in data["models"].items() for core, row in cores.items()]
    fig, ax = plt.subplots(figsize=(13, 5.5), dpi=110)
    width = 0.8 / len(ENGINES)
    xs = np.arange(len(groups))
    for i, engine in enumerate(ENGINES):
        ratios = []
        for _, _, row in groups:
            best = min(v["instructions"] for k, v in row.items() if k.startswith("onnxruntime"))
            ratios.append(row[engine]["instructions"] / best if engine in row else np.nan)
        ax.bar(xs + i * width - 0.4 + width / 2, ratios, width, label=engine)
    ax.axhline(1.0, color="black", lw=1, ls="--", label="better onnxruntime (fp32 or QDQ)")
    ax.axhline(0.8, color="green", lw=1, ls=":", label="goal for the shipped build: 0.8")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{n.removesuffix('_lite')} {c.removeprefix('cortex-')}" for n, c, _ in groups], fontsize=7,
                  rotation=30, ha="right")
    ax.set_ylabel("instructions / better onnxruntime (log)")
    ax.set_title("Instructions per inference under qemu, 1 thread (emulated counts, not times)")
    ax.legend(fontsize=7, ncol=4, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)


def markdown(data: dict) -> str:
    recounted = data.get("recounted") or {"engines": ["optkit fp32", "optkit shipped"], "models": list(data["models"])}
    source = (f" Counts reused from an earlier run ({data['anchors_from']}: `--anchors-from`), but for "
              f"{', '.join(recounted['engines'])} of {', '.join(recounted['models'])}, counted in this one."
              if data.get("anchors_from") else "")
    lines = [f"Instructions per inference, millions ({data['kind']}). Produced by `python bench/arm_counts.py`.{source}",
             "Goal columns: the shipped build over the better onnxruntime (goal <= 0.8), and over optkit's own "
             "fp32 build (goal <= 0.6); for the real models optkit fp32 over LiteRT (goal <= 1.0).", "",
             "| model | core (target) | " + " | ".join(ENGINES) + " | shipped / best ORT | shipped / own fp32 "
             "| fp32 / LiteRT |", "|---" * (len(ENGINES) + 5) + "|"]
    for name, cores in data["models"].items():
        for core, row in cores.items():
            m = {k: v["instructions"] / 1e6 for k, v in row.items()}
            cells = [f"{m[e]:.1f}" if e in m else "–" for e in ENGINES]
            best_ort = min(v for k, v in m.items() if k.startswith("onnxruntime"))
            shipped = m.get("optkit shipped")
            ratios = [f"{shipped / best_ort:.2f}" if shipped else "–",
                      f"{shipped / m['optkit fp32']:.2f}" if shipped else "–",
                      f"{m['optkit fp32'] / m['LiteRT']:.2f}" if "LiteRT" in m else "–"]
            lines.append(f"| {name} | {core} ({data['cores'][core]}) | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
