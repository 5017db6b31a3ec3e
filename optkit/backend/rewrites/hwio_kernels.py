"""Dense float convolutions with their constant weights stored HWIO (input channel, then output channel
innermost) instead of ONNX's OIHW.

The default convolution schedule (backend/schedules.py) keeps a tile of output channels x output columns in
registers and, for each input channel, multiplies one input row vector by each of the tile's weights. In
OIHW those weights lie a whole filter apart, one scalar load each; in HWIO they are contiguous, so NEON
loads them as one or two vectors and multiplies by lane (`fmla v.4s, v.4s, v.s[i]`). The weights are
constants, transposed once at compile time; the sums are the same, in the same order.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from optkit.backend.rewrites.mutator import constant_value, rewrite_calls

_CONV = tvm.ir.Op.get("relax.nn.conv2d")


def _hwio(call, _builder):
    attrs = call.attrs
    if (attrs.kernel_layout != "OIHW" or attrs.data_layout != "NCHW" or int(attrs.groups) != 1
            or str(call.ty.dtype) != "float32"):
        return None
    weights = constant_value(call.args[1])
    if weights is None or weights.ndim != 4:
        return None
    return relax.op.nn.conv2d(call.args[0], relax.const(np.ascontiguousarray(weights.transpose(2, 3, 1, 0))),
                              strides=attrs.strides, padding=attrs.padding, dilation=attrs.dilation, groups=1,
                              data_layout="NCHW", kernel_layout="HWIO", out_layout=attrs.out_layout,
                              out_dtype=attrs.out_dtype)


def hwio_kernels(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Every float32 NCHW conv2d with one group and constant OIHW weights given HWIO weights; returns the
    module and the count rewritten."""
    return rewrite_calls(mod, _CONV, _hwio)
