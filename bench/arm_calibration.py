"""Count ncnn's aarch64 code on the anchor networks under qemu (one thread, each anchor's core model) and
write optkit/harness/anchor_counts.json, the counts the count-based estimate (arm_estimate.py) is fitted on.
Prints the fit and its error per anchor.

    python bench/arm_calibration.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optkit.backend.runtime.instruction_count import count_inference  # noqa: E402
from optkit.harness import arm_estimate  # noqa: E402
from optkit.harness.anchor_nets import ANCHOR_NETS  # noqa: E402
from optkit.harness.ncnn_anchor import write_param  # noqa: E402


def main() -> int:
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for anchor in arm_estimate.count_anchors():
            key = arm_estimate.anchor_key(anchor)
            if key in counts:
                continue
            param, data = write_param(ANCHOR_NETS[anchor.net](), Path(tmp) / f"{anchor.net}.param")
            counted = count_inference("ncnn", param, [data], anchor.qemu_cpu)
            counts[key] = counted.instructions
            print(f"{key:28s} {counted.instructions / 1e6:8.1f} M instructions (spread {counted.spread:.2%})")
    out = ROOT / "optkit" / "harness" / arm_estimate.COUNTS_FILE
    out.write_text(json.dumps({"engine": "ncnn 1.0.20261020 (aarch64 wheel, as prepare_aarch64_sysroot.sh pins it)",
                               "threads": 1,
                               "kind": "instructions per inference under qemu user mode (emulated counts)",
                               "instructions": counts}, indent=2) + "\n")
    arm_estimate.measured_counts.cache_clear()
    arm_estimate.fitted_cpi.cache_clear()
    for row in arm_estimate.calibration_errors():
        print(f"{row['net']:14s} {row['device']:60s} CPI {row['cpi']:.2f}  published {row['published_ms']:7.1f} ms  "
              f"model {row['estimated_ms']:7.1f} ms  error {row['error_pct']:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
