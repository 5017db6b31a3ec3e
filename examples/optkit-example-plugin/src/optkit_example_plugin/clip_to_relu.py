"""`clip-to-relu`: Clip(x, min=0) with no upper bound is Relu(x). Converters emit such Clips for ReLU;
Relu is fused into the preceding convolution by more backends and runs faster on its own."""

from __future__ import annotations

import math

import onnx

from optkit.graph import GraphIndex, attr, remove_unused_initializers
from optkit.pass_infra import Pass, PassContext, PassOption, PassResult


def _bound(node: onnx.NodeProto, index: GraphIndex, position: int, attribute: str, default: float) -> float | None:
    """The Clip bound at input `position` (opset >= 11) or in `attribute` (older opsets); None if not constant."""
    if len(node.input) > position:
        if not node.input[position]:
            return default                          # an empty name: the bound is absent
        value = index.constant(node.input[position])
        return None if value is None or value.size != 1 else float(value.reshape(()))
    return float(attr(node, attribute, default))


class ClipToRelu(Pass):
    name = "clip-to-relu"
    exact = True                # the manager checks the outputs against the input model with onnxruntime
    summary = "Clip with min 0 and no max becomes Relu"
    options = {
        # Commas separate options in a pass spec, so the list is ';'-separated.
        "skip": PassOption(str, "", "names of Clip nodes to leave alone, separated by ';'"),
    }

    def run(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        # `model` is this pass's own copy (the manager copies before every pass): edit it in place.
        skip = {name.strip() for name in self.config["skip"].split(";") if name.strip()}
        index = GraphIndex(model.graph)
        rewritten = 0
        for node in model.graph.node:
            if node.op_type != "Clip" or node.domain not in ("", "ai.onnx") or node.name in skip:
                continue
            low = _bound(node, index, 1, "min", -math.inf)
            high = _bound(node, index, 2, "max", math.inf)
            if low == 0.0 and high == math.inf:
                node.op_type = "Relu"
                del node.input[1:]
                del node.attribute[:]
                rewritten += 1
        remove_unused_initializers(model.graph)      # the bounds' constants, if nothing else reads them
        ctx.log.info("clip-to-relu: %d Clip nodes became Relu", rewritten)
        return PassResult(model, changed=rewritten > 0, stats={"clips_rewritten": rewritten})
