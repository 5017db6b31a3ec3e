"""optkit-built code vs onnxruntime on this host, for every reference model and for converter-style graphs.

    python bench/compiled_speed.py [--models parsing,face] [--threads 2] [--repeat 20] [--tuning-db DIR]
                                   [--json docs/speed.json] [--png docs/speed.png] [--skip-untuned]

For each graph, in one interleaved run with the same inputs and threads (both engines' workers spin within a
run and sleep after it):
  untuned  - TVM with no schedules (plain legalized loops: what TVM 0.27 gives by itself)
  default  - optkit's default CPU schedules (optkit/backend/schedules.py)
  tuned    - with a MetaSchedule database from `optkit tune` (when --tuning-db holds records for it)
  int8     - the model's shipped pipeline from reference_models/budgets.toml where it quantizes (every
             reference model's does), with --tuning-db when given: what `optkit check` builds; its accuracy
             cost is in the check report
  onnxruntime - the ORIGINAL graph, all graph optimizations on; for int8 rows onnxruntime also runs the same
             QDQ graph (onnxruntime_int8, its own integer kernels).
Ratios are TVM time / onnxruntime time on the original graph (below 1 = optkit faster). "roofline" is the
graph's fp32 FLOPs per second as a fraction of this host's measured fp32 peak (onnxruntime's sgemm on
1024x1024 at the same threads); int8 builds can exceed 100 %.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from converter_graphs import CONVERTER_GRAPHS  # noqa: E402
from optkit.reference_models.catalog import (  # noqa: E402
    TASKS,
    calibration_provider,  # noqa: E402
    get_task,
)

from optkit.backend.compiler import compile_model  # noqa: E402
from optkit.backend.runtime.vm_runner import configure_threads  # noqa: E402
from optkit.backend.targets import get_target  # noqa: E402
from optkit.graph.model_io import load_model  # noqa: E402
from optkit.graph.numerics import make_inputs, ort_session  # noqa: E402
from optkit.graph.stats import model_stats  # noqa: E402
from optkit.harness.budgets import load_budgets  # noqa: E402
from optkit.harness.measure import interleaved, vm_runner  # noqa: E402

VARIANTS = ("untuned", "default", "tuned", "int8")


def host_peak_gflops(threads: int, n: int = 1024) -> float:
    """Measured fp32 peak stand-in: onnxruntime's MatMul (MLAS sgemm) on n x n x n, best of 20 after 10
    warm-up calls (a lower bound of the true peak: the roofline fractions are upper bounds)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    sess = ort_session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), threads, optimize=True)
    feeds = {k: np.random.default_rng(0).random((n, n), dtype=np.float32) for k in "ab"}
    best = min(interleaved({"sgemm": lambda: sess.run(None, feeds)}, warmup=10, repeat=1)["sgemm"].median_ms
               for _ in range(20))
    return 2 * n**3 / (best * 1e-3) / 1e9


def graphs(names: list[str], tmp: Path) -> list[tuple[str, Path, str]]:
    out = []
    for name in names:
        if name in TASKS:
            out.append((name, get_task(name).onnx_path, get_task(name).compile_shapes))
        else:
            path = tmp / f"{name}.onnx"
            path.write_bytes(CONVERTER_GRAPHS[name]().SerializeToString())
            out.append((name, path, ""))
    return out


def int8_pipeline(name: str) -> str | None:
    """The shipped pipeline of a reference model whose budget quantizes it (reference_models/budgets.toml)."""
    budget = load_budgets()[0].get(name)
    return budget.pipeline if budget is not None and "quantize-int8" in budget.pipeline else None


def bench_graph(name: str, path: Path, shapes: str, threads: int, repeat: int, tuning_db: Path | None,
                tmp: Path, peak: float, untuned: bool = True) -> dict:
    host = get_target("host")
    variants = {"untuned": {"schedules": "none"}} if untuned else {}
    variants["default"] = {"schedules": "default"}
    if tuning_db is not None:
        variants["tuned"] = {"schedules": "default", "tuning_db": tuning_db}
    if int8_pipeline(name):
        variants["int8"] = {"schedules": "default", "passes": int8_pipeline(name),   # as the gate builds it
                            "calibration": calibration_provider(name), "tuning_db": tuning_db}
    runners, manifests = {}, {}
    feeds = None
    for variant, kwargs in variants.items():
        kwargs = {"passes": "mobile", **kwargs}
        result = compile_model(path, host, tmp / name / variant, input_shapes=shapes, **kwargs)
        manifests[variant] = result.manifest
        optimized = load_model(tmp / name / variant / "model.opt.onnx", check=False)
        feeds = feeds or make_inputs(optimized, seed=0)
        runners[variant] = vm_runner(tmp / name / variant / result.manifest["library"]["file"],
                                     [feeds[i["name"]] for i in result.manifest["inputs"]])
    if "tuned" in variants and manifests["tuned"]["tuning"] == "untuned":
        del runners["tuned"]                       # the database holds nothing for this graph
    original = load_model(path)
    sess = ort_session(original, threads, optimize=True)
    runners["onnxruntime"] = lambda: sess.run(None, feeds)
    if "int8" in variants:                         # onnxruntime on the same QDQ graph (its own int8 kernels)
        qdq = ort_session(load_model(tmp / name / "int8" / "model.opt.onnx", check=False), threads, optimize=True)
        runners["onnxruntime_int8"] = lambda: qdq.run(None, feeds)
    lat = interleaved(runners, warmup=2, repeat=repeat)
    flops = model_stats(optimized).flops
    ort = lat["onnxruntime"]
    row = {"graph": name, "mflops": round(flops / 1e6, 1), "onnxruntime": ort.as_dict(), "variants": {}}
    for variant in runners:
        if variant.startswith("onnxruntime"):
            continue
        x = lat[variant]
        row["variants"][variant] = {**x.as_dict(), "ratio_median": round(x.median_ms / ort.median_ms, 3),
                                    "ratio_p95": round(x.p95_ms / ort.p95_ms, 3),
                                    "roofline": round(flops / (x.median_ms * 1e-3) / 1e9 / peak, 4),
                                    "tuning": manifests[variant]["tuning"]}
    row["onnxruntime"]["roofline"] = round(flops / (ort.median_ms * 1e-3) / 1e9 / peak, 4)
    if "onnxruntime_int8" in lat:
        row["onnxruntime_int8"] = lat["onnxruntime_int8"].as_dict()
        row["variants"]["int8"].update(pipeline=int8_pipeline(name),
                                       dot_product_convolutions=manifests["int8"]["dot_product_convolutions"],
                                       ratio_to_onnxruntime_int8=round(lat["int8"].median_ms
                                                                       / lat["onnxruntime_int8"].median_ms, 3))
    return row


def plot(rows: list[dict], path: Path, threads: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if any(v in r["variants"] for r in rows)]
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    width = 0.8 / len(variants)
    xs = np.arange(len(rows))
    for i, v in enumerate(variants):
        ratios = [r["variants"].get(v, {}).get("ratio_median", np.nan) for r in rows]
        bars = ax.bar(xs + i * width - 0.4 + width / 2, ratios, width, label=f"TVM {v}")
        ax.bar_label(bars, labels=[f"{x:.2f}" if np.isfinite(x) else "" for x in ratios], fontsize=7, padding=1)
    ax.axhline(1.0, color="black", lw=1, ls="--", label="onnxruntime (original graph)")
    ax.axhline(1 / 1.3, color="green", lw=1, ls=":", label="goal: 1.3x faster than onnxruntime")
    ax.set_yscale("log")
    ax.set_xticks(xs, [r["graph"] for r in rows])
    ax.set_ylabel("time / onnxruntime time (log; <1 = faster)")
    ax.set_title(f"optkit (TVM 0.27) vs onnxruntime, measured on this host ({platform.machine()}, {threads} threads)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def markdown(result: dict) -> str:
    variants = [v for v in VARIANTS if any(v in r["variants"] for r in result["rows"])]
    head = "| graph | MFLOPs | onnxruntime ms (p95) | " + " | ".join(
        f"TVM {v} ms (p95) | {v} / ORT | {v} roofline" for v in variants) + " |"
    lines = [head, "|" + "---|" * (3 + 3 * len(variants))]
    for r in result["rows"]:
        o = r["onnxruntime"]
        cells = [r["graph"], f"{r['mflops']}", f"{o['median_ms']:.2f} ({o['p95_ms']:.2f})"]
        for v in variants:
            x = r["variants"].get(v)
            cells += ["-", "-", "-"] if x is None else [f"{x['median_ms']:.2f} ({x['p95_ms']:.2f})",
                                                          f"{x['ratio_median']:.2f}x", f"{x['roofline']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    int8_rows = [r for r in result["rows"] if "onnxruntime_int8" in r]
    if int8_rows:
        lines += ["", "int8 rows: the model's shipped pipeline; onnxruntime also ran the same QDQ graph in the same run:", "",
                  "| graph | pipeline | dot-product convs | TVM int8 ms | onnxruntime fp32 ms | onnxruntime QDQ ms | "
                  "int8 / ORT fp32 | int8 / ORT QDQ |", "|---|---|---|---|---|---|---|---|"]
        for r in int8_rows:
            x = r["variants"]["int8"]
            lines.append(f"| {r['graph']} | `{x['pipeline']}` | {x['dot_product_convolutions']} | {x['median_ms']:.2f} | "
                         f"{r['onnxruntime']['median_ms']:.2f} | {r['onnxruntime_int8']['median_ms']:.2f} | "
                         f"{x['ratio_median']:.2f}x | {x['ratio_to_onnxruntime_int8']:.2f}x |")
    return (f"Measured by `python bench/compiled_speed.py` on this host ({result['host']}, {result['threads']} threads, "
            f"{result['repeat']} interleaved runs each after warm-up; host peak {result['host_peak_gflops']} GFLOP/s "
            f"measured as onnxruntime sgemm). Ratios below 1 mean optkit is faster.\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join([*TASKS, *CONVERTER_GRAPHS]))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--tuning-db", type=Path)
    ap.add_argument("--skip-untuned", action="store_true", help="leave out TVM's plain loops (slow to run)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--render", type=Path, help="only redraw --png/--markdown from this saved --json result")
    args = ap.parse_args()
    if args.render:
        result = json.loads(args.render.read_text())
        if args.markdown:
            args.markdown.write_text(markdown(result))
        if args.png:
            plot(result["rows"], args.png, result["threads"])
        return
    configure_threads(args.threads)
    peak = host_peak_gflops(args.threads)
    print(f"host peak (onnxruntime sgemm 1024^3, {args.threads} threads): {peak:.1f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, shapes in graphs(args.models.split(","), Path(tmp)):
            row = bench_graph(name, path, shapes, args.threads, args.repeat, args.tuning_db, Path(tmp), peak,
                              untuned=not args.skip_untuned)
            rows.append(row)
            cells = "  ".join(f"{v} {x['median_ms']:.2f} ms ({x['ratio_median']:.2f}x, p95 {x['ratio_p95']:.2f}x, "
                              f"{x['roofline']:.1%} of peak)" for v, x in row["variants"].items())
            print(f"{name:14s} {row['mflops']:8.1f} MFLOPs  onnxruntime {row['onnxruntime']['median_ms']:.2f} ms  "
                  f"{cells}", flush=True)
    result = {"host": platform.machine(), "threads": args.threads, "repeat": args.repeat,
              "host_peak_gflops": round(peak, 1), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(result))
    if args.png:
        plot(rows, args.png, args.threads)


if __name__ == "__main__":
    main()
