"""`simplify`: onnx-simplifier's constant folding and redundancy removal."""

from __future__ import annotations

import onnxsim

from optkit.pass_infra.contract import Pass, PassContext, PassOption, PassResult


class Simplify(Pass):
    name = "simplify"
    exact = True
    summary = "constant folding and redundant-node removal with onnx-simplifier (onnxsim)"
    options = {
        "fuse-bn": PassOption(bool, False,
                              "let onnxsim fuse BatchNormalization too (fold-bn does it with checks)"),
    }

    def run(self, model, ctx: PassContext) -> PassResult:
        # The manager verifies numerics itself, so onnxsim's own random check is not needed (check_n=0).
        simplified, _ = onnxsim.simplify(model, check_n=0, skip_fuse_bn=not self.config["fuse-bn"])
        before, after = len(model.graph.node), len(simplified.graph.node)
        changed = simplified.SerializeToString(deterministic=True) != model.SerializeToString(deterministic=True)
        return PassResult(simplified, changed, {"nodes_removed": before - after})
