"""Pruning sensitivity: prune one channel group at a time and measure the task metric it costs, so a
performance engineer sees which layers tolerate pruning before choosing ratios."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import onnx

from optkit.graph.channel_deps import analyze
from optkit.graph.stats import model_stats
from optkit.pass_infra.contract import PassContext, copy_model


@dataclass
class GroupSensitivity:
    group: int
    producers: list[str]
    channels: int
    flops_saved: float     # fraction of the model's FLOPs
    metric: float
    cost: float            # metric lost (positive = worse), sign-corrected for lower-is-better metrics

    def as_dict(self):
        return asdict(self)


def scan(model: onnx.ModelProto, task, ctx: PassContext, ratio: float = 0.5, eval_limit: int = 16,
         reconstruct: bool = True, log=print) -> tuple[float, list[GroupSensitivity]]:
    from optkit.passes.prune_channels import PruneChannels
    from optkit.reference_models.catalog import session_runner

    base = task.evaluate(session_runner(model), eval_limit).value
    base_flops = model_stats(model).flops
    rows = []
    for group in analyze(model).prunable():
        pruned = PruneChannels(ratio=ratio, groups=str(group.gid), reconstruct=reconstruct).run(copy_model(model), ctx)
        value = task.evaluate(session_runner(pruned.model), eval_limit).value
        cost = (base - value) if task.higher_is_better else (value - base)
        saved = 1 - model_stats(pruned.model).flops / base_flops
        rows.append(GroupSensitivity(group.gid, group.producers, group.size, round(saved, 4), value, cost))
        log(f"group {group.gid:3d} {','.join(group.producers)[:60]:60s} {group.size:4d} ch  "
            f"-{saved * 100:4.1f}% FLOPs  {task.metric_name} {value:.4f} (cost {cost:+.4f})")
    rows.sort(key=lambda r: r.cost / max(r.flops_saved, 1e-6))
    return base, rows
