"""Channel pruning of the real converter-produced models in ../shared/real-models: output cosine against
fp32 (worst output, 16 held-out drawn hand photos, as bench/real_int8.py) against the FLOPs removed,
with and without least-squares reconstruction, no retraining; channels chosen by filter L1 norm, the same
share of every group (the pass's default), or by measured impact per FLOP across groups
(criterion=impact,mode=global).

    python bench/real_prune.py [--flops 0.05,0.1,0.15,0.2] [--json docs/real-prune.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

from real_int8 import REAL, write_images

from optkit import api
from optkit.graph.channel_deps import analyze
from optkit.graph.numerics import run_ort, worst_cosines
from optkit.pass_infra.calibration import ImagePreprocess, calibration_feeds, from_path

CHOICES = {"l1, uniform": "", "impact per FLOP, global": "criterion=impact,mode=global,"}


def measure(name: str, data: Path, targets: list[float]) -> list[dict]:
    source = REAL / f"{name}.onnx"
    fp32 = api.optimize(source, None, passes="mobile").model
    deps = analyze(fp32)
    samples = calibration_feeds(from_path(data / "eval", None, ImagePreprocess("auto", 1 / 255, (0.0,), (1.0,))), fp32)
    reference = [run_ort(fp32, feeds) for feeds in samples]
    rows = []
    for (choice, options), reconstruct, target in itertools.product(CHOICES.items(), (True, False), targets):
        # min-sqnr far below 0 dB: measure every point rather than have the pass refuse it
        spec = (f"mobile,prune-channels{{flops={target},{options}reconstruct={str(reconstruct).lower()},"
                "min-sqnr=-1000}")
        result = api.optimize(source, None, passes=spec, calibration=api.calibration(data=data / "calib"))
        got = [run_ort(result.model, feeds) for feeds in samples]
        worst = min(worst_cosines(reference, got).values())
        stats = result.records[-1].stats
        rows.append({"model": name, "channels": choice, "reconstruct": reconstruct, "flops_asked": target,
                     "flops_removed": stats.get("flops_removed", 0.0), "worst_cosine": worst,
                     "prunable_groups": f"{len(deps.prunable())} of {len(deps.groups)}"})
        print(f"{name:20s} {choice:22s} reconstruct={reconstruct!s:5s} FLOPs removed {rows[-1]['flops_removed']:6.1%}  "
              f"worst cosine {worst:.4f}  (groups prunable {rows[-1]['prunable_groups']})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="palm_detection_lite,hand_landmark_lite")
    parser.add_argument("--flops", default="0.05,0.1,0.15,0.2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    targets = [float(f) for f in args.flops.split(",")]
    with tempfile.TemporaryDirectory(prefix="optkit-real-prune-") as tmp:
        write_images(Path(tmp))
        rows = [row for name in args.models.split(",") for row in measure(name, Path(tmp), targets)]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
