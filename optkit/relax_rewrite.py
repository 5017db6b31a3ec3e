"""Running a Relax expression mutator over a whole module: the driver optkit's Relax rewrites share."""

from __future__ import annotations

import tvm
from tvm import relax


def rewrite_functions(rewriter, mod: tvm.IRModule) -> tvm.IRModule:
    """Every Relax function of `mod` visited by `rewriter` (a PyExprMutator built on `mod`); TIR functions,
    including those the rewriter emits, are kept by its block builder."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get()
