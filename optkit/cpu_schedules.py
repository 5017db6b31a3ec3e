"""Default CPU schedules: what every fused TIR function gets when no tuning record covers it.

TVM 0.27's CPU pipeline schedules nothing: a legalized conv2d runs as scalar, single-threaded loop nests.
These rules, written with TVM's scheduling API (s_tir.Schedule), give the operators that dominate mobile
vision models a sane shape for any LLVM CPU target:

- convolutions (dense, 1x1, grouped, depthwise, integer): an output register tile of `f` output
  channels x `w` output columns (w = the target's SIMD width where the row allows), accumulated in a local
  buffer across the reduction loops, vectorized along the row, the fused bias/activation/residual
  epilogue computed in the same tile; rows of channel blocks run in parallel;
- everything else (padding, resize, concat, pooling, casts): outer loops in parallel, the innermost
  vectorized when it is short enough to be a vector.

Each rule is tried on a copy; a function a rule cannot handle keeps TVM's unscheduled loops (correct,
slow), and `schedule_module` reports how many functions each rule took.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEDULED = "tirx.is_scheduled"   # set by MetaScheduleApplyDatabase on tuned functions, and by us
CONV_BLOCK_PREFIXES = ("conv2d", "group_conv2d", "depthwise_conv2d")
_SPATIAL, _REDUCE = 0, 2


@dataclass
class ScheduleStats:
    conv: list[str] = field(default_factory=list)
    generic: list[str] = field(default_factory=list)
    unscheduled: list[str] = field(default_factory=list)
    from_database: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}


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


def _row_tile(width: int, lanes: int) -> int:
    """Columns per register tile: a multiple of the SIMD width that divides the row; else the row itself when
    it fits one register; else a divisor near the SIMD width; else (prime widths) the SIMD width, with the
    last tile predicated."""
    for k in (2, 1):
        if width % (lanes * k) == 0:
            return lanes * k
    if width <= lanes:
        return width
    near = _divisor(width, range(2 * lanes, lanes // 2, -1))
    return near if near > 1 else lanes


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


def _parallel_vector(sch, block, lanes: int) -> None:
    """A spatial stage: all loops but the innermost fused and parallel, the innermost vectorized."""
    loops = sch.get_loops(block)
    sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])
    inner = loops[-1]
    extent = _extent(sch, inner)
    if extent > 4 * lanes:
        _, inner = sch.split(inner, [None, _row_tile(extent, lanes)])
    sch.vectorize(inner)


def schedule_conv(sch, conv, lanes: int) -> None:
    loops = sch.get_loops(conv)
    types = _iter_types(sch, conv)
    if len(loops) != 7 or types[:4] != [_SPATIAL] * 4 or any(t != _REDUCE for t in types[4:]):
        raise ValueError("not an NCHW convolution nest")
    for producer in sch.get_producers(conv):
        if _is_copy(sch, producer):
            sch.compute_inline(producer)
    names = [sch.get(b).name_hint for b in _blocks(sch)]
    epilogue = names[names.index(sch.get(conv).name_hint) + 1:]
    n, f, y, x, rc, ry, rx = loops
    depthwise = _extent(sch, rc) == 1
    f_tile = 1 if depthwise else _divisor(_extent(sch, f), (8, 4, 2))
    x_tile = _row_tile(_extent(sch, x), lanes)
    f_o, f_i = sch.split(f, [None, f_tile])
    x_o, x_i = sch.split(x, [None, x_tile])
    sch.reorder(n, f_o, y, x_o, rc, ry, rx, f_i, x_i)
    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, x_o, preserve_unit_loops=True)
    # The epilogue (bias, activation, residual add, requantize) runs in the tile: a stage that is the only
    # reader of its single producer is inlined into it; any other stage (HardSwish reads the biased value
    # twice) is computed at the tile. reverse_compute_inline is only tried in the first case: TVM 0.27
    # accepts it with other readers left and then fails at build time.
    for name in epilogue:
        block = sch.get_sblock(name)
        producers = sch.get_producers(block)
        if len(producers) == 1 and len(sch.get_consumers(producers[0])) == 1:
            try:
                sch.reverse_compute_inline(block)
                continue
            except Exception:  # ScheduleError: not elementwise on its producer
                pass
        sch.reverse_compute_at(block, x_o, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(block)[-1])
    sch.vectorize(sch.get_loops(acc)[-1])
    if f_tile > 1:
        sch.unroll(f_i)
    sch.vectorize(x_i)
    sch.parallel(sch.fuse(n, f_o, y))
    init = sch.decompose_reduction(conv, rc)
    init_loops = sch.get_loops(init)
    if sch.get(init_loops[-1]).kind != sch.get(x_i).kind:
        sch.vectorize(init_loops[-1])


def schedule_generic(sch, lanes: int) -> None:
    """Injective stages inlined into their consumers; then parallel outer spatial loops and a vector
    innermost loop for every stage left."""
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}
    for block in _blocks(sch):
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
            _parallel_vector(sch, block, lanes)
        elif spatial:
            sch.parallel(sch.fuse(*loops[:spatial]) if spatial > 1 else loops[0])


def _conv_block(sch):
    for block in _blocks(sch):
        if sch.get(block).name_hint.startswith(CONV_BLOCK_PREFIXES):
            return block
    return None


def schedule_function(func, lanes: int):
    """(scheduled PrimFunc, rule name), or (None, "") when no rule applies."""
    from tvm.s_tir import Schedule

    sch = Schedule(func)
    conv = _conv_block(sch)
    if conv is not None:
        try:
            schedule_conv(sch, conv, lanes)
            schedule_generic_rest(sch, lanes)
            return sch.mod["main"], "conv"
        except Exception:  # fall back to the generic rule on a fresh schedule
            sch = Schedule(func)
    try:
        schedule_generic(sch, lanes)
        return sch.mod["main"], "generic"
    except Exception:  # ScheduleError or a rule's own refusal: keep TVM's loops
        return None, ""


def schedule_generic_rest(sch, lanes: int) -> None:
    """Stages a convolution function keeps besides its nest (padding, casts): parallel and vectorized."""
    for block in _blocks(sch):
        if sch.get(block).name_hint.startswith(CONV_BLOCK_PREFIXES):
            continue
        loops = sch.get_loops(block)
        types = _iter_types(sch, block)
        if len(loops) == len(types) >= 2 and all(t == _SPATIAL for t in types):
            _parallel_vector(sch, block, lanes)


def schedule_module(mod, target, stats: ScheduleStats | None = None):
    """Schedule every PrimFunc not already scheduled (by a tuning database) with the default rules."""
    from tvm import relax

    stats = stats or ScheduleStats()
    lanes = vector_lanes(target)
    updates = {}
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            continue
        if func.attrs is not None and SCHEDULED in func.attrs and func.attrs[SCHEDULED]:
            stats.from_database.append(gv.name_hint)
            continue
        scheduled, rule = schedule_function(func, lanes)
        if scheduled is None:
            stats.unscheduled.append(gv.name_hint)
            continue
        getattr(stats, rule).append(gv.name_hint)
        updates[gv] = scheduled.with_attr(SCHEDULED, True)
    for gv, func in updates.items():
        mod[gv] = func
    return mod, stats
