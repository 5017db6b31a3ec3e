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
from tvm import relax, topi
from tvm.relax.expr_functor import PyExprMutator, PyExprVisitor, mutator, visitor

from optkit.backend.rewrites.mutator import constant_value, rewrite_functions

_ADD = tvm.ir.Op.get("relax.add")
_CONV = tvm.ir.Op.get("relax.nn.conv2d")
_SLICE = tvm.ir.Op.get("relax.strided_slice")


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
        """A call of the conv, as TVM legalizes it (topi.nn.conv), with the bias as a third input its sums
        start from; None where the function as printed does not have the one zero initialisation this
        replaces."""
        attrs = conv.attrs

        def conv_taking_bias(data, kernel, _bias):      # _bias: the sums' start, set in the TIR below
            return topi.nn.conv(data, kernel, stride=[int(v) for v in attrs.strides],
                                padding=[int(v) for v in attrs.padding], dilation=[int(v) for v in attrs.dilation],
                                groups=int(attrs.groups), data_layout="NCHW", kernel_layout=str(attrs.kernel_layout))

        call = self.builder_.call_te(conv_taking_bias, conv.args[0], conv.args[1], bias,
                                     primfunc_name_hint="conv2d_from_bias")
        gv = call.args[0]
        func = self.builder_.get()[gv]
        # TVM 0.27's te.create_prim_func drops a reduction's `init`: the sums' start is set in the TIR itself.
        out, start = func.params[-1].name, func.params[2].name
        text = func.script()
        zero = f"{out}[v_nn, v_ff, v_yy, v_xx] = T.float32(0.0)"
        from_bias = f"{out}[v_nn, v_ff, v_yy, v_xx] = {start}[v_ff]"
        if text.count(from_bias) == 1 and zero not in text:
            return call     # an identical conv was rewritten already: the builder shares the function
        if text.count(zero) != 1:
            return None     # (the function it added is unused, and DCE removes it)
        self.builder_.update_func(gv, tvm.script.from_source(text.replace(zero, from_bias)).without_attr("global_symbol"))
        return call

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
