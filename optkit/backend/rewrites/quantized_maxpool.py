"""Max pooling of quantized tensors done on the integers (Arm builds).

In a QDQ model a MaxPool reads a DequantizeLinear output and a QuantizeLinear on the same grid (onnxruntime's
quantizer gives a MaxPool its input's scale and zero point) requantizes its result, so every element is
turned into float32, compared, and quantized back: parsing_hp's six pools were 30 M of its 113 M
instructions on a Cortex-A76 model, in 4-lane float vectors. Dequantizing is increasing, so

    quantize(max_pool(dequantize(q, s, z)), s, z)  ==  max_pool(q)

element for element: the maximum of the dequantized window is the dequantized maximum, and quantize(dequantize
(q)) is q ((q - z)·s times the float32 reciprocal of s lies within a few ulps of the integer q - z). The
integer pool pads with the type's least value where the float one pads with -inf; every real value is at
least that, so a window's maximum is the same, and a window of padding alone gives the least value either
way (-inf quantizes to it). onnxruntime runs such a QDQ MaxPool on the integers too.
"""

from __future__ import annotations

import tvm
from tvm import relax

from optkit.backend.rewrites.int8 import per_tensor_qparams
from optkit.backend.rewrites.mutator import bound_call, rewrite_calls

_MAX_POOL = tvm.ir.Op.get("relax.nn.max_pool2d")
_DEQUANTIZE = tvm.ir.Op.get("relax.dequantize")
_QUANTIZE = tvm.ir.Op.get("relax.quantize")
_INTEGERS = ("int8", "uint8")


def _integer_pool(quantize, builder):
    pool = bound_call(builder, quantize.args[0], _MAX_POOL)
    dequantize = bound_call(builder, pool.args[0], _DEQUANTIZE) if pool is not None else None
    if dequantize is None:
        return None
    qparams = per_tensor_qparams(quantize)
    integers = dequantize.args[0]
    out_dtype = str(quantize.attrs.out_dtype)
    if qparams is None or per_tensor_qparams(dequantize) != qparams or out_dtype not in _INTEGERS \
            or str(integers.ty.dtype) != out_dtype:
        return None
    attrs = pool.attrs
    return relax.op.nn.max_pool2d(integers, attrs.pool_size, attrs.strides, attrs.padding, attrs.dilation,
                                  bool(attrs.ceil_mode), bool(attrs.count_include_pad), attrs.layout,
                                  attrs.out_layout)


def quantized_max_pools(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Every per-tensor quantize of a max pool of per-tensor dequantized integers on the same grid, done as a
    max pool of the integers; returns the module and the pools rewritten."""
    out, rewritten = rewrite_calls(mod, _QUANTIZE, _integer_pool)
    if rewritten:
        out = relax.transform.DeadCodeElimination()(out)        # the float pools nothing else reads
    return out, rewritten
