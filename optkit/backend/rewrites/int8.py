"""Integer convolutions for QDQ models in TVM Relax.

TVM's ONNX frontend imports QuantizeLinear/DequantizeLinear as R.quantize/R.dequantize and computes the
convolution in float32 on dequantized tensors: an int8 model then runs as float (and slower). This
rewrite turns every

    conv2d(dequantize(x_q, s_x, z_x), dequantize(W_q, s_w[c], 0))

into an integer convolution followed by a per-channel rescale:

    acc[int32] = conv2d(int16(x_q) - z_x, W_q[int8], out_dtype=int32)
    y[float32] = float32(acc) * (s_x * s_w[c])

Zero padding stays exact because the zero point is subtracted before the convolution pads. Bias,
activations and the following quantize (the requantize step) act on the rescaled result, as before.
The multiply-accumulate work, which is nearly all of a conv net's work, is done in integers.

The accumulation takes one of three exact forms:
- dense convolutions on CPUs with a dot-product instruction (x86 VNNI, Arm sdot): backend/dot_product.py's packed
  convolution, four input channels per instruction lane;
- grouped and depthwise convolutions: sums of the integer values in the float depthwise schedule, reading
  the 1-byte input: on Arm int16 products into int32 (`smlal` by lane: half the loads of float32 and a
  one-instruction widening), elsewhere float32 sums (exact while every partial sum stays below 2^24; a
  3x3 window is far below);
- otherwise int16(x_q) - z_x times int8 weights into int32.

A second rewrite, quantize_by_reciprocal, turns the division of every per-tensor quantize (each
requantize step) into a product with the scale's reciprocal.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx, topi
from tvm.relax.expr_functor import PyExprMutator, mutator

from optkit.backend.deinterleave import deinterleaved
from optkit.backend.dot_product import GROUP, DotKind, dot_product_conv, pack_weights, with_accumulator_start
from optkit.backend.rewrites.mutator import bound_call, constant_value, rewrite_calls, rewrite_functions
from optkit.backend.saturating_round import plain_quantize, saturating_round

_CONV = tvm.ir.Op.get("relax.nn.conv2d")
_MATMUL = tvm.ir.Op.get("relax.matmul")
_PERMUTE = tvm.ir.Op.get("relax.permute_dims")
_DEQUANTIZE = tvm.ir.Op.get("relax.dequantize")
_QUANTIZE = tvm.ir.Op.get("relax.quantize")
INT16_ROW_LANES = 4       # int32 lanes of a NEON vector: Arm's int16 depthwise sums need rows of whole vectors


def _exact_in_float32(w_q: np.ndarray) -> bool:
    """Whether float32 sums of (x - z) * w over one output's window are exact: every partial sum is an
    integer below 2^24 (|x - z| <= 255). True for depthwise 3x3 / 5x5 windows, not for wide dense ones."""
    return 255 * int(np.abs(w_q.astype(np.int64)).sum(axis=(1, 2, 3)).max()) < 2**24


@mutator
class _IntegerConv(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, dot_product: DotKind | None, float_dense: bool):
        super().__init__(mod)
        self.float_dense = float_dense
        self.dot_product = dot_product
        self.on_dot_product = 0
        self.rewritten = 0

    def _dequantize_of(self, expr):
        return bound_call(self, expr, _DEQUANTIZE)

    def _quantized_input(self, expr, channels: int = 0):
        """(x_q, scale, zero point) of an activation dequantized from int8/uint8 per tensor, or, where
        `channels` is given (a depthwise layer's input), per channel on axis 1: then scale and zero point
        are vectors of that length. None otherwise."""
        dq_x = self._dequantize_of(expr)
        qparams = per_tensor_qparams(dq_x) if dq_x is not None else None
        if qparams is None and dq_x is not None and channels:
            qparams = per_channel_qparams(dq_x, channels)
        if qparams is None or str(dq_x.args[0].ty.dtype) not in ("int8", "uint8"):
            return None
        return (dq_x.args[0], *qparams)

    def _shifted_int16(self, x_q, zero_point):
        """x_q - zero_point in int16 (zero_point: one, or one per channel), the operand of the int16 x int8 ->
        int32 products."""
        x_int = self.builder_.emit(relax.op.astype(x_q, "int16"))
        if np.any(zero_point != 0):
            zero = np.int16(zero_point) if np.ndim(zero_point) == 0 else np.asarray(zero_point, np.int16).reshape(1, -1, 1, 1)
            x_int = self.builder_.emit(relax.op.subtract(x_int, relax.const(zero)))
        return x_int

    def _rescaled(self, acc, scale: np.ndarray):
        """The integer (or float-held integer) accumulator times the per-output-channel scale."""
        self.rewritten += 1
        if str(acc.ty.dtype) != "float32":
            acc = self.builder_.emit(relax.op.astype(acc, "float32"))
        return relax.op.multiply(acc, relax.const(scale.astype(np.float32)))

    def _float_accumulated_conv(self, x_q, w_q: np.ndarray, zero_point: int, attrs, out_width: int):
        """conv2d(x_q - zero_point, w_q) on the integer values, scheduled by the float convolution rules:
        float32 arithmetic (exact, see _exact_in_float32), or on Arm for grouped and depthwise layers int16
        products into int32 (exact). The cast is part of the same TE function, so the input stays 1 byte in
        memory (as separate ops, TVM fused the cast into the producing layer, which then wrote float32). On
        Arm a stride-2 layer's input bytes are read through backend/deinterleave.py's op, for the copy into
        column phases.

        Why int16 on Arm: one 16-byte load feeds 8 lanes of `smlal`/`smlal2` by lane where float32 needed
        two loads, the bytes widen in one `uxtl` (float32: `tbl` + `ucvtf` per 4) and the padded planes are
        half the size. pose int8, Cortex-A76 model: depthwise layers 31.8 -> 26.9 M instructions (and 1.4 M
        less `memset`), 115.6 -> 109.1 M in all. Only where the output rows are whole 4-lane vectors: with
        a predicated last tile LLVM leaves the int16 sums scalar (32 x 16 x 30, 3x3: 437 -> 569 k instructions;
        32 x 16 x 32: 124 -> 103 k). Dense stems (one group of <= 4 channels) stay float32: their 3-channel
        taps measured 10.3 -> 12.2 M as int16 (pose on a Cortex-A72 model). On Arm they read HWIO weights,
        multiplied by lane as backend/rewrites/hwio_kernels.py explains (OIHW: one scalar load per weight):
        that stem 10.3 -> 8.5 M."""
        phased = self.float_dense and int(attrs.strides[1]) == 2 and int(x_q.ty.shape[-1]) % 2 == 0
        int16 = self.float_dense and int(attrs.groups) > 1 and out_width % INT16_ROW_LANES == 0
        element_type, sum_type = ("int16", "int32") if int16 else ("float32", "float32")

        def conv(x, w, *zero_points):
            def element(n, c, y, column):
                value = deinterleaved(x(n, c, y, column), column % 2) if phased else x(n, c, y, column)
                zero = zero_points[0][c] if zero_points else tirx.const(zero_point, element_type)
                return value.astype(element_type) - zero

            shifted = te.compute(x.shape, element, name="dequantize")
            return topi.nn.conv(shifted, w, [int(v) for v in attrs.strides], [int(v) for v in attrs.padding],
                                [int(v) for v in attrs.dilation], int(attrs.groups), "NCHW", kernel_layout,
                                out_dtype=sum_type)

        weights = w_q.astype(element_type)
        kernel_layout = "HWIO" if self.float_dense and int(attrs.groups) == 1 else "OIHW"
        if kernel_layout == "HWIO":
            weights = np.ascontiguousarray(weights.transpose(2, 3, 1, 0))
        per_channel = [relax.const(np.asarray(zero_point).astype(element_type))] if np.ndim(zero_point) else []
        return self.builder_.emit(self.builder_.call_te(conv, x_q, relax.const(weights), *per_channel,
                                                        primfunc_name_hint="group_conv2d_int8"))

    def _one_group_in_float(self, w_q: np.ndarray) -> bool:
        """A layer of at most 4 input channels (an RGB stem) on the channel-pair kind would be padded to two
        groups and do twice its multiply-adds; float32 FMAs over the integers do it exactly."""
        return (self.dot_product.channel_pairs and self.float_dense and w_q.shape[1] <= GROUP
                and _exact_in_float32(w_q))

    def _dot_product_conv(self, x_q, w_q: np.ndarray, zero_point: int, attrs):
        """int32 conv2d(x_q - zero_point, w_q) as backend/dot_product.py's packed convolution."""
        kind = self.dot_product
        data = str(x_q.ty.dtype)
        shift = 0 if data == kind.data_dtype else (128 if data == "int8" else -128)
        weights, correction = pack_weights(w_q, zero_point + shift, kind)
        self.on_dot_product += 1
        call = self.builder_.call_te(
            dot_product_conv, x_q, relax.const(weights), relax.const(correction), zero_point=zero_point + shift,
            shift=shift, strides=[int(v) for v in attrs.strides], padding=[int(v) for v in attrs.padding],
            dilation=[int(v) for v in attrs.dilation], out_channels=int(w_q.shape[0]), kind=kind.name,
            primfunc_name_hint=kind.block)
        if kind.correction_in_init:
            function = call.args[0]
            self.builder_.update_func(function, with_accumulator_start(self.builder_.get()[function], kind))
        return self.builder_.emit(call)

    def _matmul_weights(self, expr) -> tuple[np.ndarray, np.ndarray] | None:
        """(W_q [K, N] int8, per-column scale [N]) of a matmul's right operand that is a symmetric int8
        constant dequantized per output column: dequantize(W [K, N], axis=1), or the transpose of
        dequantize(W [N, K], axis=0) (an ONNX Gemm with transB)."""
        transposed = False
        bound = self.lookup_binding(expr) if isinstance(expr, relax.Var) else None
        if isinstance(bound, tvm.ir.Call) and bound.op == _PERMUTE and [int(a) for a in bound.attrs.axes] == [1, 0]:
            expr, transposed = bound.args[0], True
        dq_w = self._dequantize_of(expr)
        if dq_w is None:
            return None
        w_q, s_w, z_w = (constant_value(a) for a in dq_w.args)
        if w_q is None or s_w is None or z_w is None or w_q.dtype != np.int8 or w_q.ndim != 2 or np.any(z_w != 0):
            return None
        columns = w_q.shape[0] if transposed else w_q.shape[1]
        axis = int(dq_w.attrs.axis) % 2
        if s_w.size not in (1, columns) or (s_w.size > 1 and axis != (0 if transposed else 1)):
            return None
        return (w_q.T if transposed else w_q), np.broadcast_to(s_w.reshape(-1).astype(np.float64), (columns,))

    def _integer_matmul(self, call):
        """x [M, K] @ W [K, N] with x and W dequantized: (int16(x_q) - z_x) @ W_q into int32, then the
        rescale, exactly as the convolutions (face's 2272 -> 136 head read its weights as 1.2 MB of float32;
        as int8 they are 0.3 MB)."""
        x, weights = self._quantized_input(call.args[0]), self._matmul_weights(call.args[1])
        if x is None or weights is None or len(x[0].ty.shape) != 2:
            return call
        (x_q, scale_x, zero_point), (w_q, s_w) = x, weights
        acc = self.builder_.emit(relax.op.matmul(self._shifted_int16(x_q, zero_point),
                                                 relax.const(np.ascontiguousarray(w_q)), out_dtype="int32"))
        return self._rescaled(acc, (scale_x * s_w).reshape(1, -1))

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if call.op == _MATMUL:
            return self._integer_matmul(call)
        if call.op != _CONV:
            return call
        attrs = call.attrs
        x, dq_w = self._quantized_input(call.args[0], _depthwise_channels(call)), self._dequantize_of(call.args[1])
        if x is None or dq_w is None:
            return call
        if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW":
            return call
        x_q, scale_x, zero_point = x
        w_q, s_w, z_w = (constant_value(a) for a in dq_w.args)
        if w_q is None or s_w is None or z_w is None or w_q.dtype != np.int8 or np.any(z_w != 0):
            return call
        cout = w_q.shape[0]
        s_w = np.broadcast_to(s_w.astype(np.float64), (cout,)) if s_w.size in (1, cout) else None
        if s_w is None or (s_w.size == cout and s_w.ndim == 1 and int(dq_w.attrs.axis) not in (0, -4) and cout > 1):
            return call
        if self.dot_product and int(attrs.groups) == 1 and w_q.min() >= self.dot_product.min_weight \
                and not self._one_group_in_float(w_q):
            acc = self._dot_product_conv(x_q, w_q, zero_point, attrs)
        elif (int(attrs.groups) > 1 or self.float_dense) and _exact_in_float32(w_q):
            width = call.ty.shape[-1]
            out_width = int(width) if isinstance(width, tirx.IntImm) else -1
            acc = self._float_accumulated_conv(x_q, w_q, zero_point, attrs, out_width)
        else:
            acc = self.builder_.emit(relax.op.nn.conv2d(
                self._shifted_int16(x_q, zero_point), relax.const(w_q), strides=attrs.strides, padding=attrs.padding,
                dilation=attrs.dilation, groups=attrs.groups, data_layout="NCHW", kernel_layout="OIHW", out_dtype="int32"))
        return self._rescaled(acc, (np.asarray(scale_x, np.float64) * s_w).reshape(1, cout, 1, 1))


def _depthwise_channels(conv) -> int:
    """The channel count of a depthwise conv2d (one input and one output channel per group), else 0: the
    layers whose input may be quantized per channel (passes/int8/channel_grids.py), since channel c's sum
    reads only channel c and is rescaled by s_x[c] * s_w[c]."""
    groups = int(conv.attrs.groups)
    x_shape, w_shape = conv.args[0].ty.shape, conv.args[1].ty.shape
    if groups == 1 or len(x_shape) != 4 or len(w_shape) != 4 or not all(isinstance(d, tirx.IntImm) for d in (*x_shape, *w_shape)):
        return 0
    channels = int(x_shape[1])
    return channels if channels == groups == int(w_shape[0]) and int(w_shape[1]) == 1 else 0


def integer_convolutions(mod: tvm.IRModule, dot_product: DotKind | None = None,
                         float_dense: bool = False) -> tuple[tvm.IRModule, int, int]:
    """Rewrite dequantize→conv2d into integer conv2d + rescale, and dequantize→matmul alike. With
    `dot_product` (VNNI, sdot, NEON widening) dense convolutions use the packed form of backend/dot_product.py.
    With `float_dense` (Arm) a convolution the packed form cannot take (depthwise, or weights outside the
    kind's range) runs as float32 FMAs over the integers where those sums are exact. Returns (module, layers
    rewritten (convolutions and matmuls), convolutions on the packed form)."""
    rewriter = _IntegerConv(mod, dot_product, float_dense)
    out = rewrite_functions(rewriter, mod)
    if rewriter.rewritten:
        out = relax.transform.DeadCodeElimination()(out)
    return out, rewriter.rewritten, rewriter.on_dot_product


def quantized_value(value, inverse_scale: float, zero_point: int, out_dtype: str, neon: bool = False):
    """clip(round(value * inverse_scale) + zero_point) in out_dtype: TVM's quantize of one float32 value,
    with its division by the scale turned into a product. neon: as one saturating_round op, which AArch64
    builds turn into NEON's rounding conversion and saturating narrows (backend/saturating_round.py)."""
    scaled = value * tirx.const(inverse_scale, "float32")
    if neon:
        return saturating_round(scaled, zero_point, out_dtype)
    return plain_quantize(scaled, zero_point, tvm.DataType(out_dtype))


def _quantize_times_inverse(x, *, inverse_scale: float, zero_point: int, out_dtype: str, neon: bool):
    return te.compute(x.shape, lambda *i: quantized_value(x(*i), inverse_scale, zero_point, out_dtype, neon),
                      name="quantized")


def per_tensor_qparams(call) -> tuple[float, int] | None:
    """(scale, zero point) of a quantize or dequantize call whose scale and zero point are one constant each."""
    scale, zero_point = constant_value(call.args[1]), constant_value(call.args[2])
    if scale is None or zero_point is None or scale.size != 1 or zero_point.size != 1:
        return None
    return float(np.float32(scale.reshape(-1)[0])), int(zero_point.reshape(-1)[0])


def per_channel_qparams(call, channels: int) -> tuple[np.ndarray, np.ndarray | int] | None:
    """(scale float64 [C], zero point) of a quantize or dequantize of an NCHW tensor along axis 1 with
    `channels` constant scales and zero points, or None. The zero point is one int where all channels share
    it (a ReLU's output: 0), so the code keeps it an immediate; else int64 [C]."""
    scale, zero_point = constant_value(call.args[1]), constant_value(call.args[2])
    if scale is None or zero_point is None or scale.size != channels or zero_point.size != channels \
            or int(call.attrs.axis) not in (1, -3):
        return None
    zero_point = zero_point.reshape(-1).astype(np.int64)
    shared = int(zero_point[0]) if np.all(zero_point == zero_point[0]) else zero_point
    return scale.reshape(-1).astype(np.float32).astype(np.float64), shared


def reciprocal(scale: float) -> float:
    """The float32 reciprocal quantize multiplies by."""
    return float(np.float32(1) / np.float32(scale))


def _times_reciprocal(call, builder, neon: bool):
    qparams = per_tensor_qparams(call)
    out_dtype = str(call.attrs.out_dtype)
    if str(call.args[0].ty.dtype) != "float32" or qparams is None or out_dtype not in ("int8", "uint8"):
        return None
    scale, zero_point = qparams
    return builder.call_te(_quantize_times_inverse, call.args[0], inverse_scale=reciprocal(scale),
                           zero_point=zero_point, out_dtype=out_dtype, neon=neon, primfunc_name_hint="quantize")


def quantize_by_reciprocal(mod: tvm.IRModule, neon: bool = False) -> tuple[tvm.IRModule, int]:
    """Per-tensor quantizes multiply by the scale's float32 reciprocal instead of dividing by the scale.
    Every requantize in an int8 model is one, so each output element of each layer saves a vector division
    (pose, gesture, parsing int8 end to end 2.5 %, 8 %, 7 % faster). The result differs from the
    division only where x / scale lies within about one float32 ulp of a rounding boundary, by one step.
    neon: round and narrow as quantized_value(neon=True) does (AArch64 builds). Returns (module, quantizes
    rewritten)."""
    return rewrite_calls(mod, _QUANTIZE, lambda call, builder: _times_reciprocal(call, builder, neon))
