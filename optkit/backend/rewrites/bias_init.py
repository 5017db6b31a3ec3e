"""A float convolution followed by a per-channel constant bias (`add(conv2d(x, W), b)`, also through the crop
of backend/rewrites/padded_rows.py) as one convolution whose sums start from the bias.

TVM computes the sums from zero and adds the bias in the epilogue: on NEON, one `movi` to clear each vector
of accumulators and one `fadd` per vector afterwards. Started from the bias, the clearing becomes a copy of
the bias and the addition disappears. The sums are the same terms added in another order (the bias first),
so results agree with the original to float32 rounding, as the validation against onnxruntime checks.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import tvm
from tvm import relax, te, topi
from tvm.relax.expr_functor import PyExprMutator, PyExprVisitor, mutator, visitor

from optkit.backend.rewrites.mutator import constant_value, rewrite_functions

_ADD = tvm.ir.Op.get("relax.add")
_CONV = tvm.ir.Op.get("relax.nn.conv2d")
_SLICE = tvm.ir.Op.get("relax.strided_slice")


def conv2d_nchw(data, kernel, strides, padding, dilation, groups: int, kernel_layout: str):
    """topi's NCHW conv2d as TE, with the same stage names, loops and reads (the CPU schedules rely on them)."""
    _, channels, _, _ = (int(d) for d in data.shape)
    if kernel_layout == "HWIO":
        kh, kw, group_channels, filters = (int(d) for d in kernel.shape)
        weight = lambda f, c, y, x: kernel[y, x, c, f]  # noqa: E731
    else:
        filters, group_channels, kh, kw = (int(d) for d in kernel.shape)
        weight = lambda f, c, y, x: kernel[f, c, y, x]  # noqa: E731
    (sh, sw), (dh, dw) = strides, dilation
    top, left, bottom, right = padding
    padded = topi.nn.pad(data, [0, 0, top, left], [0, 0, bottom, right], name="pad_temp")
    height = (int(data.shape[2]) + top + bottom - (kh - 1) * dh - 1) // sh + 1
    width = (int(data.shape[3]) + left + right - (kw - 1) * dw - 1) // sw + 1
    rc = te.reduce_axis((0, group_channels), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def compute(nn, ff, yy, xx):
        channel = rc if groups == 1 else ff // (filters // groups) * (channels // groups) + rc
        return te.sum(padded[nn, channel, yy * sh + ry * dh, xx * sw + rx * dw] * weight(ff, rc, ry, rx),
                      axis=[rc, ry, rx])

    name = "group_conv2d_nchw" if groups > 1 else "conv2d_nchw"
    shape = [tvm.tirx.IntImm("int64", d) for d in (int(data.shape[0]), filters, height, width)]
    return te.compute(shape, compute, name=name, tag=name,
                      varargs_names=["nn", "ff", "yy", "xx"])


def _ints(expr) -> list[int] | None:
    """The integers of a Relax tuple of constants (strided_slice's axes and bounds), or None."""
    if not isinstance(expr, relax.Tuple):
        return None
    try:
        return [int(v.value) for v in expr.fields]
    except (AttributeError, TypeError):
        return None


@visitor
class _VarUses(PyExprVisitor):
    def __init__(self):
        super().__init__()
        self.uses = Counter()

    def visit_var_(self, var):
        self.uses[var] += 1

    def visit_dataflow_var_(self, var):
        self.uses[var] += 1


@mutator
class _BiasRewriter(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, uses: Counter):
        super().__init__(mod)
        self.uses, self.rewritten = uses, 0

    def _bound(self, expr, op):
        """The call of `op` that `expr`, a variable read only here, is bound to; else None."""
        if not isinstance(expr, relax.Var) or self.uses[expr] != 1:
            return None
        value = self.lookup_binding(expr)
        return value if isinstance(value, relax.Call) and value.op == op else None

    def _conv(self, call):
        """(conv2d call, crop width or None) feeding `call`'s argument, directly or through a column crop."""
        conv = self._bound(call, _CONV)
        if conv is not None:
            return conv, None
        crop = self._bound(call, _SLICE)
        if crop is None or len(crop.args) != 4 or _ints(crop.args[1]) != [3] or _ints(crop.args[2]) != [0]:
            return None
        conv = self._bound(crop.args[0], _CONV)
        return (conv, int(crop.ty.shape[3])) if conv is not None else None

    def _conv_call(self, conv, bias):
        """A call of the conv, with the bias as a third input its sums start from; None where the function as
        printed does not have the one zero initialisation this replaces."""
        attrs = conv.attrs
        args = [conv.args[0], conv.args[1], bias]
        tensors = [te.placeholder(list(a.ty.shape), "float32", name=n) for a, n in zip(args, "xwb")]
        out = conv2d_nchw(*tensors[:2], strides=[int(s) for s in attrs.strides],
                          padding=[int(p) for p in attrs.padding], dilation=[int(d) for d in attrs.dilation],
                          groups=int(attrs.groups), kernel_layout=str(attrs.kernel_layout))
        # TVM 0.27's te.create_prim_func drops a reduction's `init`: the sums' start is set in the TIR itself.
        text = te.create_prim_func([*tensors, out]).script()
        zero = f"{out.op.name}[v_nn, v_ff, v_yy, v_xx] = T.float32(0.0)"
        if text.count(zero) != 1:
            return None
        func = tvm.script.from_source(text.replace(zero, f"{out.op.name}[v_nn, v_ff, v_yy, v_xx] = b[v_ff]"))
        return relax.call_tir(self.builder_.add_func(func.without_attr("global_symbol"), "conv2d_from_bias"),
                              args, out_ty=conv.ty)

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if not (isinstance(call, relax.Call) and call.op == _ADD):
            return call
        for operand, other in ((call.args[0], call.args[1]), (call.args[1], call.args[0])):
            bias, found = constant_value(other), self._conv(operand)
            if bias is None or found is None:
                continue
            conv, crop = found
            attrs = conv.attrs
            filters = int(conv.ty.shape[1])
            if (attrs.data_layout != "NCHW" or attrs.out_layout != "NCHW" or str(conv.ty.dtype) != "float32"
                    or attrs.kernel_layout not in ("OIHW", "HWIO") or bias.dtype != np.float32
                    or bias.size != filters or bias.shape not in ((1, filters, 1, 1), (filters, 1, 1))):
                continue
            biased = self._conv_call(conv, relax.const(bias.reshape(filters)))
            if biased is None:
                continue
            self.rewritten += 1
            if crop is None:
                return biased         # the add's own binding (an alias of a new one would stop fusion)
            return relax.op.strided_slice(self.builder_.emit(biased), axes=[3], begin=[0], end=[crop])
        return call


def bias_in_accumulators(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Every float32 NCHW conv2d (OIHW or HWIO weights, any groups) whose only reader adds a constant
    per-channel bias, directly or after a column crop, computed from the bias; returns the module and the
    count rewritten."""
    uses = _VarUses()
    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            uses.visit_expr(func)
    rewriter = _BiasRewriter(mod, uses.uses)
    mod = rewrite_functions(rewriter, mod)
    if rewriter.rewritten:
        mod = relax.transform.DeadCodeElimination()(mod)
    return mod, rewriter.rewritten
