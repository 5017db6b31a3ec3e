"""Running a Relax expression mutator over a whole module (the driver optkit's Relax rewrites share), the
simplest such rewrite (one call at a time), reading a constant argument and looking through a variable to
the call bound to it."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator


def constant_value(expr) -> np.ndarray | None:
    """The value of a Relax constant as a numpy array; None for anything else."""
    return expr.value.numpy() if isinstance(expr, tvm.ir.GenericConst) and hasattr(expr.value, "numpy") else None


def bound_call(mutator, expr, op) -> relax.Call | None:
    """The call to `op` that the variable `expr` is bound to in the function `mutator` (a PyExprMutator or
    its block builder) visits, else None."""
    bound = mutator.lookup_binding(expr) if isinstance(expr, relax.Var) else None
    return bound if isinstance(bound, relax.Call) and bound.op == op else None


def rewrite_functions(rewriter, mod: tvm.IRModule) -> tvm.IRModule:
    """Every Relax function of `mod` visited by `rewriter` (a PyExprMutator built on `mod`); TIR functions,
    including those the rewriter emits, are kept by its block builder."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get()


@mutator
class _CallRewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, op, rewrite):
        super().__init__(mod)
        self.op, self.rewrite, self.rewritten = op, rewrite, 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if not (isinstance(call, relax.Call) and call.op == self.op):
            return call
        new = self.rewrite(call, self.builder_)
        if new is None:
            return call
        self.rewritten += 1
        return new


def rewrite_calls(mod: tvm.IRModule, op, rewrite) -> tuple[tvm.IRModule, int]:
    """Every call to `op` in the Relax functions of `mod`, after its arguments are rewritten, replaced by
    `rewrite(call, block_builder)` where that returns an expression (None keeps the call); returns the
    module and the count of calls replaced. For rewrites that look at one call at a time."""
    rewriter = _CallRewriter(mod, op, rewrite)
    return rewrite_functions(rewriter, mod), rewriter.rewritten
