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
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

_CONV = tvm.ir.Op.get("relax.nn.conv2d")
_DEQUANTIZE = tvm.ir.Op.get("relax.dequantize")


def _const(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.GenericConst) and hasattr(expr.value, "numpy") else None


@mutator
class _IntegerConv(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.mod_ = mod
        self.rewritten = 0
        self.skipped: list[str] = []

    def transform(self) -> tvm.IRModule:
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()

    def _dequantize_of(self, expr):
        if isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            if isinstance(bound, tvm.ir.Call) and bound.op == _DEQUANTIZE:
                return bound
        return None

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if call.op != _CONV:
            return call
        dq_x, dq_w = self._dequantize_of(call.args[0]), self._dequantize_of(call.args[1])
        if dq_x is None or dq_w is None:
            return call
        attrs = call.attrs
        if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW":
            return call
        x_q, s_x, z_x = dq_x.args
        w_q, s_w, z_w = (_const(a) if k else a for k, a in enumerate(dq_w.args))
        w_q = _const(dq_w.args[0])
        s_x, z_x = _const(s_x), _const(z_x)
        if w_q is None or s_w is None or s_x is None or z_x is None or z_w is None:
            return call
        if w_q.dtype != np.int8 or np.any(z_w != 0) or s_x.size != 1 or z_x.size != 1:
            return call
        if str(x_q.ty.dtype) not in ("int8", "uint8"):
            return call
        cout = w_q.shape[0]
        s_w = np.broadcast_to(s_w.astype(np.float64), (cout,)) if s_w.size in (1, cout) else None
        if s_w is None or (s_w.size == cout and s_w.ndim == 1 and int(dq_w.attrs.axis) not in (0, -4) and cout > 1):
            return call
        x_int = self.builder_.emit(relax.op.astype(x_q, "int16"))
        if int(z_x.reshape(-1)[0]) != 0:
            x_int = self.builder_.emit(relax.op.subtract(x_int, relax.const(np.int16(z_x.reshape(-1)[0]))))
        acc = self.builder_.emit(relax.op.nn.conv2d(
            x_int, relax.const(w_q), strides=attrs.strides, padding=attrs.padding, dilation=attrs.dilation,
            groups=attrs.groups, data_layout="NCHW", kernel_layout="OIHW", out_dtype="int32"))
        scale = (float(s_x.reshape(-1)[0]) * s_w).astype(np.float32).reshape(1, cout, 1, 1)
        self.rewritten += 1
        return relax.op.multiply(self.builder_.emit(relax.op.astype(acc, "float32")), relax.const(scale))


def integer_convolutions(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Rewrite dequantize→conv2d into integer conv2d + rescale; returns the module and the count."""
    rewriter = _IntegerConv(mod)
    out = rewriter.transform()
    if rewriter.rewritten:
        out = relax.transform.DeadCodeElimination()(out)
    return out, rewriter.rewritten

