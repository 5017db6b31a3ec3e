"""Separable bilinear resize for TVM Relax.

TVM legalizes a bilinear `resize2d` into one loop nest that, for every output element, recomputes both
source coordinates (casts, floor, clamps) and gathers four input values: on the parsing model's decoder
that was 40 % of the whole run. The coordinates depend only on the output row or column, and bilinear
interpolation is separable, so this rewrite computes it in two passes with compile-time tables:

    rows[n, c, y_in, x]  = in[n, c, y_in, x0[x]] * ax[x] + in[n, c, y_in, x1[x]] * bx[x]
    out[n, c, y, x]      = rows[n, c, y0[y], x] * ay[y] + rows[n, c, y1[y], x] * by[y]

The tables hold exactly what TVM's own nest computes per element (same float32 coordinate formula, same
clamping, weights `1 - frac` and `frac`) and the products are summed in the same order, so the result is
the same arithmetic; the second pass reads whole rows (contiguous vectors) instead of gathering.
Handled: NCHW, float32, static shapes, coordinate modes half_pixel / pytorch_half_pixel / align_corners /
asymmetric. Anything else keeps TVM's nest.

Decoder upscales are usually integer factors (x2 in parsing), and there the column tables repeat: output
column 2k + p reads source columns k + offset(p), weighted alike for every k. The first pass then needs no
tables: it reads each row, copied with its edge columns repeated, at fixed offsets, and writes the phases
interleaved (column_phases). The table form gathered two source values per output lane by lane; this one is
contiguous loads and shuffles, 3x faster on parsing's four resizes (48 x 60 x 80 -> 120 x 160 bytes: 250 ->
about 80 us), with the same arithmetic.

A nearest-neighbour upscale by power-of-two factors (PyTorch's Upsample: asymmetric coordinates, rounded
down) takes the same two-pass form (nearest_upscale): each input row widened, then copied to its output
rows, instead of TVM's nest computing float coordinates for every output element.

In a QDQ model a resize sits between a DequantizeLinear and a QuantizeLinear. TVM's fusion treats the
two-pass function as opaque, so the dequantize stayed at the end of the producing layer and the quantize
went to the next function: the resize read and wrote float32, 4x the bytes (parsing int8: its three decoder
resizes and the final one were 0.57 of 3.2 ms). A per-tensor dequantize feeding the resize, and a per-tensor
quantize that is the resize's only reader, are therefore done inside the two passes: the first pass reads
the 1-byte input, the second writes 1-byte output (quantized with the scale's reciprocal, as
relax_int8.quantize_by_reciprocal does everywhere else).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx
from tvm.relax.expr_functor import PyExprMutator, mutator

from optkit.backend.rewrites.int8 import per_tensor_qparams, quantized_value, reciprocal
from optkit.backend.rewrites.mutator import rewrite_functions

_RESIZE = tvm.ir.Op.get("relax.image.resize2d")
_DEQUANTIZE = tvm.ir.Op.get("relax.dequantize")
_QUANTIZE = tvm.ir.Op.get("relax.quantize")
MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
ROWS_BLOCK = "resize_rows"
COLS_BLOCK = "resize_cols"
PADDED_ROW_BLOCK = "resize_padded_row"
PHASES_ATTR = "resize_phases"        # on the rows block of an integer upscale: the factor


def source_coordinates(out_size: int, in_size: int, mode: str) -> np.ndarray:
    """Float32 source coordinate of every output index, as TVM's topi.image.resize computes it."""
    f32 = np.float32
    x = np.arange(out_size, dtype=f32)
    if mode == "align_corners":
        scale = f32(in_size - 1) / f32(out_size - 1) if out_size > 1 else f32(0)
        return (x * f32(scale)).astype(f32)
    scale = f32(in_size) / f32(out_size)
    if mode == "asymmetric":
        return (x * scale).astype(f32)
    coords = ((x + f32(0.5)) * scale - f32(0.5)).astype(f32)
    if mode == "pytorch_half_pixel" and out_size == 1:
        coords[:] = 0
    return coords


def interpolation_table(out_size: int, in_size: int, mode: str):
    """(first index, second index, first weight, second weight) per output index."""
    coords = source_coordinates(out_size, in_size, mode)
    base = np.floor(coords)
    frac = (coords - base).astype(np.float32)
    first = np.clip(base, 0, in_size - 1).astype(np.int32)
    second = np.clip(base + 1, 0, in_size - 1).astype(np.int32)
    return first, second, (np.float32(1.0) - frac).astype(np.float32), frac


def column_phases(table, in_size: int, out_size: int) -> list[tuple[int, int, float, float]] | None:
    """For an integer upscale whose table repeats every `factor` outputs (half_pixel, pytorch_half_pixel and
    asymmetric at x2, x4, ...): per phase p, (first offset, second offset, first weight, second weight) such
    that output factor*k + p reads source columns clamp(k + offset) with those weights, exactly as the table
    says. None where the table is not of that form (align_corners, odd ratios, downscales)."""
    if out_size % in_size or out_size == in_size:
        return None
    factor = out_size // in_size
    first, second, first_weight, second_weight = table
    k = np.arange(in_size)
    middle = in_size // 2
    phases = []
    for p in range(factor):
        offsets = (int(first[factor * middle + p]) - middle, int(second[factor * middle + p]) - middle)
        if not (np.array_equal(first[p::factor], np.clip(k + offsets[0], 0, in_size - 1))
                and np.array_equal(second[p::factor], np.clip(k + offsets[1], 0, in_size - 1))
                and np.all(first_weight[p::factor] == first_weight[p])
                and np.all(second_weight[p::factor] == second_weight[p])):
            return None
        phases.append((*offsets, float(first_weight[p]), float(second_weight[p])))
    return phases


def _reader(data, dequantize):
    """data's element as float32: as stored, or as TVM's dequantize computes it from (scale, zero point)."""
    if dequantize is None:
        return data.__getitem__
    scale, zero_point = dequantize

    def value(i):
        return (data[i].astype("int32") - zero_point).astype("float32") * tirx.const(scale, "float32")
    return value


def _clamped(table, i, size):
    # The tables are already in range; the clamp makes that visible to TVM's bound analysis (a schedule can
    # then compute the first pass per channel plane) and keeps the function memory-safe when it is run on
    # arbitrary tables (MetaSchedule's runner feeds random arguments).
    return te.max(te.min(table[i], size - 1), 0)


def _gathered_rows(value, shape, x0, x1, ax, bx):
    n, c, h, w = shape
    return te.compute((n, c, h, x0.shape[0]), lambda b, ch, i, j: value((b, ch, i, _clamped(x0, j, w))) * ax[j]
                      + value((b, ch, i, _clamped(x1, j, w))) * bx[j], name=ROWS_BLOCK)


def _phased_rows(value, shape, phases):
    """The horizontal pass of an integer upscale (column_phases): each input row is first copied with its
    edge columns repeated, so that every output phase reads it at a fixed offset; no index tables. Unrolled
    over the phases (schedule_resize), the loop over k is a plain interleaved store that LLVM vectorizes."""
    n, c, h, w = shape
    factor = len(phases)
    left = max(0, -min(min(p[:2]) for p in phases))
    right = max(0, max(max(p[:2]) for p in phases))
    padded = te.compute((n, c, h, w + left + right),
                        lambda b, ch, i, m: value((b, ch, i, te.max(te.min(m - left, w - 1), 0))), name=PADDED_ROW_BLOCK)

    def interpolated(b, ch, i, j):
        k, phase = j // factor, j % factor
        out = None
        for p, (first, second, first_weight, second_weight) in reversed(list(enumerate(phases))):
            term = (padded[b, ch, i, k + first + left] * tirx.const(first_weight, "float32")
                    + padded[b, ch, i, k + second + left] * tirx.const(second_weight, "float32"))
            out = term if out is None else tirx.Select(phase == p, term, out)
        return out

    return te.compute((n, c, h, w * factor), interpolated, name=ROWS_BLOCK, attrs={PHASES_ATTR: factor})


def separable_bilinear(data, y0, y1, ay, by, x0=None, x1=None, ax=None, bx=None, phases=None,
                       dequantize=None, quantize=None):
    """The two passes: horizontal through the column tables (x0, x1, ax, bx) or, for an integer upscale, by
    `phases` (column_phases); then vertical through the row tables. dequantize = (scale, zero point): `data`
    holds integers, read as TVM's dequantize computes them; quantize = (inverse scale, zero point, dtype):
    the output is requantized."""
    value = _reader(data, dequantize)
    h = data.shape[2]
    rows = (_phased_rows(value, data.shape, phases) if phases is not None
            else _gathered_rows(value, data.shape, x0, x1, ax, bx))

    def interpolated(b, ch, i, j):
        out = rows[b, ch, _clamped(y0, i, h), j] * ay[i] + rows[b, ch, _clamped(y1, i, h), j] * by[i]
        return out if quantize is None else quantized_value(out, *quantize)

    return te.compute((*rows.shape[:2], y0.shape[0], rows.shape[3]), interpolated, name=COLS_BLOCK)


def nearest_factors(method: str, mode: str, rounding: str, in_hw, out_hw) -> tuple[int, int] | None:
    """(vertical, horizontal) factor of a nearest-neighbour upscale that picks source index out // factor on
    both axes: asymmetric coordinates rounded down (PyTorch's Upsample export), power-of-two factors, for
    which out * (1 / factor) is exact in float32, so TVM's float formula gives the same index."""
    if method != "nearest_neighbor" or mode != "asymmetric" or rounding != "floor":
        return None
    factors = []
    for size, out_size in zip(in_hw, out_hw):
        factor = out_size // size
        if out_size != factor * size or factor & (factor - 1):
            return None
        factors.append(factor)
    return tuple(factors) if factors != [1, 1] else None


def nearest_upscale(data, factors, dequantize=None, quantize=None):
    """A nearest-neighbour upscale by integer factors in the two-pass form of separable_bilinear: each input
    row is widened (every element written `factor` times, unrolled over the phases by schedule_resize),
    then copied to its output rows. TVM's own nest recomputes float coordinates for every output element.
    dequantize/quantize as in separable_bilinear: a QDQ model's upscale then reads and writes bytes."""
    n, c, h, w = data.shape
    vertical, horizontal = factors
    value = _reader(data, dequantize)

    def widened(b, ch, i, j):
        element = value((b, ch, i, j // horizontal))
        return element if quantize is None else quantized_value(element, *quantize)

    rows = te.compute((n, c, h, w * horizontal), widened, name=ROWS_BLOCK, attrs={PHASES_ATTR: horizontal})
    return te.compute((n, c, h * vertical, w * horizontal), lambda b, ch, i, j: rows[b, ch, i // vertical, j],
                      name=COLS_BLOCK)


def _static_shape(expr) -> list[int] | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None:
        return None
    try:
        return [int(d) for d in shape]
    except (TypeError, ValueError):
        return None


def _quantization_around_resizes(func) -> tuple[dict, dict]:
    """For each resize call of `func`: the per-tensor dequantize call feeding it, and the per-tensor quantize
    to int8/uint8 that is its only reader, where there are such (see the module docstring). Returns
    ({resize call: (dequantize call or None, quantize call or None)}, {quantize call: resize call})."""
    values = relax.analysis.get_var2val(func)
    readers: dict = {}
    for value in values.values():
        for used in relax.analysis.free_vars(value):
            readers.setdefault(used, []).append(value)
    returned = set(relax.analysis.free_vars(func.body.body))
    plans, quantized_by = {}, {}
    for var, value in values.items():
        if not (isinstance(value, relax.Call) and value.op == _RESIZE):
            continue
        source = values.get(value.args[0])
        dequantize = source if (isinstance(source, relax.Call) and source.op == _DEQUANTIZE
                                and per_tensor_qparams(source) is not None) else None
        quantize = None
        users = readers.get(var, [])
        if len(users) == 1 and var not in returned:
            user = users[0]
            if (isinstance(user, relax.Call) and user.op == _QUANTIZE and user.args[0].same_as(var)
                    and per_tensor_qparams(user) is not None and str(user.attrs.out_dtype) in ("int8", "uint8")):
                quantize = user
                quantized_by[user] = value
        plans[value] = (dequantize, quantize)
    return plans, quantized_by


@mutator
class _SeparableResize(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, neon: bool):
        super().__init__(mod)
        self.neon = neon
        self.rewritten = 0
        self.quantized = 0
        self.plans: dict = {}
        self.quantized_by: dict = {}
        for func in mod.functions.values():
            if isinstance(func, relax.Function):
                plans, quantized_by = _quantization_around_resizes(func)
                self.plans.update(plans)
                self.quantized_by.update(quantized_by)
        self.emitted: dict = {}

    def visit_call_(self, call):
        resize = self.quantized_by.get(call)
        if resize is not None and resize in self.emitted:      # a quantize the resize has done
            return self.emitted[resize]
        new = self._separable(call)
        if new is None:
            return self.visit_expr_post_order(call)
        self.emitted[call] = new
        return new

    def _separable(self, call):
        if not (isinstance(call, relax.Call) and call.op == _RESIZE):
            return None
        attrs = call.attrs
        data = call.args[0]
        in_shape, out_shape = _static_shape(data), _static_shape(call)
        if (attrs.layout != "NCHW" or in_shape is None or out_shape is None or len(in_shape) != 4
                or str(data.ty.dtype) != "float32" or str(call.ty.dtype) != "float32"):
            return None
        mode = str(attrs.coordinate_transformation_mode)
        factors = nearest_factors(str(attrs.method), mode, str(attrs.rounding_method), in_shape[2:], out_shape[2:])
        if factors is None and not (attrs.method == "linear" and mode in MODES):
            return None
        dequantize_call, quantize_call = self.plans.get(call, (None, None))
        dequantize = quantize = None
        if dequantize_call is not None:
            data, dequantize = dequantize_call.args[0], per_tensor_qparams(dequantize_call)
        if quantize_call is not None:
            scale, zero_point = per_tensor_qparams(quantize_call)
            quantize = (reciprocal(scale), zero_point, str(quantize_call.attrs.out_dtype), self.neon)
        self.rewritten += 1
        self.quantized += dequantize is not None or quantize is not None
        if factors is not None:
            return self.builder_.emit_te(nearest_upscale, self.visit_expr(data), factors=factors, dequantize=dequantize,
                                         quantize=quantize, primfunc_name_hint="nearest_upscale2d")
        x_table = interpolation_table(out_shape[3], in_shape[3], mode)
        y_table = interpolation_table(out_shape[2], in_shape[2], mode)
        phases = column_phases(x_table, in_shape[3], out_shape[3])
        columns = {} if phases is not None else dict(zip(("x0", "x1", "ax", "bx"), map(relax.const, x_table)))
        return self.builder_.emit_te(separable_bilinear, self.visit_expr(data), *map(relax.const, y_table), **columns,
                                     phases=phases, dequantize=dequantize, quantize=quantize,
                                     primfunc_name_hint="separable_resize2d")


def separable_resizes(mod: tvm.IRModule, neon: bool = False) -> tuple[tvm.IRModule, int]:
    """Rewrite bilinear resize2d calls, and nearest-neighbour upscales by powers of two, into the two-pass
    form, taking in the dequantize before and the quantize after them in QDQ models (requantized as
    quantized_value(neon=neon)); returns the module and the count of resizes rewritten."""
    rewriter = _SeparableResize(mod, neon)
    out = rewrite_functions(rewriter, mod)
    if rewriter.quantized:
        out = relax.transform.DeadCodeElimination()(out)     # the dequantizes nothing else reads
    return out, rewriter.rewritten
