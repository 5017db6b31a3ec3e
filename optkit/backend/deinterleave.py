"""Every other element of a row, loaded as whole vectors and picked by a shuffle (Arm builds).

A stride-2 depthwise convolution reads its padded input in two column phases, even and odd columns, so
that its own vector loads are contiguous (schedules._split_column_phases). Copying an int8 input row into
those phases reads every other byte: TVM vectorizes that as a load with stride 2, which LLVM emits lane
by lane (a load and an insert per byte: 2.5 instructions per byte of the input). NEON has no strided
load, but it deinterleaves two registers in one instruction (`uzp1`/`uzp2`).

`deinterleaved(value, parity)` marks such a read: `value` is the input element, `parity` its column's
parity. It is one pure, vectorizable TIR op, so TVM's vectorizer widens it like arithmetic, and
LowerIntrin, after vectorization, rewrites a 2-strided vector load of n lanes whose parity is a constant
into two contiguous loads of n lanes starting at the even column before it, and a shuffle of their even
or odd lanes. Those two loads read exactly the column pairs that hold the original lanes, so they stay in
bounds where the rows have an even width (the only place the op is emitted); anything else is lowered to
the plain load.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.ir import register_op_attr
from tvm.tirx.op import register_intrin_lowering

OP_NAME = "tirx.optkit_deinterleaved"

register_op_attr(OP_NAME, "TCallEffectKind", tirx.CallEffectKind.Pure.value)
register_op_attr(OP_NAME, "TVectorizable", True)
register_op_attr(OP_NAME, "TScriptPrinterName", "optkit_deinterleaved")


def deinterleaved(value, parity):
    """`value` (an element read from a row of even width) whose column has `parity` (0 or 1)."""
    return tirx.call_intrin(str(value.ty.dtype), OP_NAME, value, parity)


def _constant(expr) -> int | None:
    expr = expr.value if isinstance(expr, tirx.Broadcast) else expr
    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def _lower(call):
    load, parity = call.args
    parity = _constant(parity)
    if not (isinstance(load, tvm.ir.TensorLoad) and len(load.indices) == 1 and parity is not None):
        return load
    ramp = load.indices[0]
    if not (isinstance(ramp, tirx.Ramp) and _constant(ramp.stride) == 2):
        return load
    lanes = int(ramp.lanes)
    start = ramp.base - parity % 2                       # the even column of the first lane's pair
    pairs = [tirx.BufferLoad(load.source, [tirx.Ramp(start + offset, 1, lanes)]) for offset in (0, lanes)]
    return tirx.Shuffle(pairs, [tirx.IntImm("int32", parity % 2 + 2 * i) for i in range(lanes)])


register_intrin_lowering(OP_NAME, "llvm", f=_lower, level=99)
