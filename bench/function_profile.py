"""Where the time goes in an optkit build: every fused TIR function of a model timed on its own
(random inputs, the runtime's thread pool at --threads), times the number of calls, with its FLOPs and
the schedule rule that took it. Used to choose what to schedule next; not a gate.

    python bench/function_profile.py reference_models/parsing/parsing.onnx --threads 2 --top 15
    python bench/function_profile.py reference_models/pose/pose.onnx --passes mobile,quantize-int8 --calibration pose
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optkit.reference_models.catalog import calibration_provider  # noqa: E402

from optkit.backend.build import lower  # noqa: E402
from optkit.backend.compiler import DEFAULT_PIPELINE, frontend  # noqa: E402
from optkit.backend.runtime.vm_runner import configure_threads  # noqa: E402
from optkit.backend.schedules import schedule_function, vector_lanes  # noqa: E402
from optkit.backend.targets import get_target  # noqa: E402


def call_counts(mod) -> collections.Counter:
    """How often the Relax entry calls each TIR function."""
    from tvm import relax

    counts: collections.Counter = collections.Counter()

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.name == "relax.call_tir":
            counts[expr.args[0].name_hint] += 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return counts


def reduction_flops(func) -> int:
    """2 x (product of all iteration extents) of every block with a reduction axis: the multiply-adds.
    Read from the unscheduled function, whose blocks sit directly under the root."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    total = 0
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        iters = sch.get(block).iter_vars
        if any(int(iv.iter_type) == 2 for iv in iters):
            total += 2 * int(np.prod([int(iv.dom.extent) for iv in iters]))
    return total


def random_args(func, device):
    import tvm

    args = []
    for param in func.params:
        ty = param.ty
        shape = [int(d) for d in ty.shape]
        dtype = str(ty.dtype)
        data = (np.random.default_rng(0).standard_normal(shape) * 4).astype(dtype)
        args.append(tvm.runtime.tensor(data, device))
    return args


def time_function(func, tvm_target, repeat: int) -> float:
    """Median milliseconds of one call."""
    import tvm

    built = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=tvm_target)
    device = tvm.cpu()
    timer = built.mod.time_evaluator("main", device, number=1, repeat=repeat, min_repeat_ms=20)
    return float(np.median(timer(*random_args(func, device)).results)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--target", default="host")
    parser.add_argument("--passes", default=DEFAULT_PIPELINE)
    parser.add_argument("--input-shapes", default="")
    parser.add_argument("--calibration", default="", help="reference model whose calibration set quantize-int8 uses")
    parser.add_argument("--schedules", default="default", choices=("default", "none"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    from tvm import relax

    configure_threads(args.threads)
    target = get_target(args.target)
    calibration = calibration_provider(args.calibration) if args.calibration else None
    front = frontend(Path(args.model), target, args.passes, args.input_shapes, calibration=calibration)
    mod, tvm_target = lower(front.mod, target)
    counts = call_counts(mod)
    lanes = vector_lanes(tvm_target)
    rows = []
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            continue
        flops = reduction_flops(func)
        rule = "none"
        if args.schedules == "default":
            scheduled, rule = schedule_function(func, lanes)
            func, rule = (scheduled, rule) if scheduled is not None else (func, "unscheduled")
        ms = time_function(func, tvm_target, args.repeat)
        calls = counts[gv.name_hint]
        shapes = "x".join(str([int(d) for d in p.ty.shape]).replace(" ", "") for p in func.params)
        rows.append((ms * calls, ms, calls, flops, rule, f"{gv.name_hint} {shapes}"))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"{args.model}: {len(rows)} functions, {total:.2f} ms summed ({args.threads} threads)")
    print(f"{'ms total':>9} {'share':>6} {'ms/call':>8} {'calls':>5} {'GFLOP/s':>8}  rule     function")
    for total_ms, ms, calls, flops, rule, name in rows[: args.top]:
        rate = f"{flops / ms / 1e6:8.1f}" if flops else "       -"
        print(f"{total_ms:9.3f} {total_ms / total:6.1%} {ms:8.3f} {calls:5d} {rate}  {rule:8} {name}")


if __name__ == "__main__":
    main()
