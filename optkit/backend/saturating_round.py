"""Quantize with NEON's rounding conversion and saturating narrows (AArch64 builds).

Every quantized output of an int8 model ends in clip(round(x) + zero_point) cast to int8/uint8. Written as
TIR (`te.round`, min, max, cast), LLVM turns it on AArch64 into frinti, fminnm, fmaxnm and fcvtzs per four
lanes, then narrows 32 -> 8 bits with shuffles: 17 instructions per 16 values, on every convolution output.
NEON does the same with rounding conversions and saturating narrows:

    fcvtns (round half to even, to int32; saturating)   x4
    sqxtn, sqxtn2 (int32 -> int16; saturating)          x4
    sqadd  (+ zero point, 8 int16 lanes; saturating)    x2, only for a non-zero zero point
    sqxtun/sqxtn, + 2 (int16 -> uint8/int8; saturating) x2

which is the same function: both round half to even and clamp to the type's range (an int32 overflow of the
sum saturates, and every value that saturates lies outside the 8-bit range anyway: a value past int16 stays
past the 8-bit range after adding a zero point of at most 255, so the zero point is added to int16 lanes,
8 per instruction, not to int32 lanes, 4).

The expression is one TIR op, `tirx.optkit_saturating_round(x, zero_point)`: pure and vectorizable, so
TVM's vectorizer widens it like any arithmetic, and LowerIntrin, after vectorization, expands it. When the
target being built is AArch64 and the vector has a multiple of 4 lanes it becomes the NEON sequence
(through LLVM's aarch64 intrinsics, 4 lanes at a time); otherwise (scalar tails, the host build that
validates an Arm module) it becomes the plain expression it replaces. Only Arm builds emit the op at all
(`quantized_value(..., neon=True)`), so host functions and their tuning records are unchanged.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import tirx
from tvm.ir import register_op_attr
from tvm.tirx.op import register_intrin_lowering

OP_NAME = "tirx.optkit_saturating_round"
_CHUNK = 4                       # float32 lanes per NEON register

register_op_attr(OP_NAME, "TCallEffectKind", tirx.CallEffectKind.Pure.value)
register_op_attr(OP_NAME, "TVectorizable", True)
register_op_attr(OP_NAME, "TScriptPrinterName", "optkit_saturating_round")    # printed TIR names it


def saturating_round(x, zero_point: int, out_dtype: str):
    """clip(round(x) + zero_point) to out_dtype (int8 or uint8), x float32."""
    return tirx.call_intrin(out_dtype, OP_NAME, x, tirx.IntImm("int32", int(zero_point)))


def plain_quantize(x, zero_point: int, dtype: tvm.DataType):
    """The TIR expression the op stands for, clip(round(x) + zero_point) cast: quantize as TVM computes it
    (also quantized_value's form where no op is emitted)."""
    info = np.iinfo(str(dtype.with_lanes(1)))
    value = tirx.round(x) + _broadcast(tirx.FloatImm("float32", float(zero_point)), dtype.lanes)
    low, high = (_broadcast(tirx.FloatImm("float32", float(v)), dtype.lanes) for v in (info.min, info.max))
    return tirx.Cast(str(dtype), tirx.Max(tirx.Min(value, high), low))


def _broadcast(scalar, lanes: int):
    return scalar if lanes == 1 else tirx.Broadcast(scalar, lanes)


def _lanes(indices) -> list:
    return [tirx.IntImm("int32", i) for i in indices]


def _neon(x, zero_point: int, dtype: tvm.DataType):
    """4 lanes at a time: fcvtns, sqxtn to int16; then 8 lanes at a time: (+ sqadd) sqxtun/sqxtn to 8 bits."""
    lanes = dtype.lanes
    value = tirx.Var("saturating_round_in", f"float32x{lanes}")
    words = []
    for start in range(0, lanes, _CHUNK):
        chunk = tirx.Shuffle([value], _lanes(range(start, start + _CHUNK)))
        word = tirx.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.fcvtns", chunk)
        words.append(tirx.call_llvm_pure_intrin("int16x4", "llvm.aarch64.neon.sqxtn", word))
    if len(words) % 2:
        words.append(words[-1])                 # 4 lanes left: narrow them beside a copy, keep the first half
    element = str(dtype.with_lanes(1))
    narrow = "llvm.aarch64.neon.sqxtun" if element == "uint8" else "llvm.aarch64.neon.sqxtn"
    pairs = [tirx.Shuffle([words[i], words[i + 1]], _lanes(range(8))) for i in range(0, len(words), 2)]
    if zero_point:
        offset = tirx.Broadcast(tirx.IntImm("int16", zero_point), 2 * _CHUNK)
        pairs = [tirx.call_llvm_pure_intrin("int16x8", "llvm.sadd.sat", pair, offset) for pair in pairs]
    halves = [tirx.call_llvm_pure_intrin(f"{element}x8", narrow, pair) for pair in pairs]
    out = halves[0] if len(halves) == 1 and lanes == 8 else tirx.Shuffle(halves, _lanes(range(lanes)))
    return tirx.Let(value, x, out)


def building_for_aarch64() -> bool:
    target = tvm.target.Target.current(allow_none=True)
    return target is not None and "aarch64" in str(target.attrs.get("mtriple", ""))


def _lower(call):
    x, zero_point = call.args
    dtype = tvm.DataType(str(call.ty.dtype))
    zero_point = int((zero_point.value if isinstance(zero_point, tirx.Broadcast) else zero_point).value)
    if building_for_aarch64() and dtype.lanes % _CHUNK == 0 and str(x.ty.dtype).startswith("float32"):
        return _neon(x, zero_point, dtype)
    return plain_quantize(x, zero_point, dtype)


register_intrin_lowering(OP_NAME, "llvm", f=_lower, level=99)
