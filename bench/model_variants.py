"""For each reference model: fp32 → pruned → int8 → pruned+int8, with the task metric, params, FLOPs,
file size and host latency (TVM and onnxruntime side by side, same threads, same run).

    python bench/model_variants.py [--models parsing,gesture] [--eval-samples 40] [--json docs/variants.json]

Pipelines: fp32 = mobile; pruned = mobile + prune-channels{flops=0.3} (uniform, least-squares
reconstruction); int8 = mobile + quantize-int8 (QDQ; TVM runs the convolutions in integers).
Latencies are measured on this host: TVM with optkit's default schedules (no tuning database) beside
onnxruntime; see bench/host_latency.py for the method.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from optkit.reference_models.catalog import TASKS, calibration_provider, get_task, session_runner

from optkit.backend.compiler import compile_model
from optkit.backend.targets import get_target
from optkit.graph.model_io import load_model, save_model
from optkit.graph.stats import model_stats
from optkit.harness.measure import measure_host
from optkit.pass_infra.contract import PassContext
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes

VARIANTS = {
    "fp32": "mobile",
    "pruned": "mobile,prune-channels{flops=0.3}",
    "int8": "mobile,quantize-int8",
    "pruned+int8": "mobile,prune-channels{flops=0.3},quantize-int8",
}


def run(models: list[str], eval_samples: int, threads: int, repeat: int) -> list[dict]:
    rows = []
    for name in models:
        task = get_task(name)
        source = load_model(task.onnx_path)
        ctx = PassContext(calibration=calibration_provider(name))
        for variant, spec in VARIANTS.items():
            if task.compile_shapes:
                spec = f"specialize-input{{shape={task.compile_shapes}}},{spec}"
            row = {"model": name, "variant": variant, "passes": spec}
            try:
                model, _ = PassManager(build_passes(spec)).run(source, ctx)
            except Exception as exc:  # a variant the model cannot take is reported, not hidden
                row["error"] = str(exc).splitlines()[0][:200]
                rows.append(row)
                print(row)
                continue
            stats = model_stats(model)
            evaluation = task.evaluate(session_runner(model), eval_samples)
            row.update({"metric": task.metric_name, "value": round(evaluation.value, 4),
                        "params": stats.params, "mflops": round(stats.flops / 1e6, 1),
                        "size_kb": round(len(model.SerializeToString()) / 1024, 1)})
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "m.onnx"
                save_model(model, path)
                compile_model(path, get_target("host"), Path(tmp) / "host", passes="")
                feeds, _ = task.sample(0)
                lat = measure_host(Path(tmp) / "host", feeds, threads, warmup=3, repeat=repeat)
            row.update({"tvm_ms": round(lat["tvm"].median_ms, 2), "ort_ms": round(lat["onnxruntime"].median_ms, 2)})
            rows.append(row)
            print(json.dumps(row))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | variant | metric | params | MFLOPs | size KB | TVM ms | ORT ms |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['variant']} | failed: {r['error']} | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['variant']} | {r['metric']} {r['value']:.4f} | {r['params']:,} | {r['mflops']} "
                     f"| {r['size_kb']} | {r['tvm_ms']} | {r['ort_ms']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(TASKS))
    ap.add_argument("--eval-samples", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = run(args.models.split(","), args.eval_samples, args.threads, args.repeat)
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
