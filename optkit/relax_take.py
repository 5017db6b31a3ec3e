"""Gathers that cannot read out of bounds.

TVM's ONNX importer lowers Gather to `relax.take` in its default "fast" mode, which reads whatever memory an
out-of-range index points at; TVM prints "Fast mode segfaults when there are out-of-bounds indices" on every
build that has one (style's three brush-size Gathers). ONNX defines Gather only for indices in [-n, n), and
the importer already maps negative ones into range, so "clip" gives the same result for every valid index
and keeps a bad runtime index inside the tensor instead of crashing the process. The cost is a min/max per
index.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from .relax_rewrite import rewrite_functions

_TAKE = tvm.ir.Op.get("relax.take")


@mutator
class _ClippedTake(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.rewritten = 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if not (isinstance(call, relax.Call) and call.op == _TAKE and call.attrs.mode == "fast"):
            return call
        self.rewritten += 1
        axis = call.attrs.axis
        return relax.op.take(call.args[0], call.args[1], None if axis is None else int(axis), mode="clip")


def clipped_takes(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Every `take` in "fast" mode made "clip"; returns the module and the count rewritten."""
    rewriter = _ClippedTake(mod)
    return rewrite_functions(rewriter, mod), rewriter.rewritten
