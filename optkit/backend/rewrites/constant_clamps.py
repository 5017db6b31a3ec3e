"""Clamps by a scalar constant (`maximum(x, 0)`, `minimum(x, 6)`: how TVM imports ONNX's Clip, ReLU6 above
all) with the bound as an immediate in the generated code.

TVM's importer emits them as TIR functions reading the bound from a 0-d tensor, and fusion passes that tensor
to the fused function as an argument: the code loads it from memory and, not knowing it is a number, clamps
with a compare and a select (`fcmgt` + `bif` on NEON, two instructions per vector and bound). With the bound
an immediate LLVM emits one `fmaxnm`/`fminnm`. The results are the same for every non-NaN input.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, topi

from optkit.backend.rewrites.mutator import constant_value, rewrite_calls

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")
_CLAMPS = {tvm.tirx.Max: topi.maximum, tvm.tirx.Min: topi.minimum}


def _scalar_clamp(func) -> tuple[object, int] | None:
    """(topi op, index of the tensor argument) when `func` is one elementwise block storing
    `max(A[i], B[()])` or `min(...)` (either order) of its two inputs; else None."""
    if not isinstance(func, tvm.tirx.PrimFunc) or len(func.params) != 3:
        return None
    sch = tvm.s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    body = sch.get(blocks[0]).body if len(blocks) == 1 else None
    if not isinstance(body, tvm.tirx.BufferStore) or type(body.value) not in _CLAMPS:
        return None
    operands = [body.value.a, body.value.b]
    if not all(isinstance(v, tvm.ir.expr.TensorLoad) for v in operands) or \
            sorted(len(v.indices) == 0 for v in operands) != [False, True]:
        return None
    tensor = next(v.source for v in operands if len(v.indices))
    index = next((i for i in range(2) if func.params[i].same_as(tensor)), None)
    return (_CLAMPS[type(body.value)], index) if index is not None else None


def _immediate_clamp(op, x, bound, builder):
    """`op(x, bound)` with the bound as an immediate, or None when it is not a finite float scalar constant."""
    value = constant_value(bound)
    if value is None or value.size != 1 or not np.isfinite(value).all() or not str(x.ty.dtype).startswith("float") \
            or value.ndim > len(x.ty.shape):      # a (1, 1, 1) bound would add axes to a 2-D x
        return None
    return builder.call_te(op, x, float(value.reshape(())))


def constant_clamps(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Every call of the TIR clamp TVM's importer emits for Clip whose bound is a finite float scalar constant
    (after constant folding) replaced by the same clamp with the bound as an immediate; returns the module
    and the count rewritten."""
    mod = relax.transform.FoldConstant()(mod)

    def call_tir(call, builder):
        callee, args = call.args[0], call.args[1]
        clamp = _scalar_clamp(mod[callee]) if isinstance(callee, tvm.ir.GlobalVar) and callee in mod else None
        if clamp is None or not isinstance(args, relax.Tuple) or len(args.fields) != 2:
            return None
        op, index = clamp
        return _immediate_clamp(op, args.fields[index], args.fields[1 - index], builder)

    mod, rewritten = rewrite_calls(mod, _CALL_TIR, call_tir)
    if rewritten:          # the clamps reading a bound tensor are no longer called
        mod = relax.transform.DeadCodeElimination()(mod)
    return mod, rewritten
