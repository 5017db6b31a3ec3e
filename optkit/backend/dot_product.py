"""Integer convolutions on the CPU's dot-product instruction: x86 AVX-512 VNNI `vpdpbusd` and Arm's
ARMv8.2 `sdot` (Cortex-A55/A75/A76 and later, Apple cores), and the same contract on plain NEON (Cortex-A53,
A72) from widening multiplies (`smull`, `smlal`, `sadalp`).

One instruction multiplies bytes pairwise and adds each group of four products into one int32 lane:
`vpdpbusd` (256-bit) 32 unsigned x 32 signed bytes into 8 lanes, `sdot` (128-bit) 16 x 16 signed bytes into
4 lanes; an fp32 FMA of the same width does a quarter of the multiply-adds. To use it a convolution needs
four input channels of a pixel side by side in memory, in the data type the instruction takes:

    data[n, c/4, y, phase, x/s, c%4]  u8/s8   the input repacked once per call (phases as in the
                                              fp32 rule: a stride-s row split into s contiguous phases);
                                              padding and missing channels hold the zero point
    weights[f, c/4, ky, kx, c%4]      int8    packed at compile time, output channels padded to 8 (sdot:
                                              [f/8, c/4, ky, kx, f%8, c%4], a tile's 8 channels side by side;
                                              the channel-pair kind's tile is 4 channels, padded to 4)
    acc[n, f, y, x] = sum data * weights - z_x * sum_c,ky,kx weights[f]   (int32, exact)

(the Arm kinds start the sum at -z_x * sum weights[f], broadcast into the tile's accumulators, instead of
subtracting it from every output: one instruction fewer per 4 outputs.)

The lanes of one instruction are neighbouring output pixels of one output channel (8 for VNNI, 4 for sdot),
and the weight's four bytes are broadcast to all of them, so the result is already in NCHW order (Arm's
sdot reads the 8 channels' weights as two vectors and each instruction takes its channel's lane: pose on a
Cortex-A76 model 177.1 -> 152.8 M instructions, against a load and an address per channel before). Data is
shifted by 128 where its type differs from the instruction's (int8 to uint8 for VNNI, uint8 to int8 for
sdot; the zero point moves with it); the correction term makes the sum exact either way.

Without a dot product (Cortex-A53/A72) the same packed layout, two channel groups at a time, feeds 6 NEON
instructions per 32 multiply-adds (WIDENING): pose on a Cortex-A72 model ran 392 M instructions with these
convolutions as exact float32 FMAs, 313 M one group at a time (8 per 32), 229 M so.

`dot_product_conv` builds the TE compute; the schedule rule (schedules.schedule_dot_conv) tiles it and
replaces its innermost pixels x 4 channels with the instruction (tensorize with the kind's intrinsic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import ir, te, tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from optkit.backend.pair_sum import pair_sum

GROUP = 4                               # bytes summed into each int32 lane


@dataclass(frozen=True)
class DotKind:
    """One dot-product instruction: its int32 lanes, the data type it multiplies, and the names of the
    blocks that use it (the VNNI names predate the Arm kind: tuning records match them)."""

    name: str
    pixels: int             # int32 lanes of one instruction: output pixels per instruction
    data_dtype: str         # what the data is packed as (weights are int8 for both)
    intrin: str             # the TensorIntrin the schedule tensorizes with
    block: str              # the reduction block the schedule rule looks for
    pack_block: str
    min_weight: int = -128  # weights below it do not fit the kind's arithmetic (that layer keeps another form)
    channels: int = 1       # output channels per tensorized call (8: weights read as vectors, one lane each)
    correction_in_init: bool = False    # the accumulator starts at -correction (no subtraction after the sum)
    channel_pairs: bool = False         # two channel groups per call, each pixel's sum in 2 int32 lanes
    channel_tile: int = 8   # output channels of a register tile; they are padded to a multiple of it


VNNI = DotKind("vnni", 8, "uint8", "optkit_vpdpbusd_8x4", "conv2d_dot_u8s8", "pack_u8x4")
SDOT = DotKind("sdot", 4, "int8", "optkit_sdot_8x4x4", "conv2d_dot_s8s8", "pack_s8x4", channels=8,
               correction_in_init=True)
WIDENING = DotKind("smull", 4, "int8", "optkit_smull_4x2x8", "conv2d_smull_s8s8", "pack_s8x4_smull", min_weight=-127,
                   channel_pairs=True, channel_tile=4)
KINDS = (VNNI, SDOT, WIDENING)
DOT_BLOCKS = tuple(k.block for k in KINDS)
PACK_BLOCKS = tuple(k.pack_block for k in KINDS)
PIXELS = VNNI.pixels        # the widest kind: output channels are padded to it


def _repeated(weights, copies: int):
    """The 4 weight bytes repeated `copies` times as one int8 vector. Intrinsic bodies are single expressions:
    a name bound inside one becomes a local buffer TVM allocates per call (pose on a Cortex-A72 model: 392 ->
    313 M instructions, 24 M of them in the runtime's workspace allocator)."""
    return T.reinterpret(T.broadcast(T.reinterpret(weights.vload([0], "int8x4"), dtype="int32"), copies),
                         dtype=f"int8x{4 * copies}")


def _pixels_description(lanes: int, data: str):
    """`lanes` int32 lanes, each += the dot product of 4 data bytes (one pixel's 4 channels) with the same 4
    weight bytes."""

    @T.prim_func(s_tir=True)
    def description(A: T.Buffer((lanes, 4), data, offset_factor=1), B: T.Buffer((4,), "int8", offset_factor=1),
                    C: T.Buffer((lanes,), "int32", offset_factor=1, scope="global")) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:lanes, 0:4], B[0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vi, vk], "int32") * T.cast(B[vk], "int32")

    return description


def _register(kind: DotKind, llvm_intrinsic: str) -> None:
    """The kind's tensor intrinsic: `pixels` int32 lanes, each += the dot product of 4 data bytes (one pixel's
    4 channels) with the same 4 weight bytes, broadcast to every lane."""
    lanes, data = kind.pixels, kind.data_dtype
    data_vector, acc_vector = f"{data}x{4 * lanes}", f"int32x{lanes}"

    @T.prim_func(s_tir=True)
    def implementation(A: T.Buffer((lanes, 4), data, offset_factor=1), B: T.Buffer((4,), "int8", offset_factor=1),
                       C: T.Buffer((lanes,), "int32", offset_factor=1, scope="global")) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:lanes, 0:4], B[0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_intrinsic),
                C.vload([0], dtype=acc_vector), A.vload([0, 0], data_vector), _repeated(B, lanes), dtype=acc_vector)

    TensorIntrin.register(kind.intrin, _pixels_description(lanes, data), implementation, override=True)


_register(VNNI, "llvm.x86.avx512.vpdpbusd.256")


def _lane(B, channel: int):
    """Weight row `channel` of B (8 rows of 4 bytes) as lane `channel % 4` of a 16-byte vector of 4 rows,
    repeated: the form LLVM turns into sdot's indexed operand (`sdot v.4s, v.16b, v.4b[i]`), so 8 rows cost two
    vector loads instead of a load and an address per row."""
    rows = T.reinterpret(B.vload([channel // 4 * 4, 0], "int8x16"), dtype="int32x4")
    return T.reinterpret(T.Shuffle([rows], [channel % 4] * 4), dtype="int8x16")


def _sdot_row(A, B, C, channel: int):
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
                                   C.vload([channel, 0, 0], dtype="int32x4"), A.vload([0, 0], "int8x16"), _lane(B, channel),
                                   dtype="int32x4")


def _register_sdot() -> None:
    """Arm's dot product on 8 output channels x 4 pixels x 4 input channels (C: channels x 1 row x pixels of the
    NCHW accumulator): one `sdot` per channel, its weights a lane of the 32 bytes the 8 channels' weights take
    side by side (pack_weights' layout). The description and the implementation declare the same buffers, as
    TVMScript requires."""

    @T.prim_func(s_tir=True)
    def description(a: T.handle, b: T.handle, c: T.handle) -> None:
        channel_stride, row_stride = T.int32(), T.int32()
        A = T.match_buffer(a, (4, 4), "int8", offset_factor=1)
        B = T.match_buffer(b, (8, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (8, 1, 4), "int32", offset_factor=1, strides=[channel_stride, row_stride, 1], scope="global")
        with T.sblock("root"):
            T.reads(C[0:8, 0:1, 0:4], A[0:4, 0:4], B[0:8, 0:4])
            T.writes(C[0:8, 0:1, 0:4])
            for j, i, k in T.grid(8, 4, 4):
                with T.sblock("update"):
                    vj, vi, vk = T.axis.remap("SSR", [j, i, k])
                    C[vj, 0, vi] = C[vj, 0, vi] + T.cast(A[vi, vk], "int32") * T.cast(B[vj, vk], "int32")

    @T.prim_func(s_tir=True)
    def implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
        channel_stride, row_stride = T.int32(), T.int32()
        A = T.match_buffer(a, (4, 4), "int8", offset_factor=1)
        B = T.match_buffer(b, (8, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (8, 1, 4), "int32", offset_factor=1, strides=[channel_stride, row_stride, 1], scope="global")
        with T.sblock("root"):
            T.reads(C[0:8, 0:1, 0:4], A[0:4, 0:4], B[0:8, 0:4])
            T.writes(C[0:8, 0:1, 0:4])
            C[0, 0, T.ramp(T.int32(0), 1, 4)] = _sdot_row(A, B, C, 0)
            C[1, 0, T.ramp(T.int32(0), 1, 4)] = _sdot_row(A, B, C, 1)
            C[2, 0, T.ramp(T.int32(0), 1, 4)] = _sdot_row(A, B, C, 2)
            C[3, 0, T.ramp(T.int32(0), 1, 4)] = _sdot_row(A, B, C, 3)
            C[4, 0, T.ramp(T.int32(0), 1, 4)] = _sdot_row(A, B, C, 4)
            C[5, 0, T.ramp(T.int32(0), 1, 4)] = _sdot_row(A, B, C, 5)
            C[6, 0, T.ramp(T.int32(0), 1, 4)] = _sdot_row(A, B, C, 6)
            C[7, 0, T.ramp(T.int32(0), 1, 4)] = _sdot_row(A, B, C, 7)

    TensorIntrin.register(SDOT.intrin, description, implementation, override=True)


_register_sdot()

START_INTRIN = "optkit_start_8x4"


def _start_lane(S, channel: int):
    return T.Shuffle([S.vload([channel // 4 * 4], "int32x4")], [channel % 4] * 4)


def _register_start() -> None:
    """An sdot tile's accumulators set to their channels' start (8 channels x 4 pixels): the 8 starts as two
    vector loads, each channel's lane broadcast (`dup`), instead of a load and an address per channel."""

    @T.prim_func(s_tir=True)
    def description(s: T.handle, c: T.handle) -> None:
        channel_stride, row_stride = T.int32(), T.int32()
        S = T.match_buffer(s, (8,), "int32", offset_factor=1)
        C = T.match_buffer(c, (8, 1, 4), "int32", offset_factor=1, strides=[channel_stride, row_stride, 1], scope="global")
        with T.sblock("root"):
            T.reads(S[0:8])
            T.writes(C[0:8, 0:1, 0:4])
            for j, i in T.grid(8, 4):
                with T.sblock("init"):
                    vj, vi = T.axis.remap("SS", [j, i])
                    C[vj, 0, vi] = S[vj]

    @T.prim_func(s_tir=True)
    def implementation(s: T.handle, c: T.handle) -> None:
        channel_stride, row_stride = T.int32(), T.int32()
        S = T.match_buffer(s, (8,), "int32", offset_factor=1)
        C = T.match_buffer(c, (8, 1, 4), "int32", offset_factor=1, strides=[channel_stride, row_stride, 1], scope="global")
        with T.sblock("root"):
            T.reads(S[0:8])
            T.writes(C[0:8, 0:1, 0:4])
            C[0, 0, T.ramp(T.int32(0), 1, 4)] = _start_lane(S, 0)
            C[1, 0, T.ramp(T.int32(0), 1, 4)] = _start_lane(S, 1)
            C[2, 0, T.ramp(T.int32(0), 1, 4)] = _start_lane(S, 2)
            C[3, 0, T.ramp(T.int32(0), 1, 4)] = _start_lane(S, 3)
            C[4, 0, T.ramp(T.int32(0), 1, 4)] = _start_lane(S, 4)
            C[5, 0, T.ramp(T.int32(0), 1, 4)] = _start_lane(S, 5)
            C[6, 0, T.ramp(T.int32(0), 1, 4)] = _start_lane(S, 6)
            C[7, 0, T.ramp(T.int32(0), 1, 4)] = _start_lane(S, 7)

    TensorIntrin.register(START_INTRIN, description, implementation, override=True)


_register_start()


def _neon(name, *args, dtype):
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(name), *args, dtype=dtype)


def _pair_products(A, B, high: bool):
    """int16 lanes of pixels 0-1 (or 2-3) x 4 channels: group 0's products plus group 1's (smull, smlal; exact
    in int16 while the weights avoid -128). Each group's 4 weight bytes are stored four times (pack_weights):
    one 16-byte load feeds both halves, smull and smull2, with no `ext` of the data (parsing on a Cortex-A72
    model 111.0 -> 107.3 M; its library 1.40 -> 1.93 MB). The declared region is the first 4 bytes."""
    half = T.vectorhigh if high else T.vectorlow
    return (_neon("llvm.aarch64.neon.smull.v8i16", half(A.vload([0, 0, 0, 0, 0], "int8x16"), dtype="int8x8"),
                  half(B.vload([0, 0], "int8x16"), dtype="int8x8"), dtype="int16x8")
            + _neon("llvm.aarch64.neon.smull.v8i16", half(A.vload([1, 0, 0, 0, 0], "int8x16"), dtype="int8x8"),
                    half(B.vload([1, 0], "int8x16"), dtype="int8x8"), dtype="int16x8"))


def _register_widening() -> None:
    """SDOT's contract on plain NEON (Cortex-A53/A72), two channel groups at a time: smull + smlal (and their
    high halves) give each pixel's 4 channel pairs in int16, sadalp adds neighbouring pairs into 2 int32 lanes
    per pixel (C[2 * pixel + half]); the conv sums the two lanes once, after the reduction. 6 instructions for 32
    multiply-adds (one group at a time, smull + smull2 + addp + sadalp: 8)."""

    @T.prim_func(s_tir=True)
    def description(a: T.handle, b: T.handle, c: T.handle) -> None:
        a_group, a_row, a_phase = T.int32(), T.int32(), T.int32()
        A = T.match_buffer(a, (2, 1, 1, 4, 4), "int8", offset_factor=1, strides=[a_group, a_row, a_phase, 4, 1])
        B = T.match_buffer(b, (2, 4), "int8", offset_factor=1, strides=[16, 1])
        C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2, 0:1, 0:1, 0:4, 0:4], B[0:2, 0:4])
            T.writes(C[0:8])
            for j, q, k in T.grid(8, 2, 2):
                with T.sblock("update"):
                    vj, vq, vk = T.axis.remap("SRR", [j, q, k])
                    C[vj] = C[vj] + (T.cast(A[vq, 0, 0, vj // 2, vj % 2 * 2 + vk], "int32")
                                     * T.cast(B[vq, vj % 2 * 2 + vk], "int32"))

    @T.prim_func(s_tir=True)
    def implementation(a: T.handle, b: T.handle, c: T.handle) -> None:
        a_group, a_row, a_phase = T.int32(), T.int32(), T.int32()
        A = T.match_buffer(a, (2, 1, 1, 4, 4), "int8", offset_factor=1, strides=[a_group, a_row, a_phase, 4, 1])
        B = T.match_buffer(b, (2, 4), "int8", offset_factor=1, strides=[16, 1])
        C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2, 0:1, 0:1, 0:4, 0:4], B[0:2, 0:4])
            T.writes(C[0:8])
            C[T.ramp(T.int32(0), 1, 4)] = C.vload([0], dtype="int32x4") + _neon(
                "llvm.aarch64.neon.saddlp.v4i32.v8i16", _pair_products(A, B, False), dtype="int32x4")
            C[T.ramp(T.int32(4), 1, 4)] = C.vload([4], dtype="int32x4") + _neon(
                "llvm.aarch64.neon.saddlp.v4i32.v8i16", _pair_products(A, B, True), dtype="int32x4")

    TensorIntrin.register(WIDENING.intrin, description, implementation, override=True)


_register_widening()


def dot_product_kind(tvm_target) -> DotKind | None:
    """The dot-product instruction the target CPU has: 256-bit VNNI (AVX-512 VNNI with VL: Ice Lake and
    later, Zen 4), Arm's dot product (`+dotprod`: ARMv8.2 cores from the A55/A75 on), or None."""
    from tvm.target import codegen

    if str(tvm_target.kind.name) != "llvm":
        return None
    if all(codegen.target_has_features(f, tvm_target) for f in ("avx512vnni", "avx512vl")):
        return VNNI
    if is_arm64(tvm_target):
        return SDOT if codegen.target_has_features("dotprod", tvm_target) else WIDENING
    return None


def is_arm64(tvm_target) -> bool:
    return str(tvm_target.attrs.get("mtriple", "")).startswith(("aarch64", "arm64"))


def has_dot_product(tvm_target) -> bool:
    return dot_product_kind(tvm_target) is not None


def kind_of_block(name: str) -> DotKind | None:
    return next((k for k in KINDS if name.startswith(k.block)), None)


def pack_weights(w_q: np.ndarray, zero_point: int, kind: DotKind) -> tuple[np.ndarray, np.ndarray]:
    """(weights [F8, C/4, KH, KW, 4] int8, or [F8/8, C/4, KH, KW, 8, 4] for a kind that takes 8 channels per
    call, or the channel-pair kind's [F4/4, C/8, KH, KW, 4, 2, 16]; correction [F8] (F4) int32: z_x * the
    channel's weight sum, negated for a kind whose accumulator starts at it) from OIHW int8 weights and the
    data's zero point (in the data type the instruction takes). Output channels are padded to the kind's
    register tile. The other kinds keep the first layout: the host's shipped tuning records are for it."""
    f, c, kh, kw = w_q.shape
    tile = kind.channel_tile
    f8, c4 = -(-f // tile) * tile, -(-c // GROUP)
    c4 += c4 % 2 if kind.channel_pairs else 0
    padded = np.zeros((f8, c4 * GROUP, kh, kw), np.int8)
    padded[:f, :c] = w_q
    grouped = padded.reshape(f8 // tile, tile, c4, GROUP, kh, kw)
    if kind.channel_pairs:      # [F4/4, C/8, KH, KW, 4, 2, 4 x 4]: a tile step's 4 channels x 2 groups, repeated
        pairs = grouped.reshape(f8 // tile, tile, c4 // 2, 2, GROUP, kh, kw).transpose(0, 2, 5, 6, 1, 3, 4)
        packed = np.ascontiguousarray(np.concatenate([pairs] * 4, axis=-1))
    else:
        packed = np.ascontiguousarray(grouped.transpose(0, 2, 4, 5, 1, 3) if kind.channels > 1
                                      else grouped.reshape(f8, c4, GROUP, kh, kw).transpose(0, 1, 3, 4, 2))
    correction = (zero_point * padded.astype(np.int64).sum(axis=(1, 2, 3))).astype(np.int32)
    return packed, -correction if kind.correction_in_init else correction


def dot_product_conv(x, weights, correction, *, zero_point: int, shift: int, strides, padding, dilation,
                     out_channels: int, kind: str = VNNI.name):
    """TE compute of the integer convolution (int32 NCHW output, zero point already subtracted). `x` is the
    uint8/int8 NCHW input, `shift` (0 or +-128) what makes it the kind's data type, `zero_point` the zero
    point in that type."""
    kind = next(k for k in KINDS if k.name == kind)
    n, c, h, w = (int(d) for d in x.shape)
    if kind.channel_pairs:
        f_blocks, c8, kh, kw, tile, _, _ = (int(d) for d in weights.shape)
        f8, c4 = f_blocks * tile, c8 * 2

        def weight(ff, rc, ry, rx, rk):
            return weights[ff // tile, rc // 2, ry, rx, ff % tile, rc % 2, rk]
    elif kind.channels > 1:
        f_blocks, c4, kh, kw, _, _ = (int(d) for d in weights.shape)
        f8 = f_blocks * PIXELS

        def weight(ff, rc, ry, rx, rk):
            return weights[ff // PIXELS, rc, ry, rx, ff % PIXELS, rk]
    else:
        f8, c4, kh, kw, _ = (int(d) for d in weights.shape)

        def weight(ff, rc, ry, rx, rk):
            return weights[ff, rc, ry, rx, rk]
    (sy, sx), (dy, dx) = strides, dilation
    top, left, bottom, right = padding
    out_h = (h + top + bottom - (kh - 1) * dy - 1) // sy + 1
    out_w = (w + left + right - (kw - 1) * dx - 1) // sx + 1
    # Whole instructions' pixels (Arm: 4; a 20-wide row computed 24 when it was rounded to VNNI's 8: pose
    # on a Cortex-A76 model 116.8 -> 115.6 M); the extra columns are dropped.
    padded_w = -(-out_w // kind.pixels) * kind.pixels
    phase_w = max(-(-(w + left + right) // sx), padded_w + (kw - 1) * dx // sx)
    fill = tirx.const(zero_point, kind.data_dtype)

    def packed(nn, cc, yy, phase, xx, k):
        channel, column = cc * GROUP + k, xx * sx + phase
        inside = tirx.all(channel < c, yy >= top, yy < h + top, column >= left, column < w + left)
        value = x[nn, tirx.min(channel, c - 1), tirx.max(tirx.min(yy - top, h - 1), 0),
                  tirx.max(tirx.min(column - left, w - 1), 0)]
        value = (value.astype("int16") + shift).astype(kind.data_dtype) if shift else value
        return tirx.if_then_else(inside, value, fill)

    data = te.compute((n, c4, h + top + bottom, sx, phase_w, GROUP), packed, name=kind.pack_block)
    if kind.channel_pairs:
        return _channel_pairs_conv(data, weight, correction, kind, (f8, c4, kh, kw), (sy, sx), (dy, dx),
                                   (out_channels, out_h, out_w, padded_w))
    rc, ry, rx, rk = (te.reduce_axis((0, e), name) for e, name in ((c4, "rc"), (kh, "ry"), (kw, "rx"), (GROUP, "rk")))
    acc = te.compute((n, f8, out_h, padded_w), lambda nn, ff, yy, xx: te.sum(
        data[nn, rc, yy * sy + ry * dy, (rx * dx) % sx, xx + (rx * dx) // sx, rk].astype("int32")
        * weight(ff, rc, ry, rx, rk).astype("int32"), axis=[rc, ry, rx, rk],
        init=correction[ff] if kind.correction_in_init else None), name=kind.block)
    if kind.correction_in_init:    # with_accumulator_start restores the init create_prim_func drops
        return te.compute((n, out_channels, out_h, out_w), lambda nn, ff, yy, xx: acc[nn, ff, yy, xx],
                          name="drop_padding")
    return te.compute((n, out_channels, out_h, out_w),
                      lambda nn, ff, yy, xx: acc[nn, ff, yy, xx] - correction[ff], name="subtract_zero_point")


def _channel_pairs_conv(data, weight, correction, kind, sizes, strides, dilation, outputs):
    """The conv for a kind that takes two channel groups per call: each pixel's sum kept in 2 int32 lanes
    (channels 0-1 and 2-3 of every group) through the reduction, added once at the end."""
    (f8, c4, kh, kw), (sy, sx), (dy, dx), (out_channels, out_h, out_w, padded_w) = sizes, strides, dilation, outputs
    n = int(data.shape[0])
    rc, ry, rx, rq, rk = (te.reduce_axis((0, e), name)
                          for e, name in ((c4 // 2, "rc"), (kh, "ry"), (kw, "rx"), (2, "rq"), (2, "rk")))

    def product(nn, ff, yy, xx, hh):
        return (data[nn, rc * 2 + rq, yy * sy + ry * dy, (rx * dx) % sx, xx + (rx * dx) // sx, hh * 2 + rk].astype("int32")
                * weight(ff, rc * 2 + rq, ry, rx, hh * 2 + rk).astype("int32"))

    # A pixel's two lanes side by side in the last axis (2x, 2x+1): TVM 0.27 cannot place a stage reading a
    # constant index of an extra axis inside the tile.
    acc = te.compute((n, f8, out_h, padded_w * 2), lambda nn, ff, yy, xh: te.sum(
        product(nn, ff, yy, xh // 2, xh % 2), axis=[rc, ry, rx, rq, rk]), name=kind.block)
    # One `addp` per 4 pixels (backend/pair_sum.py; as deinterleaved loads, uzp1 + uzp2 + add; vectorized
    # plainly, LLVM moved the accumulators to the stack and gathered them lane by lane).
    return te.compute((n, out_channels, out_h, out_w), lambda nn, ff, yy, xx: pair_sum(
        acc(nn, ff, yy, xx * 2), acc(nn, ff, yy, xx * 2 + 1)) - correction[ff], name="subtract_zero_point")


def with_accumulator_start(func, kind: DotKind):
    """The PrimFunc of a kind's `dot_product_conv` with its accumulator starting at the correction (the start
    is the 1-D int32 parameter). `te.create_prim_func` drops a reduction's `init` (TVM 0.27: the block's
    `T.init()` stores 0 whatever `te.sum` was given), so it is written back into the block here. Starting the
    sum there, not subtracting after it, saves an instruction per 4 outputs (face on a Cortex-A76 model:
    7.45 -> 7.16 M instructions; pose 127.0 -> 123.7 M)."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    conv = sch.get_sblock(kind.block)
    block = sch.get(conv)
    if isinstance(block.init.value, ir.TensorLoad):
        return func
    starts = [p for p in func.params[:-1] if _is_start(p)]
    if len(starts) != 1:
        raise ValueError(f"{kind.block}: expected one 1-D int32 correction parameter, found {len(starts)}")
    channel = block.iter_vars[1].var
    init = tirx.BufferStore(block.init.buffer, tirx.BufferLoad(starts[0], [channel]), block.init.indices)
    _replace(sch, conv, reads=[*block.reads, tirx.BufferRegion(starts[0], [_point(channel)])], init=init)
    return sch.mod["main"]


def move_start_read(sch, update, init) -> None:
    """After decompose_reduction the update block still declares the init's read of the start and the init
    block declares none; tensorize compares declared reads with the intrinsic's, so the read moves."""
    block = sch.get(update)
    _replace(sch, update, reads=[r for r in block.reads if not _is_start(r.source)], init=block.init)
    start = sch.get(init)
    channel = start.iter_vars[1].var
    buffer = next(r.source for r in block.reads if _is_start(r.source))
    _replace(sch, init, reads=[tirx.BufferRegion(buffer, [_point(channel)])], init=None)


def _point(index):
    return ir.Range.from_min_extent(index, 1)


def _is_start(buffer) -> bool:
    return buffer.ty.dtype == "int32" and len(buffer.ty.shape) == 1


def _replace(sch, block_rv, *, reads, init) -> None:
    from tvm.s_tir import SBlock

    block = sch.get(block_rv)
    new = SBlock(block.iter_vars, reads, block.writes, block.name_hint, block.body, init, block.alloc_buffers,
                 block.match_buffers, block.annotations)
    sch.state.replace(sch.get_sref(block_rv), new, {block: new})
