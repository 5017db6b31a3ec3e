"""Convolutions computed on output rows padded to whole SIMD vectors, then cropped.

A convolution's default schedule (backend/schedules.py) vectorizes along the output row. A row that is not
a multiple of the SIMD width (14 or 7 columns, the late layers of every 224-input mobile net) leaves a
predicated last tile, which NEON has no masked loads for: LLVM emits it as branches around single lanes,
and keeps spilling the tile's accumulators. This rewrite pads such a convolution's right edge with zero
columns so that its output row is a whole number of vectors, and crops the extra columns after it:

    conv2d(x, W, padding=[t, l, b, r]) -> strided_slice(conv2d(x, W, padding=[t, l, b, r + e*s]), cols [0, Wo))

The padded columns read only the zero padding, the kept ones are the same sums as before, so the result is
exact. The crop is one copy of the output (fused with the bias and activation after it).
"""

from __future__ import annotations

import tvm
from tvm import relax

from optkit.backend.rewrites.mutator import rewrite_calls

_CONV = tvm.ir.Op.get("relax.nn.conv2d")


def _padded(call, builder, lanes: int):
    attrs = call.attrs
    if attrs.data_layout != "NCHW" or attrs.out_layout != "NCHW" or str(call.ty.dtype) != "float32":
        return None
    shape = call.ty.shape
    if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape.values):
        return None
    width = int(shape.values[3])
    extra = -width % lanes
    if extra == 0 or width < lanes:
        return None
    top, left, bottom, right = (int(p) for p in attrs.padding)
    stride = int(attrs.strides[1])
    wide = builder.emit(relax.op.nn.conv2d(
        call.args[0], call.args[1], strides=attrs.strides, padding=[top, left, bottom, right + extra * stride],
        dilation=attrs.dilation, groups=attrs.groups, data_layout="NCHW", kernel_layout=attrs.kernel_layout,
        out_dtype=attrs.out_dtype))
    return relax.op.strided_slice(wide, axes=[3], begin=[0], end=[width])


def padded_rows(mod: tvm.IRModule, lanes: int) -> tuple[tvm.IRModule, int]:
    """Every float32 NCHW conv2d whose static output width is not a multiple of `lanes` (and at least one
    vector wide) computed on padded rows and cropped; returns the module and the count rewritten."""
    return rewrite_calls(mod, _CONV, lambda call, builder: _padded(call, builder, lanes))
