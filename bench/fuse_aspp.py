"""What fuse-aspp saves on parsing_hp: FLOPs, and host latency of the model before and after the pass,
TVM and onnxruntime each, measured in one run on the same inputs and threads.

    python bench/fuse_aspp.py [--threads 2] [--repeat 20]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from optkit.reference_models.catalog import get_task

from optkit.backend.compiler import compile_model
from optkit.backend.targets import get_target
from optkit.harness.measure import measure_host


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    task = get_task("parsing_hp")
    feeds, _ = task.sample(0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, passes in (("mobile", "mobile"), ("mobile + fuse-aspp", "mobile,fuse-aspp")):
            out = Path(tmp) / label.replace(" ", "")
            result = compile_model(task.onnx_path, get_target("host"), out, passes=passes)
            flops = result.records[-1].after.flops
            results[label] = (flops, measure_host(out, feeds, args.threads, repeat=args.repeat))
    print(f"parsing_hp, measured on this host, {args.threads} threads, median (p95) ms, TVM untuned")
    for label, (flops, lat) in results.items():
        tvm, ort = lat["tvm"], lat["onnxruntime"]
        print(f"  {label:20s} {flops / 1e6:8.1f} MFLOPs   TVM {tvm.median_ms:8.2f} ({tvm.p95_ms:.2f})   "
              f"onnxruntime {ort.median_ms:7.2f} ({ort.p95_ms:.2f})")
    (f0, l0), (f1, l1) = results.values()
    print(f"  saved: {1 - f1 / f0:.1%} FLOPs, TVM {1 - l1['tvm'].median_ms / l0['tvm'].median_ms:.1%}, "
          f"onnxruntime {1 - l1['onnxruntime'].median_ms / l0['onnxruntime'].median_ms:.1%} (median)")


if __name__ == "__main__":
    main()
