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
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te
from tvm.relax.expr_functor import PyExprMutator, mutator

from .relax_rewrite import rewrite_functions

_RESIZE = tvm.ir.Op.get("relax.image.resize2d")
MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
ROWS_BLOCK = "resize_rows"
COLS_BLOCK = "resize_cols"


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


def separable_bilinear(data, x0, x1, ax, bx, y0, y1, ay, by):
    n, c, h, w = data.shape
    out_h, out_w = y0.shape[0], x0.shape[0]

    def index(table, i, size):
        # The tables are already in range; the clamp makes that visible to TVM's bound analysis (a schedule
        # can then compute the first pass per channel plane) and keeps the function memory-safe when it is
        # run on arbitrary tables (MetaSchedule's runner feeds random arguments).
        return te.max(te.min(table[i], size - 1), 0)

    rows = te.compute((n, c, h, out_w), lambda b, ch, i, j: data[b, ch, i, index(x0, j, w)] * ax[j]
                      + data[b, ch, i, index(x1, j, w)] * bx[j], name=ROWS_BLOCK)
    return te.compute((n, c, out_h, out_w), lambda b, ch, i, j: rows[b, ch, index(y0, i, h), j] * ay[i]
                      + rows[b, ch, index(y1, i, h), j] * by[i], name=COLS_BLOCK)


def _static_shape(expr) -> list[int] | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None:
        return None
    try:
        return [int(d) for d in shape]
    except (TypeError, ValueError):
        return None


@mutator
class _SeparableResize(PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.rewritten = 0

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if call.op != _RESIZE:
            return call
        attrs = call.attrs
        data = call.args[0]
        in_shape, out_shape = _static_shape(data), _static_shape(call)
        if (attrs.method != "linear" or attrs.layout != "NCHW" or attrs.coordinate_transformation_mode not in MODES
                or in_shape is None or out_shape is None or len(in_shape) != 4 or str(data.ty.dtype) != "float32"
                or str(call.ty.dtype) != "float32"):
            return call
        mode = str(attrs.coordinate_transformation_mode)
        x_table = interpolation_table(out_shape[3], in_shape[3], mode)
        y_table = interpolation_table(out_shape[2], in_shape[2], mode)
        self.rewritten += 1
        return self.builder_.emit_te(separable_bilinear, data, *[relax.const(t) for t in (*x_table, *y_table)],
                                     primfunc_name_hint="separable_resize2d")


def separable_resizes(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Rewrite bilinear resize2d calls into the two-pass form; returns the module and the count."""
    rewriter = _SeparableResize(mod)
    out = rewrite_functions(rewriter, mod)
    return out, rewriter.rewritten
