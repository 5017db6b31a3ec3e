"""TVM vs onnxruntime on this host: compile MODEL for `host`, then time both on the same inputs and
thread count in one interleaved run (median and p95 after warm-up). Prints the ratio.

    python bench/host_latency.py MODEL.onnx [--threads 2] [--input-shape x:1x3x240x320] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from optkit.backend.compiler import compile_model
from optkit.backend.targets import get_target
from optkit.graph.model_io import load_model
from optkit.graph.numerics import make_inputs
from optkit.harness.measure import measure_host


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--input-shape", default="")
    ap.add_argument("--passes", default="mobile")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = compile_model(args.model, get_target("host"), Path(tmp) / "host", passes=args.passes,
                               input_shapes=args.input_shape)
        optimized = load_model(Path(tmp) / "host" / "model.opt.onnx", check=False)
        feeds = make_inputs(optimized, seed=0)
        lat = measure_host(Path(tmp) / "host", feeds, args.threads, repeat=args.repeat)
    mcpu = result.manifest["target"]["tvm_resolved"].get("mcpu", "?")
    tvm, ort = lat["tvm"], lat["onnxruntime"]
    print(f"model {args.model.name}  measured on this host ({mcpu}), {args.threads} threads, {tvm.runs} runs each, "
          f"TVM untuned")
    print(f"  {'':12s} {'median ms':>10s} {'p95 ms':>10s}")
    for name, x in lat.items():
        print(f"  {name:12s} {x.median_ms:10.3f} {x.p95_ms:10.3f}")
    print(f"  ratio TVM/onnxruntime: median {tvm.median_ms / ort.median_ms:.2f}x, p95 {tvm.p95_ms / ort.p95_ms:.2f}x"
          f"  (>1 means TVM is slower)")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model.name, "threads": args.threads, "host_cpu": mcpu,
                                         "tuning": "untuned",
                                         "latency": {k: v.as_dict() for k, v in lat.items()}}, indent=2))


if __name__ == "__main__":
    main()
