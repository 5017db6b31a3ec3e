"""The sum of a pixel's two partial lanes, as NEON's pairwise add (Arm builds).

The widening convolutions (dot_product.WIDENING) keep each pixel's sum in two int32 lanes side by side,
[p0a, p0b, p1a, p1b, ...], and add them once after the reduction. Vectorized as acc[2x] + acc[2x+1], that is
two 2-strided loads and an add; even as deinterleaved loads, two shuffles and an add (3 instructions per
4 pixels). `addp` does it in one: the pairwise sums of two registers, in order.

`pair_sum(even, odd)` marks the sum; both reads are its arguments, so TVM sees both elements read. It is
one pure, vectorizable TIR op; LowerIntrin, after vectorization, turns 2-strided loads of neighbouring
elements (4k lanes) into `llvm.aarch64.neon.addp` of each two contiguous vectors they span (AArch64 targets
only); anything else is lowered to `even + odd`.
"""

from __future__ import annotations

import tvm
from tvm import tirx
from tvm.ir import register_op_attr
from tvm.tirx.op import register_intrin_lowering

from optkit.backend.saturating_round import building_for_aarch64

OP_NAME = "tirx.optkit_pair_sum"

register_op_attr(OP_NAME, "TCallEffectKind", tirx.CallEffectKind.Pure.value)
register_op_attr(OP_NAME, "TVectorizable", True)
register_op_attr(OP_NAME, "TScriptPrinterName", "optkit_pair_sum")


def pair_sum(even, odd):
    """even + odd, where they are elements 2x and 2x + 1 of one row."""
    return tirx.call_intrin(str(even.ty.dtype), OP_NAME, even, odd)


def _strided(load):
    """(buffer, base, lanes) of a load of a multiple of 4 lanes with stride 2, else None."""
    if not (isinstance(load, tvm.ir.TensorLoad) and len(load.indices) == 1):
        return None
    ramp = load.indices[0]
    if not (isinstance(ramp, tirx.Ramp) and isinstance(ramp.stride, tirx.IntImm) and int(ramp.stride) == 2
            and int(ramp.lanes) % 4 == 0):
        return None
    return load.source, ramp.base, int(ramp.lanes)


def _addp(buffer, base):
    """The pairwise sums of the 8 elements from base: 4 lanes."""
    halves = [tirx.BufferLoad(buffer, [tirx.Ramp(base + offset, 1, 4)]) for offset in (0, 4)]
    return tirx.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.addp", *halves)


def _lower(call):
    even, odd = call.args
    pair = _strided(even), _strided(odd)
    if building_for_aarch64() and str(call.ty.dtype).startswith("int32x") and None not in pair:
        (buffer, base, lanes), (odd_buffer, odd_base, _) = pair
        if buffer.same_as(odd_buffer) and tvm.sym.analyzer.Analyzer().can_prove_equal(odd_base, base + 1):
            sums = [_addp(buffer, base + 8 * k) for k in range(lanes // 4)]
            if len(sums) == 1:
                return sums[0]
            return tirx.Shuffle(sums, [tirx.IntImm("int32", i) for i in range(lanes)])
    return even + odd


register_intrin_lowering(OP_NAME, "llvm", f=_lower, level=99)
