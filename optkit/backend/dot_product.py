"""Integer convolutions on the CPU's dot-product instruction (x86 AVX-512 VNNI `vpdpbusd`).

One `vpdpbusd` multiplies 32 unsigned by 32 signed bytes and adds each group of four products into one of
8 int32 lanes: 32 multiply-adds, where an fp32 FMA of the same width does 8. To use it a convolution needs
four input channels of a pixel side by side in memory, and unsigned data with signed weights:

    data[n, c/4, y, phase, x/s, c%4]  uint8   the input repacked once per call (phases as in the
                                              fp32 rule: a stride-s row split into s contiguous phases);
                                              padding and missing channels hold the zero point
    weights[f, c/4, ky, kx, c%4]      int8    packed at compile time, output channels padded to 8
    acc[n, f, y, x] = sum data * weights - z_x * sum_c,ky,kx weights[f]   (int32, exact)

The lanes of one instruction are 8 neighbouring output pixels of one output channel, and the weight's four
bytes are broadcast to all of them, so the result is already in NCHW order. int8 activations are shifted to
uint8 by adding 128 (the zero point moves with them); the correction term makes the sum exact either way.

`dot_product_conv` builds the TE compute; the schedule rule (cpu_schedules.schedule_dot_conv) tiles it and
replaces its innermost 8 pixels x 4 channels with the instruction (tensorize with DOT_INTRIN).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

DOT_BLOCK = "conv2d_dot_u8s8"          # the reduction block the schedule rule looks for
PACK_BLOCK = "pack_u8x4"
DOT_INTRIN = "optkit_vpdpbusd_8x4"
PIXELS, GROUP = 8, 4                    # int32 lanes of one instruction, bytes summed into each lane


@T.prim_func(s_tir=True)
def _dot_description(A: T.Buffer((8, 4), "uint8", offset_factor=1), B: T.Buffer((4,), "int8", offset_factor=1),
                     C: T.Buffer((8,), "int32", offset_factor=1, scope="local")) -> None:
    with T.sblock("root"):
        T.reads(C[0:8], A[0:8, 0:4], B[0:4])
        T.writes(C[0:8])
        for i in T.serial(0, 8):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vi, vk], "int32") * T.cast(B[vk], "int32")


@T.prim_func(s_tir=True)
def _dot_vpdpbusd(A: T.Buffer((8, 4), "uint8", offset_factor=1), B: T.Buffer((4,), "int8", offset_factor=1),
                  C: T.Buffer((8,), "int32", offset_factor=1, scope="local")) -> None:
    with T.sblock("root"):
        T.reads(C[0:8], A[0:8, 0:4], B[0:4])
        T.writes(C[0:8])
        weights = T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"), 8), dtype="int8x32")
        C[T.ramp(T.int32(0), 1, 8)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.256"),
            C.vload([0], dtype="int32x8"), A.vload([0, 0], "uint8x32"), weights, dtype="int32x8")


TensorIntrin.register(DOT_INTRIN, _dot_description, _dot_vpdpbusd, override=True)


def has_dot_product(tvm_target) -> bool:
    """Whether the target CPU has 256-bit VNNI (AVX-512 VNNI with VL: Ice Lake and later, Zen 4)."""
    from tvm.target import codegen

    return str(tvm_target.kind.name) == "llvm" and all(
        codegen.target_has_features(f, tvm_target) for f in ("avx512vnni", "avx512vl"))


def pack_weights(w_q: np.ndarray, zero_point: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights [F8, C/4, KH, KW, 4] int8, correction [F8] int32) from OIHW int8 weights and the data's zero
    point (as uint8)."""
    f, c, kh, kw = w_q.shape
    f8, c4 = -(-f // PIXELS) * PIXELS, -(-c // GROUP)
    padded = np.zeros((f8, c4 * GROUP, kh, kw), np.int8)
    padded[:f, :c] = w_q
    packed = np.ascontiguousarray(padded.reshape(f8, c4, GROUP, kh, kw).transpose(0, 1, 3, 4, 2))
    correction = (zero_point * padded.astype(np.int64).sum(axis=(1, 2, 3))).astype(np.int32)
    return packed, correction


def dot_product_conv(x, weights, correction, *, zero_point: int, shift: int, strides, padding, dilation,
                     out_channels: int):
    """TE compute of the integer convolution (int32 NCHW output, zero point already subtracted). `x` is the
    uint8/int8 NCHW input, `shift` (0 or 128) what makes it uint8, `zero_point` the uint8 zero point."""
    n, c, h, w = (int(d) for d in x.shape)
    _, c4, kh, kw, _ = (int(d) for d in weights.shape)
    (sy, sx), (dy, dx) = strides, dilation
    top, left, bottom, right = padding
    out_h = (h + top + bottom - (kh - 1) * dy - 1) // sy + 1
    out_w = (w + left + right - (kw - 1) * dx - 1) // sx + 1
    padded_w = -(-out_w // PIXELS) * PIXELS          # whole 8-pixel vectors; the extra columns are dropped
    phase_w = max(-(-(w + left + right) // sx), padded_w + (kw - 1) * dx // sx)
    fill = tirx.const(zero_point, "uint8")

    def packed(nn, cc, yy, phase, xx, k):
        channel, column = cc * GROUP + k, xx * sx + phase
        inside = tirx.all(channel < c, yy >= top, yy < h + top, column >= left, column < w + left)
        value = x[nn, tirx.min(channel, c - 1), tirx.max(tirx.min(yy - top, h - 1), 0),
                  tirx.max(tirx.min(column - left, w - 1), 0)]
        value = (value.astype("int16") + shift).astype("uint8") if shift else value
        return tirx.if_then_else(inside, value, fill)

    data = te.compute((n, c4, h + top + bottom, sx, phase_w, GROUP), packed, name=PACK_BLOCK)
    rc, ry, rx, rk = (te.reduce_axis((0, e), name) for e, name in ((c4, "rc"), (kh, "ry"), (kw, "rx"), (GROUP, "rk")))
    acc = te.compute((n, int(weights.shape[0]), out_h, padded_w), lambda nn, ff, yy, xx: te.sum(
        data[nn, rc, yy * sy + ry * dy, (rx * dx) % sx, xx + (rx * dx) // sx, rk].astype("int32")
        * weights[ff, rc, ry, rx, rk].astype("int32"), axis=[rc, ry, rx, rk]), name=DOT_BLOCK)
    return te.compute((n, out_channels, out_h, out_w),
                      lambda nn, ff, yy, xx: acc[nn, ff, yy, xx] - correction[ff], name="subtract_zero_point")
