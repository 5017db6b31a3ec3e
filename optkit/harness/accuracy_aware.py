"""Accuracy-aware quantization: quantize, measure the task metric, and while it is outside the budget
keep in float the compute node behind the worst tensor (lowest SQNR) that is still quantized."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from optkit.harness.quant_report import tensor_errors
from optkit.pass_infra.calibration import calibration_feeds
from optkit.pass_infra.contract import PassContext, copy_model

COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
PASS_THROUGH = {"Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Add", "Mul",
                "BatchNormalization", "Resize", "MaxPool", "AveragePool", "Concat", "Transpose", "Reshape"}


@dataclass
class Step:
    excluded: list[str]
    metric: float
    cost: float
    reason: str = ""


@dataclass
class AccuracyAwareResult:
    model: onnx.ModelProto
    float_metric: float
    steps: list[Step] = field(default_factory=list)
    within_budget: bool = False

    @property
    def kept_float(self) -> list[str]:
        return self.steps[-1].excluded if self.steps else []


def compute_node_behind(model: onnx.ModelProto, tensor: str) -> str | None:
    """The nearest Conv/Gemm/MatMul upstream of a tensor, through activations and simple ops."""
    producers = {o: n for n in model.graph.node for o in n.output}
    frontier, seen = [tensor], set()
    while frontier:
        name = frontier.pop(0)
        node = producers.get(name)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in COMPUTE_OPS:
            return node.name
        if node.op_type in PASS_THROUGH:
            frontier.extend(i for i in node.input if i in producers)
    return None


def quantize_within_budget(model: onnx.ModelProto, task, budget: float, ctx: PassContext, calibrator: str = "minmax",
                           eval_limit: int = 40, max_float_nodes: int = 12, log=print) -> AccuracyAwareResult:
    from optkit.passes.quantize_int8 import QuantizeInt8
    from optkit.reference_models.catalog import session_runner

    float_eval = task.evaluate(session_runner(model), eval_limit)
    result = AccuracyAwareResult(model, float_eval.value)
    feeds = calibration_feeds(ctx.calibration, model, 8)
    excluded: list[str] = []
    reason = "all quantizable nodes in int8"
    while True:
        quantized = QuantizeInt8(calibrator=calibrator, exclude=list(excluded)).run(copy_model(model), ctx).model
        metric = task.evaluate(session_runner(quantized), eval_limit).value
        cost = (float_eval.value - metric) if task.higher_is_better else (metric - float_eval.value)
        result.steps.append(Step(list(excluded), metric, cost, reason))
        log(f"float nodes {len(excluded):2d}: {task.metric_name} {metric:.4f} (cost {cost:+.4f}); {reason}")
        result.model = quantized
        if cost <= budget:
            result.within_budget = True
            return result
        if len(excluded) >= max_float_nodes:
            return result
        for err in tensor_errors(model, quantized, feeds):
            node = compute_node_behind(model, err.tensor)
            if node and node not in excluded:
                excluded.append(node)
                reason = f"kept {node} in float: tensor '{err.tensor}' had the worst SQNR left ({err.sqnr_db:.1f} dB)"
                break
        else:
            return result
