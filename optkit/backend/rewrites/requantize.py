"""The requantize step after an integer convolution as one multiply-add (Arm builds).

After backend/rewrites/int8.py a quantized convolution ends in

    q = quantize(float(acc) * s + b, s_out, z)        (s and b per output channel)

which costs every output four vector operations before rounding: times s, plus b, times 1/s_out, plus z.
Folded, it is

    q = clamp(round(float(acc) * (s / s_out) + (b / s_out + z)))

one multiply and one add, the form onnxruntime's own integer kernels requantize in (the accumulator times
one float multiplier), then rounded and narrowed by saturating_round's NEON sequence. The result differs
from the unfolded arithmetic only where the value lies within float32 rounding of a half step, by one
step, as quantize_by_reciprocal's does; builds are validated against onnxruntime as always.

When the conv is a packed integer one (backend/dot_product.py) and its bias is a whole number of
accumulator steps (b = B * s, as a QDQ model's int32 bias is), B joins the conv's constant correction, so the
integer sum already holds it, and

    q = clamp(round(float(acc + B) * (s / s_out)) + z)

needs no per-channel addend: no bias load per channel and no copy of it for each multiply-add, and z is
added by the saturating narrow (pose on a Cortex-A76 model: see docs/arm.md).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te
from tvm.relax.expr_functor import PyExprMutator, mutator

from optkit.backend.dot_product import kind_of_block
from optkit.backend.rewrites.int8 import per_channel_qparams, per_tensor_qparams, quantized_value
from optkit.backend.rewrites.mutator import bound_call, constant_value, rewrite_functions

_QUANTIZE = tvm.ir.Op.get("relax.quantize")
_ADD = tvm.ir.Op.get("relax.add")
_MULTIPLY = tvm.ir.Op.get("relax.multiply")
_ASTYPE = tvm.ir.Op.get("relax.astype")
_CALL_TIR = tvm.ir.Op.get("relax.call_tir")
BIAS_STEP_TOLERANCE = 1e-3      # of an accumulator step: a bias this close to whole steps is taken as B * s


def _requantized(acc, multiplier, offset, *, out_dtype: str):
    def value(n, c, y, x):
        total = acc[n, c, y, x].astype("float32") * multiplier[0, c, 0, 0] + offset[0, c, 0, 0]
        return quantized_value(total, 1.0, 0, out_dtype, neon=True)

    return te.compute(acc.shape, value, name="requantized")


def _requantized_from_start(acc, multiplier, *, zero_point: int, out_dtype: str):
    """The requantize of a sum that already holds its bias: one multiply, the zero point added in the narrow."""

    def value(n, c, y, x):
        return quantized_value(acc[n, c, y, x].astype("float32") * multiplier[0, c, 0, 0], 1.0, zero_point,
                               out_dtype, neon=True)

    return te.compute(acc.shape, value, name="requantized")


@mutator
class _FoldedRequantize(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.rewritten = 0

    def _with_constant(self, call):
        """(the other operand, the constant) of a binary call with one constant operand, or None."""
        if call is None:
            return None
        for mine, other in ((1, 0), (0, 1)):
            value = constant_value(call.args[mine])
            if value is not None:
                return call.args[other], value
        return None

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        new = self._fold(call) if isinstance(call, relax.Call) and call.op == _QUANTIZE else None
        return call if new is None else new

    def _fold(self, quantize):
        qparams = per_tensor_qparams(quantize)
        out_dtype = str(quantize.attrs.out_dtype)
        biased = self._with_constant(bound_call(self, quantize.args[0], _ADD))
        scaled = self._with_constant(bound_call(self, biased[0], _MULTIPLY)) if biased else None
        if out_dtype not in ("int8", "uint8") or scaled is None:
            return None
        acc, scale = scaled
        cast = bound_call(self, acc, _ASTYPE)
        if cast is not None and str(cast.args[0].ty.dtype) == "int32":
            acc = cast.args[0]
        shape = [int(d) for d in acc.ty.shape] if len(acc.ty.shape) == 4 else None
        if shape is None or str(acc.ty.dtype) not in ("int32", "float32"):
            return None
        channels = (1, shape[1], 1, 1)
        if qparams is None:                     # a grid per channel (passes/int8/channel_grids.py), or none
            qparams = per_channel_qparams(quantize, shape[1])
            if qparams is None:
                return None
        try:
            scale = np.broadcast_to(scale.astype(np.float32), channels)
            bias = np.broadcast_to(biased[1].astype(np.float32), channels)
        except ValueError:                      # not one value per output channel
            return None
        inverse = (np.float32(1) / np.asarray(qparams[0], np.float32)).reshape(-1)
        inverse = inverse[0] if inverse.size == 1 else inverse.reshape(channels)
        zero_points = np.asarray(qparams[1]).reshape(-1)
        self.rewritten += 1
        started = self._bias_in_start(acc, scale, bias) if np.all(zero_points == zero_points[0]) else None
        if started is not None:
            return self.builder_.call_te(_requantized_from_start, started, relax.const(scale * inverse),
                                         zero_point=int(zero_points[0]), out_dtype=out_dtype,
                                         primfunc_name_hint="requantize")
        offset = bias * inverse + zero_points.astype(np.float32).reshape(-1 if zero_points.size == 1 else channels)
        return self.builder_.call_te(_requantized, acc, relax.const(scale * inverse), relax.const(offset),
                                     out_dtype=out_dtype, primfunc_name_hint="requantize")

    def _bias_in_start(self, acc, scale: np.ndarray, bias: np.ndarray):
        """The packed integer conv that `acc` is bound to, emitted again with its bias (in whole accumulator
        steps) added to the sum through the conv's correction constant; None where acc is not such a conv's
        output or the bias is not whole steps."""
        conv = bound_call(self, acc, _CALL_TIR)
        if conv is None or not isinstance(conv.args[0], tvm.ir.GlobalVar):
            return None
        kind = kind_of_block(conv.args[0].name_hint)
        if kind is None or not isinstance(conv.args[1], relax.Tuple) or len(conv.args[1].fields) != 3:
            return None
        data, weights, correction = conv.args[1].fields
        start = constant_value(correction)
        steps = bias.ravel().astype(np.float64) / scale.ravel().astype(np.float64)
        whole = np.rint(steps)
        if start is None or start.dtype != np.int32 or start.size < whole.size \
                or not np.all(np.abs(steps - whole) <= BIAS_STEP_TOLERANCE):
            return None
        padded = np.zeros(start.size, np.int64)
        padded[:whole.size] = whole
        # The kind's sum either starts at the correction or subtracts it after the reduction.
        moved = start.astype(np.int64) + (padded if kind.correction_in_init else -padded)
        if np.abs(moved).max() >= 2**31:
            return None
        return self.builder_.emit(relax.Call(conv.op, [conv.args[0], relax.Tuple(
            [data, weights, relax.const(moved.astype(np.int32))])], conv.attrs, conv.ty_args))


def folded_requantize(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Every quantize of (float(acc) * per-channel scale + per-channel bias) as one multiply-add per output;
    returns the module and the count rewritten. Constants are folded first (a bias dequantized from int32)."""
    mod = relax.transform.FoldConstant()(mod)
    rewriter = _FoldedRequantize(mod)
    out = rewrite_functions(rewriter, mod)
    if rewriter.rewritten:
        out = relax.transform.DeadCodeElimination()(out)
    return out, rewriter.rewritten
