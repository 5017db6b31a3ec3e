"""Default CPU schedules: what every fused TIR function gets when no tuning record covers it.

TVM 0.27's CPU pipeline schedules nothing: a legalized conv2d runs as scalar, single-threaded loop nests.
These rules, written with TVM's scheduling API (s_tir.Schedule), give the operators that dominate mobile
vision models a sane shape for any LLVM CPU target:

- convolutions (dense, 1x1, grouped, depthwise, integer): an output register tile of `f` output
  channels x `w` output columns (w = the target's SIMD width where the row allows), accumulated in a local
  buffer across the reduction loops, vectorized along the row, the fused bias/activation/residual
  epilogue computed in the same tile; rows of channel blocks run in parallel;
- strided dense and grouped convolutions: the padding stage writes each row as `stride` contiguous column
  phases, so the tile's vector loads are contiguous;
- depthwise convolutions: one channel plane per task, its zero padding computed in the same task (in
  cache, no second pass over memory);
- the packed int8 convolutions of backend/dot_product.py (CPUs with VNNI): the same register tile, its innermost
  8 pixels x 4 channels one `vpdpbusd` (tensorize);
- dense layers (matmul): the output row in registers, the constant weights streamed row by row;
- the two-pass resizes (backend/rewrites/resize.py: bilinear, nearest upscales): one channel plane per task, its
  passes vectorized (the horizontal pass of an integer upscale by LLVM, from phases unrolled here);
- max pools on Arm: the window outside a vector of output columns, one vector max per tap;
- everything else (padding, concat, pooling, casts): injective stages inlined, outer loops in parallel, the
  innermost vectorized; reductions over trailing axes (InstanceNorm statistics) as vector partial sums.

Loops run in parallel only when the function has enough work to pay for waking the pool's threads (~20 us
a region when they sleep), which is more than a whole 4x4 depthwise layer takes on one core.

Each rule is tried on a copy; a function a rule cannot handle keeps TVM's unscheduled loops (correct,
slow), and `schedule_module` reports how many functions each rule took.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from optkit.backend.dot_product import (
    DOT_BLOCKS,
    PACK_BLOCKS,
    START_INTRIN,
    dot_product_kind,
    kind_of_block,
    move_start_read,
)
from optkit.backend.rewrites.resize import COLS_BLOCK, PHASES_ATTR, ROWS_BLOCK

SCHEDULED = "tirx.is_scheduled"   # set by MetaScheduleApplyDatabase on tuned functions, and by us
CONV_BLOCK_PREFIXES = ("conv2d", "group_conv2d", "depthwise_conv2d")
MATMUL_BLOCK_PREFIXES = ("matmul", "NT_matmul", "T_matmul", "dense")
_SPATIAL, _REDUCE = 0, 2
MAX_UNROLLED_ROW = 256       # a resize's edge-padded row is unrolled up to this width (longer: a plain loop)
# Work (multiply-adds + 4 x elements moved) below which a function runs on one thread. Measured on the face
# model's layers (2 cores): a 256x8x8 depthwise layer 61 us in parallel vs 14 us on one thread; parallel
# wins from about 1.5 M (a 48x64x64 stride-2 depthwise layer: 46 vs 70 us).
PARALLEL_MIN_WORK = 1_500_000
DEINTERLEAVED_COLUMNS = 16         # columns per unrolled phase copy of a strided depthwise conv's padding


@dataclass
class ScheduleStats:
    dot: list[str] = field(default_factory=list)
    conv: list[str] = field(default_factory=list)
    matmul: list[str] = field(default_factory=list)
    resize: list[str] = field(default_factory=list)
    generic: list[str] = field(default_factory=list)
    unscheduled: list[str] = field(default_factory=list)
    from_database: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}

    def scheduled(self) -> int:
        """Functions one of optkit's rules took."""
        return len(self.dot) + len(self.conv) + len(self.matmul) + len(self.resize) + len(self.generic)


def vector_lanes(target) -> int:
    """fp32 lanes per row tile: the target's SIMD width (NEON: 4, AVX2: 8), capped at 8. On AVX-512 a
    16-wide tile measured 1.2-6x slower than an 8-wide one on the reference models' rows (15-160 wide):
    short rows waste most of a 16-lane register and LLVM splits odd-sized vectors badly."""
    from tvm.target import codegen

    return max(1, min(8, int(codegen.llvm_get_vector_width(target)) // 32))


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _divisor(n: int, candidates) -> int:
    return next((c for c in candidates if c <= n and n % c == 0), 1)


NEON_LANES = 4          # fp32 lanes of a 128-bit NEON register (vector_lanes of an Arm target)
# Output channels of a dense convolution's NEON tile where they divide the layer: 12 x 2 vectors = 24
# accumulators of the 32 registers (hand_landmark_lite, Cortex-A72 model: 8 -> 12 saved 2.5 %).
NEON_CHANNEL_TILE = 12
# Input channels up to which LLVM unrolls a NEON tile's whole reduction; their weights are then the same in
# every tile of a row, and unless each tile is its own iteration of the task loop LLVM hoists them out of
# the row's loop into 32+ registers that spill (schedule_conv). hand_landmark_lite's 16 -> 64 1x1 conv on
# 112x112, Cortex-A72 model: 7.04 -> 5.49 M instructions (its 64-channel ones lose 2 % fused: 16 only).
SHORT_REDUCTION = 16
# The same for sdot tiles: with up to this many reduction steps (4 input channels x one tap each) LLVM unrolls
# the tile's reduction and hoisted its broadcast weights into spilled registers (a stack load per sdot), so
# each tile is its own task iteration. Cortex-A76 model, int8: parsing 79.7 -> 78.6 M (8 steps: 78.8 M), pose
# 152.8 -> 151.8 M, face 9.1 -> 9.0 M.
SHORT_DOT_REDUCTION = 16


def _row_tile(width: int, lanes: int) -> int:
    """Columns per register tile: a multiple of the SIMD width that divides the row; else the row itself when
    it fits one register; else a divisor near the SIMD width; else (prime widths) the SIMD width, with the
    last tile predicated. On NEON an odd divisor (7 of a 14- or 7-wide row) makes LLVM split every vector
    into 4 + 3 lanes: two full registers with a predicated last tile instead cut hand_landmark_lite from
    272 M to 197 M instructions on a Cortex-A72 model (one register: 317 M)."""
    for k in (2, 1):
        if width % (lanes * k) == 0:
            return lanes * k
    if width <= lanes:
        return width
    near = _divisor(width, range(2 * lanes, lanes // 2, -1))
    if lanes == NEON_LANES and near % lanes:
        return 2 * lanes
    return near if near > 1 else lanes


def _row_block(height: int, x_tile: int, kernel_rows: int, stride: int) -> int:
    """Output rows a depthwise NEON tile computes together: neighbours share kernel_rows - stride input rows,
    which LLVM then loads once. Up to 4 rows (2 when strided; an odd height in pairs, the last row guarded),
    while the tile's accumulators stay within 8 vectors; none when neighbours share under 2 rows.
    hand_landmark_lite on a Cortex-A72 model: 68.8 -> 67.3 M instructions, odd heights in pairs 0.2 M more
    (4 rows of a 3x3 stride-2 layer, sharing one, had cost 3 % more)."""
    if kernel_rows - stride < 2:
        return 1
    for rows in (4, 2) if stride == 1 else (2,):
        if height % rows == 0 and rows * x_tile <= 8 * NEON_LANES:
            return rows
    if height % 2 and height > 4 and 2 * x_tile <= 8 * NEON_LANES:
        return 2
    return 1


def _blocks(sch):
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _iter_types(sch, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _is_copy(sch, block) -> bool:
    """A block that only moves data (padding with zero pads, casts on a same-shape buffer)."""
    stmt = sch.get(block)
    if len(stmt.reads) != 1 or len(stmt.writes) != 1:
        return False
    return [int(d) for d in stmt.reads[0].source.shape] == [int(d) for d in stmt.writes[0].source.shape]


def _work(sch) -> int:
    """Multiply-adds of every reduction block plus 4 x the elements every block writes."""
    total = 0
    for block in _blocks(sch):
        iters = sch.get(block).iter_vars
        extents = [int(iv.dom.extent) for iv in iters]
        reduce = any(int(iv.iter_type) == _REDUCE for iv in iters)
        size = 1
        for e in extents:
            size *= e
        total += size if reduce else 4 * size
    return total


def _vector_row(sch, loop, lanes: int) -> None:
    """Vectorize a row loop: whole when short, else in row tiles."""
    extent = _extent(sch, loop)
    if extent > 4 * lanes:
        _, loop = sch.split(loop, [None, _row_tile(extent, lanes)])
    sch.vectorize(loop)


def _parallel_vector(sch, block, lanes: int, parallel: bool = True) -> None:
    """A spatial stage: all loops but the innermost fused (and parallel), the innermost vectorized."""
    loops = sch.get_loops(block)
    outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    if parallel:
        sch.parallel(outer)
    _vector_row(sch, loops[-1], lanes)


def _inline_input_stages(sch, block, inside: set[str]) -> None:
    """An elementwise stage at the root that reads only function inputs (the dequantize of an int8
    residual) is inlined into the epilogue stage reading it, so that stage (the residual add) and the ones
    after it (the requantize) can join the tile instead of each making a pass of its own over the tensor:
    face's int8 residual layers 44.6 -> 33.3 us and 24.1 -> 17.1 us, gesture's 136 -> 115 us, same outputs."""
    for producer in sch.get_producers(block):
        if (sch.get(producer).name_hint not in inside and not sch.get_producers(producer)
                and all(t == _SPATIAL for t in _iter_types(sch, producer))):
            try:
                sch.compute_inline(producer)
            except Exception:  # ScheduleError: not inlinable; the stage stays at the root
                pass


def _epilogue_into_tile(sch, epilogue: list[str], tile_loop, inside: set[str]) -> None:
    """The epilogue (bias, activation, residual add, requantize) runs in the tile: a stage that is the only
    reader of its single producer is inlined into it; any other stage (HardSwish reads the biased value
    twice) is computed at the tile, but only when it reads something computed there and everything it
    reads is (`inside` holds the tile's blocks). Once one stage stays at the root, every later one does
    too. TVM 0.27 refuses neither case and builds wrong code: a stage reading only a function input (the
    quantize of an int8 residual) computed at the tile covered part of its tensor, and the residual add
    read the rest from the previous run (gesture int8: outputs changed between runs, AP 1.0 vs 0.92).
    reverse_compute_inline is only tried in the first case: TVM 0.27 accepts it with other readers left and
    then fails at build time."""
    inside = set(inside)
    for name in epilogue:
        block = sch.get_sblock(name)
        _inline_input_stages(sch, block, inside)
        producers = sch.get_producers(block)
        if len(producers) == 1 and len(sch.get_consumers(producers[0])) == 1:
            try:
                sch.reverse_compute_inline(block)
                continue
            except Exception:  # ScheduleError: not elementwise on its producer
                pass
        if not producers or any(sch.get(p).name_hint not in inside for p in producers):
            return                                   # this stage and the rest stay at the root
        sch.reverse_compute_at(block, tile_loop, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(block)[-1])
        inside.add(name)


def _crop_per_row(sch, epilogue: list[str], row_loop, inside: set[str]) -> None:
    """The crop of a convolution computed on padded rows (backend/rewrites/padded_rows.py), and the epilogue
    after it, run once per output row over the row's real width (14 columns: vectors of 4 + 4 + 4 + 2)
    instead of in each tile, where the columns of the last tile past the row's end were masked lane by lane:
    hand_landmark_lite on a Cortex-A72 model 69.5 -> 68.8 M instructions."""
    crop = sch.get_sblock(epilogue[0])
    sch.reverse_compute_at(crop, row_loop, preserve_unit_loops=True)
    sch.vectorize(sch.get_loops(crop)[-1])
    _epilogue_into_tile(sch, epilogue[1:], row_loop, inside | {epilogue[0]})


def _stages_after(sch, block) -> list[str]:
    names = [sch.get(b).name_hint for b in _blocks(sch)]
    return names[names.index(sch.get(block).name_hint) + 1:]


def _matmul_columns(width: int, lanes: int) -> int:
    """Output columns a task accumulates in registers: the whole row when it is at most 8 SIMD vectors; else
    8, 4 or 2 whole vectors when they divide it; else its largest divisor up to 8 vectors. (Face's 2272 -> 136
    head: 43.7 us in rows of one vector, 54 us as one row, 23 us in rows of 34. A 1000-wide classifier
    used to get one column a task.)"""
    if width % lanes == 0 and width <= 8 * lanes:
        return width
    return _divisor(width, (8 * lanes, 4 * lanes, 2 * lanes, *range(8 * lanes, 0, -1)))


def schedule_matmul(sch, matmul, lanes: int, parallel: bool = True) -> None:
    """Dense layers (x @ W, W constant [K, N]): the output row in registers, W streamed row by row (contiguous
    loads), K innermost-but-one; the epilogue in the tile."""
    loops = sch.get_loops(matmul)
    types = _iter_types(sch, matmul)
    if len(loops) < 2 or types[-1] != _REDUCE or any(t != _SPATIAL for t in types[:-1]):
        raise ValueError("not a matmul nest")
    epilogue = _stages_after(sch, matmul)
    *outer, j, k = loops
    extent = _extent(sch, j)
    j_tile = _matmul_columns(extent, lanes)
    j_o, j_i = sch.split(j, [None, j_tile])
    sch.reorder(*outer, j_o, k, j_i)
    acc = sch.cache_write(matmul, 0, "global")
    sch.reverse_compute_at(acc, j_o, preserve_unit_loops=True)
    _epilogue_into_tile(sch, epilogue, j_o, {sch.get(matmul).name_hint, sch.get(acc).name_hint})
    sch.vectorize(sch.get_loops(acc)[-1])
    sch.vectorize(j_i)
    tasks = sch.fuse(*outer, j_o) if outer else j_o
    if parallel:
        sch.parallel(tasks)
    init = sch.decompose_reduction(matmul, k)
    sch.vectorize(sch.get_loops(init)[-1])


def schedule_resize(sch, rows, lanes: int, parallel: bool = True) -> None:
    """The two-pass resize (backend/rewrites/resize.py: bilinear, or a nearest upscale): one channel plane per task, its
    horizontal pass computed there (in cache), the vertical pass vectorized along the row. The horizontal
    pass of an integer upscale is unrolled over its phases, a bilinear one's edge-padded input row computed
    just before (unrolled, so its clamps fold away): LLVM turns the loop into contiguous loads and
    interleaving shuffles. Otherwise it is vectorized along the row (gathers through the index tables)."""
    cols = sch.get_consumers(rows)
    if len(cols) != 1 or sch.get(cols[0]).name_hint != COLS_BLOCK:
        raise ValueError("not a separable resize")
    n, c, y, x = sch.get_loops(cols[0])
    plane = sch.fuse(n, c)
    sch.compute_at(rows, plane)
    _vector_row(sch, sch.get_loops(cols[0])[-1], lanes)
    factor = sch.get(rows).annotations.get(PHASES_ATTR)
    if factor is None:
        _vector_row(sch, sch.get_loops(rows)[-1], lanes)
    else:
        row, column = sch.get_loops(rows)[-2:]
        for padded in sch.get_producers(rows):       # a bilinear upscale's edge-padded row
            sch.compute_at(padded, row)
            padded_column = sch.get_loops(padded)[-1]
            if _extent(sch, padded_column) <= MAX_UNROLLED_ROW:
                sch.unroll(padded_column)
        _, phase = sch.split(column, [None, int(factor)])
        sch.unroll(phase)
    if parallel:
        sch.parallel(plane)


def _pointwise_on_short_rows(sch, conv, lanes: int) -> bool:
    """A 1x1 convolution reading its input at the output's own pixels (stride 1, no padding: an input of the
    output's height and width) whose rows are shorter than two SIMD rows, and whose map splits into tiles
    of whole rows. (A tile that ends inside a row built wrong: TVM 0.27 vectorized the loads of a 9x7 map
    in tiles of 9 incorrectly; caught by the numerics test.)"""
    *_, y, x, rc, ry, rx = sch.get_loops(conv)
    width = _extent(sch, x)
    if _extent(sch, ry) != 1 or _extent(sch, rx) != 1 or width >= 2 * lanes:
        return False
    if _row_tile(_extent(sch, y) * width, lanes) % width:
        return False
    stmt = sch.get(conv)
    out = stmt.writes[0].source
    out_hw = [int(d) for d in out.shape[2:]]
    return any(r.source.name != out.name and len(r.source.shape) == 4
               and [int(d) for d in r.source.shape[2:]] == out_hw and int(r.source.shape[1]) == _extent(sch, rc)
               for r in stmt.reads)


def _column_stride(sch, conv, buffer, axis: int = -1, loop: int = 3) -> int:
    """How far the convolution's read of `buffer` moves along its last axis per output column (or along
    `axis` per step of the conv's `loop`)."""
    from tvm.sym.pattern import detect_linear_equation

    stmt = sch.get(conv)
    step = stmt.iter_vars[loop].var
    for read in stmt.reads:
        if read.source.same_as(buffer):
            coefficients = detect_linear_equation(read.region[axis].min, [step])
            return int(coefficients[0]) if len(coefficients) == 2 else 1
    return 1


def _column_phases(stride: int):
    """Index map: column w of a row to [w % stride, w // stride]."""
    return lambda n, c, h, w: (n, c, h, w % stride, w // stride)


def _split_column_phases(sch, conv) -> None:
    """A strided convolution reads every s-th column of its padded input, and a vector of such columns is
    loaded one lane at a time. The padding stage writes its rows as s contiguous phases instead
    (column w at [w % s, w // s]), so the tile's vector loads are contiguous again: a stride-2 3x3 conv of
    style (16 -> 32 channels, 256x256) 1.63 -> 0.92 ms, the strided reads now done once, by the padding.
    Depthwise convs too when their output rows are DEINTERLEAVED_COLUMNS or longer (their phased copy is
    written so that LLVM vectorizes it, see _deinterleave_rows); on shorter rows the copy cost more than it
    saved (24 channels, 19x19 -> 10x10: 6 -> 10 us)."""
    *_, x, rc, _, _ = sch.get_loops(conv)
    if _extent(sch, rc) == 1 and _extent(sch, x) < DEINTERLEAVED_COLUMNS:
        return
    for pad in sch.get_producers(conv):
        if not sch.get(pad).name_hint.startswith("pad"):
            continue
        buffer = sch.get(pad).writes[0].source
        stride = _column_stride(sch, conv, buffer)
        if stride <= 1:
            continue
        phases = _column_phases(stride)
        zero = 0.0 if "float" in str(buffer.dtype) else 0
        sch.transform_layout(pad, ("write", 0), phases, pad_value=zero)
        # Loops in the new layout, so that the writes are contiguous (an odd width: transform_layout has
        # already padded the loops); an int8 copy through deinterleave.py keeps the input's columns instead.
        if len(sch.get(pad).iter_vars) == 4 and not (stride == 2 and _deinterleaved_lanes(sch, pad)):
            sch.transform_block_layout(pad, phases)


def _deinterleaved_lanes(sch, pad) -> int | None:
    """Vector lanes for _fill_then_deinterleave's copy of a stride-2 padding whose input is read through
    backend/deinterleave.py's op (int8 depthwise on Arm), or None: the rows must be whole vector pairs."""
    width = int(sch.get(pad).reads[0].source.shape[-1])
    blocks = [pad, *sch.get_producers(pad)]         # the op is in the cast, until that is inlined into the copy
    if not any("optkit_deinterleaved" in str(sch.get(block).body) for block in blocks):
        return None
    return next((lanes for lanes in (16, 8, 4) if width % (2 * lanes) == 0), None)


def _fill_then_deinterleave(sch, pad, lanes: int) -> None:
    """A stride-2 depthwise plane's phased padding (int8 on Arm) as a fill of the plane and a copy of the
    input rows: for each pair of `lanes` column pairs, two contiguous loads whose even and odd lanes
    (deinterleave.py: `uzp1`/`uzp2`) go to the two phases as vectors. The copy had loaded every byte alone
    (2.5 instructions per byte). Cortex-A76 model, gesture int8: 42.5 -> 38.7 M instructions (its 48 x 128
    x 128 layer 3.33 -> 1.75 M). The same for a dense int8 stem's padding on a Cortex-A72 model, which the
    generic rule had copied byte by byte: pose's 3 x 320 x 320 stem 8.5 -> 7.1 M."""
    fill = sch.decompose_padding(pad, sch.get_loops(pad)[-2])
    column = sch.get_loops(fill)[-1]
    if _extent(sch, column) % 2 == 0:           # each phase's columns contiguous
        pair, phase = sch.split(column, [None, 2])
        sch.reorder(phase, pair)
        sch.unroll(phase)
    _, pair, phase = sch.split(sch.get_loops(pad)[-1], [None, lanes, 2])
    sch.reorder(phase, pair)
    sch.unroll(phase)
    sch.vectorize(pair)


def _reads_input_columns_into_phases(sch, pad) -> bool:
    """A padding stage split into column phases (_split_column_phases) that still iterates over the input's
    columns: the form _fill_then_deinterleave takes."""
    return len(sch.get(pad).writes[0].source.shape) == 5 and len(sch.get(pad).iter_vars) == 4


def _deinterleave_rows(sch, pad) -> None:
    """The phased padding of one depthwise plane, as unrolled copies of DEINTERLEAVED_COLUMNS columns x s
    phases: LLVM's SLP vectorizer turns them into contiguous loads and shuffles, where a vectorized phase
    row loaded its strided columns one lane at a time. Stride-2 depthwise layers: pose's 96 x 160 x 160
    0.51 -> 0.34 ms, gesture's 5x5 72 x 64 x 64 0.19 -> 0.11 ms (fp32); the int8 ones, which also convert
    bytes here, alike."""
    *_, phase, column = sch.get_loops(pad)
    column_o, column_i = sch.split(column, [None, DEINTERLEAVED_COLUMNS])
    sch.reorder(column_o, phase, column_i)
    sch.unroll(phase)
    sch.unroll(column_i)


def _inline_into_padding(sch, conv) -> None:
    """An elementwise stage feeding the padding (the byte-to-float cast of an int8 depthwise conv) is
    computed by the padding copy itself, not in a pass of its own over the whole input: int8 depthwise
    layers 10-35 % faster (pose's 96 x 160 x 160 stride-2 layer 297 -> 188 us, face's 128 x 16 x 16
    stride-2 layer 37 -> 13 us), the same outputs."""
    for pad in sch.get_producers(conv):
        if not sch.get(pad).name_hint.startswith("pad"):
            continue
        for producer in sch.get_producers(pad):
            if all(t == _SPATIAL for t in _iter_types(sch, producer)) and _is_copy(sch, producer):
                sch.compute_inline(producer)


STACK_BYTES = 1024        # TVM 0.27 puts a constant-size buffer up to this on the stack, larger ones in the workspace pool
PLANE_GROUP_BYTES = 16 * 1024


def _planes_per_task(sch, padding, channels: int) -> int:
    """Depthwise planes whose padding one iteration of the task loop computes together. A padded plane over
    STACK_BYTES is allocated from the workspace pool for each iteration (an allocation, a free and two
    thread-local lookups); grouping planes, up to PLANE_GROUP_BYTES of padding (in L1), allocates once per
    group."""
    import tvm

    if not padding:
        return 1
    buffer = sch.get(padding[0]).writes[0].source
    element_bytes = tvm.runtime.DataType(str(buffer.dtype)).bits // 8
    plane_bytes = element_bytes * math.prod(int(d) for d in buffer.shape[2:])
    if plane_bytes <= STACK_BYTES:
        return 1
    return max(k for k in range(1, 17) if channels % k == 0 and k * plane_bytes <= max(PLANE_GROUP_BYTES, plane_bytes))


def _fill_then_copy(sch, pad) -> bool:
    """On NEON, a depthwise plane's padding as two loops (TVM's decompose_padding): the plane filled with the
    padding value, then the input rows copied into its interior with no condition, as 16-lane vectors. With
    the padding's select in the copy, LLVM loaded, converted and stored every element alone (2.6
    instructions per byte of an int8 plane). Cortex-A76 model, parsing int8: 67.4 -> 65.4 M instructions
    (its 32 x 120 x 160 layer 5.35 -> 3.85 M). Only where the input rows are whole NEON vectors; False
    leaves the padding as it was."""
    width = int(sch.get(pad).reads[0].source.shape[-1])
    if width % NEON_LANES:
        return False
    fill = sch.decompose_padding(pad, sch.get_loops(pad)[-2])
    plane = sch.fuse(*sch.get_loops(fill)[-2:])
    if _extent(sch, plane) % NEON_LANES == 0:
        sch.vectorize(sch.split(plane, [None, NEON_LANES])[1])
    lanes = 4 * NEON_LANES if width % (4 * NEON_LANES) == 0 else NEON_LANES
    sch.vectorize(sch.split(sch.get_loops(pad)[-1], [None, lanes])[1])
    return True


def _pad_plane_row(sch, pad, loop, lanes: int) -> None:
    """A row of a depthwise plane's padding copy: unrolled scalars when it is short (4x4 and 8x8 maps; LLVM's
    SLP vectorizer packs them), else on x86 one vector of the row's width: face's 256 x 8 x 8 layer 14.0 ->
    8.9 us fp32 and 15.5 -> 10.1 us int8 unrolled (splitting longer rows into SIMD-wide vectors measured up to
    2.5x slower on gesture's int8 layers). On NEON a row-wide vector of the padding's select is emitted as
    scalar code: 16-element vectors cut pose's depthwise layers from 63.0 to 49.6 M instructions on a
    Cortex-A76 model (4-wide 58.0, 8-wide 50.7, 32-wide 71.3); where the rows are whole vectors the select
    is gone (_fill_then_copy)."""
    if _extent(sch, loop) <= lanes + 4:
        sch.unroll(loop)
    elif lanes == NEON_LANES and _fill_then_copy(sch, pad):
        return
    elif lanes == NEON_LANES:
        _, inner = sch.split(loop, [None, 4 * lanes])
        sch.vectorize(inner)
    else:
        sch.vectorize(loop)


def _weights_read(sch, conv, channels: int, kernel: list[int]) -> int | None:
    """Index of the convolution's read of constant HWIO weights ([kh, kw, in, out]: backend/rewrites/
    hwio_kernels.py), or None (OIHW weights, or no such read)."""
    for index, read in enumerate(sch.get(conv).reads):
        shape = [int(d) for d in read.source.shape]
        if len(shape) == 4 and shape[-1] == channels and shape[:2] == kernel:
            return index
    return None


def _neon_reduction(sch, conv, rc, ry, rx, channels: int):
    """The input-channel loop of a dense convolution's NEON tile (hand_landmark_lite on a Cortex-A72 model,
    fp32: 94.6 -> 83.9 M instructions with both while the tiles lived in the workspace pool, 72.3 -> 71.5 M
    once caching the weights of every layer, not only those with 32+ input channels, stopped spilling):
    - with HWIO weights, the tile's weights for one input channel are copied into registers as vectors
      first, and LLVM multiplies by lane (`fmla v.4s, v.4s, v.s[i]`) instead of loading each weight alone;
    - a 1x1 convolution's loop is unrolled by two, halving the loop's own increments and branch.
    Returns the loop that now iterates over input channels (the outer one after a split)."""
    kernel = [_extent(sch, ry), _extent(sch, rx)]
    weights = _weights_read(sch, conv, channels, kernel)
    if weights is not None:
        cached = sch.cache_read(conv, weights, "global")
        sch.compute_at(cached, rx)
        sch.vectorize(sch.get_loops(cached)[-1])
    if kernel == [1, 1] and _extent(sch, rc) % 2 == 0:
        rc, inner = sch.split(rc, [None, 2])
        sch.unroll(inner)
    return rc


def schedule_conv(sch, conv, lanes: int, parallel: bool = True) -> None:
    loops = sch.get_loops(conv)
    types = _iter_types(sch, conv)
    if len(loops) != 7 or types[:4] != [_SPATIAL] * 4 or any(t != _REDUCE for t in types[4:]):
        raise ValueError("not an NCHW convolution nest")
    for producer in sch.get_producers(conv):
        if _is_copy(sch, producer):
            sch.compute_inline(producer)
    _split_column_phases(sch, conv)
    _inline_into_padding(sch, conv)
    epilogue = _stages_after(sch, conv)
    n, f, y, x, rc, ry, rx = loops
    in_channels = _extent(sch, rc)
    depthwise = in_channels == 1
    padding = [p for p in sch.get_producers(conv) if sch.get(p).name_hint.startswith("pad")]
    channels = _extent(sch, f)
    # 8 output channels a tile; a count 8 does not divide gets a predicated last tile. (Falling back to a
    # divisor left 15-, 27- or 53-channel convs one channel a tile: pruned pose 15.8 -> 9.1 ms.)
    f_tile = 1 if depthwise else min(channels, 8)
    neon_dense = lanes == NEON_LANES and not depthwise
    if neon_dense and channels % NEON_CHANNEL_TILE == 0:
        f_tile = NEON_CHANNEL_TILE
    rows = [y]
    if _pointwise_on_short_rows(sch, conv, lanes):
        # A 1x1, stride-1 conv on a small map (face's 4x4 and 8x8): the whole map is one row of pixels.
        x, rows = sch.fuse(y, x), []
    x_tile = _row_tile(_extent(sch, x), lanes)
    while f_tile * x_tile < 8 * lanes and _extent(sch, x) % (2 * x_tile) == 0 and x_tile % lanes == 0:
        x_tile *= 2       # few output channels (style's 16 -> 3 head): a wider row keeps 8+ vector accumulators
    f_o, f_i = sch.split(f, [None, f_tile])
    x_o, x_i = sch.split(x, [None, x_tile])
    rows_in_tile, together = [], 1
    if depthwise and lanes == NEON_LANES and rows and padding:
        row_stride = _column_stride(sch, conv, sch.get(padding[0]).writes[0].source, axis=2, loop=2)
        together = _row_block(_extent(sch, y), x_tile, _extent(sch, ry), row_stride)
    if together > 1:
        y, y_i = sch.split(y, [None, together])
        rows, rows_in_tile = [y], [y_i]
    sch.reorder(n, f_o, *rows, x_o, rc, ry, rx, *rows_in_tile, f_i, x_i)
    for loop in rows_in_tile:
        sch.unroll(loop)
    acc = sch.cache_write(conv, 0, "global")
    sch.reverse_compute_at(acc, x_o, preserve_unit_loops=True)
    inside = {sch.get(conv).name_hint, sch.get(acc).name_hint}
    if lanes == NEON_LANES and rows and epilogue and epilogue[0].startswith("T_strided_slice"):
        _crop_per_row(sch, epilogue, rows[0], inside)
    else:
        _epilogue_into_tile(sch, epilogue, x_o, inside)
    sch.vectorize(sch.get_loops(acc)[-1])
    if f_tile > 1:
        sch.unroll(f_i)
    if neon_dense:
        rc = _neon_reduction(sch, conv, rc, ry, rx, channels)
    sch.vectorize(x_i)
    if depthwise:
        # One channel plane (on NEON a group of planes) per task: its padding is computed there, in cache.
        plane = sch.fuse(n, f_o)
        group = _planes_per_task(sch, padding, channels) if lanes == NEON_LANES else 1
        if group > 1:
            plane, _ = sch.split(plane, [None, group])
        for pad in padding:
            sch.compute_at(pad, plane)
            if _reads_input_columns_into_phases(sch, pad):
                _fill_then_deinterleave(sch, pad, _deinterleaved_lanes(sch, pad))
            elif len(sch.get(pad).writes[0].source.shape) == 5:      # column phases, copied from a stage's output
                _deinterleave_rows(sch, pad)
            else:
                _pad_plane_row(sch, pad, sch.get_loops(pad)[-1], lanes)
    elif neon_dense and in_channels <= SHORT_REDUCTION:
        plane = sch.fuse(n, f_o, *rows, x_o)
    else:
        plane = sch.fuse(n, f_o, *rows)
    if neon_dense:      # a dense int8 stem's phased padding, at the root: as the depthwise planes' above
        for pad in padding:
            if _reads_input_columns_into_phases(sch, pad) and (pairs := _deinterleaved_lanes(sch, pad)):
                _fill_then_deinterleave(sch, pad, pairs)
                if parallel:
                    sch.parallel(sch.fuse(*sch.get_loops(pad)[:2]))
    if parallel:
        sch.parallel(plane)
    init = sch.decompose_reduction(conv, rc)
    init_loops = sch.get_loops(init)
    if sch.get(init_loops[-1]).kind != sch.get(x_i).kind:
        sch.vectorize(init_loops[-1])


def schedule_dot_conv(sch, conv, lanes: int, parallel: bool = True, tensorize: bool = True) -> None:
    """The packed integer convolution of backend/dot_product.py: a register tile of 8 output channels x 2 (or 1)
    instructions' pixels, its innermost pixels x 4 input channels one dot-product instruction (tensorize; off
    when the module is built for a CPU without it, as a host build that validates an Arm one), the epilogue
    (zero-point correction, rescale, bias, activation, requantize) in the tile; the input packed at the root."""
    kind = kind_of_block(sch.get(conv).name_hint)
    pixels = kind.pixels
    if kind.channel_pairs:          # each pixel's 2 partial lanes (half) and the two groups (rq) innermost
        n, f, y, x_half, rc, ry, rx, rq, rk = sch.get_loops(conv)
        x, half = sch.split(x_half, [None, 2])
        instruction = (half, rq, rk)
    else:
        n, f, y, x, rc, ry, rx, rk = sch.get_loops(conv)
        instruction = (rk,)
    epilogue = _stages_after(sch, conv)
    # Two instructions' pixels where they divide the row. The channel-pair kind keeps 2 accumulators per
    # pixel vector, so its tile is 4 channels: 16 accumulators (8 channels spilled them every step).
    x_tile = 2 * pixels if _extent(sch, x) % (2 * pixels) == 0 else pixels
    f_o, f_i = sch.split(f, [None, kind.channel_tile])
    x_o, x_i = sch.split(x, [None, x_tile])
    x_v, x_l = sch.split(x_i, [None, pixels])
    pointwise = _extent(sch, ry) == _extent(sch, rx) == 1
    if kind.channels > 1 and pointwise and _extent(sch, rc) % 2 == 0:
        # A 1x1 conv's two channel groups per iteration: the loop's increments and branch once per 32 sdot,
        # not 16 (Cortex-A76 model, parsing int8: 68.1 -> 67.4 M instructions; by four: 67.6 M; with 3x3
        # taps too, parsing_hp's dilated 3x3 layers lost 1.8 M).
        rc, rc_pair = sch.split(rc, [None, 2])
        sch.reorder(n, f_o, y, x_o, rc, ry, rx, rc_pair, x_v, f_i, x_l, rk)
        sch.unroll(rc_pair)
    elif kind.channels > 1:          # the instruction covers the tile's channels (x_v outside)
        sch.reorder(n, f_o, y, x_o, rc, ry, rx, x_v, f_i, x_l, rk)
    else:
        sch.reorder(n, f_o, y, x_o, rc, ry, rx, f_i, x_v, x_l, *instruction)
    acc = sch.cache_write(conv, 0, "global")
    sch.reverse_compute_at(acc, x_o, preserve_unit_loops=True)
    _epilogue_into_tile(sch, epilogue, x_o, {sch.get(conv).name_hint, sch.get(acc).name_hint})
    sch.vectorize(_innermost(sch, acc, 2 if kind.channel_pairs else 1))
    steps = _extent(sch, rc) * _extent(sch, ry) * _extent(sch, rx)
    tasks = sch.fuse(n, f_o, y, x_o) if kind.channels > 1 and steps <= SHORT_DOT_REDUCTION else sch.fuse(n, f_o, y)
    if parallel:
        sch.parallel(tasks)
    init = sch.decompose_reduction(conv, rc)
    if kind.correction_in_init:
        move_start_read(sch, conv, init)
    if kind.correction_in_init and tensorize and kind.channels > 1:
        # Broadcast from the loaded starts: as a load per channel LLVM reordered unrolled tiles channel by
        # channel and spilled (pose, Cortex-A76 model: 127.2 M with loads, 123.7 M so; 127.0 M subtracting).
        sch.tensorize(sch.get_loops(init)[-2], START_INTRIN)
    else:
        sch.vectorize(_innermost(sch, init, 2 if kind.channel_pairs else 1))
    sch.unroll(x_v)
    if not (tensorize and kind.channels > 1):      # else f_i is the instruction's own loop
        sch.unroll(f_i)
    if tensorize:
        sch.tensorize(f_i if kind.channels > 1 else sch.fuse(x_l, half) if kind.channel_pairs else x_l, kind.intrin)
    else:
        sch.unroll(x_l)
    # The packing interleaves 4 channel rows: written as unrolled scalars, LLVM's SLP vectorizer turns
    # pixels x 4 channels into loads and shuffles (pose's 24 x 160 x 160 input: 0.25 -> 0.03 ms; a
    # vectorized fused loop gathered byte by byte).
    *rows, columns, channels = sch.get_loops(sch.get_sblock(kind.pack_block))
    tasks = sch.fuse(*rows[:3])
    if parallel:
        sch.parallel(tasks)
    # On Arm 16 columns at a time where rows allow (loads and stores of whole 64-byte lines; pose on a
    # Cortex-A76 model 117.6 -> 116.8 M); VNNI keeps its shape, which the host's tuning records are for.
    arm = kind.channels > 1 or kind.channel_pairs
    width = 4 * pixels if arm and _extent(sch, columns) % (4 * pixels) == 0 else pixels
    _, column = sch.split(columns, [None, width])
    sch.unroll(column)
    sch.unroll(channels)


def _innermost(sch, block, count: int):
    """The block's last `count` loops, fused."""
    loops = sch.get_loops(block)[-count:]
    return sch.fuse(*loops) if count > 1 else loops[0]


def _vector_reduction(sch, block, spatial: int, lanes: int, parallel: bool) -> None:
    """A reduction over trailing axes (per-channel mean and variance of InstanceNorm, global pooling):
    the reduced axes fused and split by rfactor into vector-wide partial sums (contiguous vector loads),
    then those summed; channels in parallel. Measured on style's InstanceNorm: 13-15x faster than one
    scalar accumulator per channel."""
    loops = sch.get_loops(block)
    reduced = sch.fuse(*loops[spatial:]) if len(loops) - spatial > 1 else loops[spatial]
    width = 2 * lanes
    if _extent(sch, reduced) % width == 0 and _extent(sch, reduced) >= 4 * width:
        _, lanes_loop = sch.split(reduced, [None, width])
        partial = sch.rfactor(lanes_loop, spatial)        # partial sums stored lanes-innermost
        partial_loops = sch.get_loops(partial)
        sch.vectorize(partial_loops[-1])
        if parallel:
            sch.parallel(sch.fuse(*partial_loops[:spatial]) if spatial > 1 else partial_loops[0])
        init = sch.decompose_reduction(partial, partial_loops[-2])
        sch.vectorize(sch.get_loops(init)[-1])
    if parallel:
        outer = sch.get_loops(block)[:spatial]
        sch.parallel(sch.fuse(*outer) if spatial > 1 else outer[0])


_TRANSCENDENTAL = re.compile(r"\bT\.(exp|exp2|log|tanh|sigmoid|pow|erf)\(")


def _calls_transcendental(sch, block) -> bool:
    """Whether the block's value calls exp, log, tanh and the like: a scalar libm call per element on CPUs,
    too dear to recompute in every consumer (gesture's softmax over 2688 x 4 scores, its exp once instead of
    in both the sum and the normalization: 55 -> 26 us). Read from the printed block: TVM 0.27's Python API
    has no TIR expression visitor."""
    return bool(_TRANSCENDENTAL.search(str(sch.get(block).body)))


def schedule_generic(sch, lanes: int, parallel: bool = True) -> None:
    """Injective stages inlined into their consumers; then parallel outer spatial loops and a vector
    innermost loop for every stage left."""
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}
    for block in _blocks(sch):
        if len(sch.get_consumers(block)) > 1 and _calls_transcendental(sch, block):
            continue                  # softmax's exp, read by its sum and its normalization: computed once
        if sch.get(block).name_hint not in outputs and all(t == _SPATIAL for t in _iter_types(sch, block)):
            try:
                sch.compute_inline(block)
            except Exception:  # ScheduleError: not inlinable (e.g. read by a reduction with a different shape)
                pass
    for block in _blocks(sch):
        loops = sch.get_loops(block)
        types = _iter_types(sch, block)
        if len(loops) != len(types) or not loops:
            continue
        spatial = 0
        while spatial < len(types) and types[spatial] == _SPATIAL:
            spatial += 1
        if spatial == len(types) and len(loops) > 1:
            _parallel_vector(sch, block, lanes, parallel)
        elif spatial:
            _vector_reduction(sch, block, spatial, lanes, parallel)


def _vector_pool(sch, lanes: int, parallel: bool) -> bool:
    """A max pool on NEON: its window loops outside a vector of output columns (16 bytes of an int8 map),
    so each tap is one vector max; the padded input stays a pass of its own. The generic rule kept the
    window innermost and the pool scalar: parsing_hp's int8 pools on a Cortex-A76 model (see docs/arm.md).
    False (nothing scheduled) where the block is not a plain pool, its float columns are strided, or no
    vector width divides its rows."""
    import tvm

    pool = _block_named(sch, ("pool_max",))
    if pool is None or list(_iter_types(sch, pool)) != [_SPATIAL] * 4 + [_REDUCE] * 2:
        return False
    others = [b for b in _blocks(sch) if sch.get(b).name_hint != sch.get(pool).name_hint]
    if any(len(sch.get_loops(b)) < 2 or any(t != _SPATIAL for t in _iter_types(sch, b)) for b in others):
        return False
    n, c, y, x, ry, rx = sch.get_loops(pool)
    element = tvm.runtime.DataType(str(sch.get(pool).writes[0].source.dtype)).bits // 8
    padded_width = int(sch.get(pool).reads[0].source.shape[-1])
    if padded_width != _extent(sch, x) + _extent(sch, rx) - 1 and element > 1:
        # Strided columns are loaded lane by lane: for 16 bytes that still pays (parsing_hp int8, A72 model
        # 223.8 -> 223.5 M), for 4 floats not always (hand_landmark_lite fp32 64.4 -> 64.8 M).
        return False
    width = next((w for w in (lanes * 4 // element, lanes) if _extent(sch, x) % w == 0), None)
    if width is None:
        return False
    for block in others:                # the padding (and any elementwise stage before it)
        _parallel_vector(sch, block, lanes, parallel)
    x_o, x_i = sch.split(x, [None, width])
    sch.reorder(n, c, y, x_o, ry, rx, x_i)
    rows = sch.fuse(n, c, y)
    if parallel:
        sch.parallel(rows)
    sch.vectorize(x_i)
    sch.unroll(ry)
    sch.unroll(rx)
    init = sch.decompose_reduction(pool, ry)
    if sch.get(sch.get_loops(init)[-1]).kind != sch.get(x_i).kind:
        sch.vectorize(sch.get_loops(init)[-1])
    return True


def _block_named(sch, prefixes: tuple[str, ...]):
    for block in _blocks(sch):
        if sch.get(block).name_hint.startswith(prefixes):
            return block
    return None


def default_schedule(func, lanes: int, dot_kinds=None):
    """(Schedule holding the rule's trace, rule name), or (None, "") when no rule applies. The trace lets
    `optkit tune` record the default as one more measured candidate. `dot_kinds`: the dot-product
    instructions the CPU built for has (None: whatever a packed convolution asks for)."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    parallel = _work(sch) >= PARALLEL_MIN_WORK
    for rule, prefixes, schedule in (("dot", DOT_BLOCKS, schedule_dot_conv),
                                     ("conv", CONV_BLOCK_PREFIXES, schedule_conv),
                                     ("matmul", MATMUL_BLOCK_PREFIXES, schedule_matmul),
                                     ("resize", (ROWS_BLOCK, COLS_BLOCK), schedule_resize)):
        block = _block_named(sch, prefixes)
        if block is None:
            continue
        try:
            if rule == "dot":
                kind = kind_of_block(sch.get(block).name_hint)
                schedule(sch, block, lanes, parallel, dot_kinds is None or kind in dot_kinds)
            else:
                schedule(sch, block, lanes, parallel)
            schedule_generic_rest(sch, lanes, parallel, skip=prefixes + PACK_BLOCKS)
            return sch, rule
        except Exception:  # fall back to the generic rule on a fresh schedule
            sch = Schedule(func)
    if lanes == NEON_LANES:
        try:
            if _vector_pool(sch, lanes, parallel):
                return sch, "generic"
        except Exception:  # ScheduleError: the generic rule on a fresh schedule
            sch = Schedule(func)
    try:
        schedule_generic(sch, lanes, parallel)
        return sch, "generic"
    except Exception:  # ScheduleError or a rule's own refusal: keep TVM's loops
        return None, ""


def schedule_function(func, lanes: int, dot_kinds=None):
    """(scheduled PrimFunc, rule name), or (None, "") when no rule applies."""
    sch, rule = default_schedule(func, lanes, dot_kinds)
    return (sch.mod["main"] if sch is not None else None), rule


def schedule_generic_rest(sch, lanes: int, parallel: bool = True, skip: tuple[str, ...] = ()) -> None:
    """Stages a convolution function keeps at its root besides the nest (padding, casts): parallel and
    vectorized."""
    for block in _blocks(sch):
        if sch.get(block).name_hint.startswith(skip):
            continue
        loops = sch.get_loops(block)
        types = _iter_types(sch, block)
        alone = bool(loops) and len(sch.get_child_blocks(loops[0])) == 1      # not computed inside the nest
        if alone and len(loops) == len(types) >= 2 and all(t == _SPATIAL for t in types):
            _parallel_vector(sch, block, lanes, parallel)


def schedule_module(mod, target, stats: ScheduleStats | None = None):
    """Schedule every PrimFunc not already scheduled (by a tuning database) with the default rules."""
    from tvm import relax

    stats = stats or ScheduleStats()
    lanes = vector_lanes(target)
    dot_kinds = {dot_product_kind(target)} - {None}
    updates = {}
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            continue
        if func.attrs is not None and SCHEDULED in func.attrs and func.attrs[SCHEDULED]:
            stats.from_database.append(gv.name_hint)
            continue
        scheduled, rule = schedule_function(func, lanes, dot_kinds)
        if scheduled is None:
            stats.unscheduled.append(gv.name_hint)
            continue
        getattr(stats, rule).append(gv.name_hint)
        updates[gv] = scheduled.with_attr(SCHEDULED, True)
    for gv, func in updates.items():
        mod[gv] = func
    return mod, stats
