"""Gathers that cannot read out of bounds.

TVM's ONNX importer lowers Gather to `relax.take` in its default "fast" mode, which reads whatever memory an
out-of-range index points at; TVM prints "Fast mode segfaults when there are out-of-bounds indices" on every
build that has one (style's three brush-size Gathers). ONNX defines Gather only for indices in [-n, n), and
the importer already maps negative ones into range, so "clip" gives the same result for every valid index
and keeps a bad runtime index inside the tensor instead of crashing the process. The cost is a min/max per
index.
"""

from __future__ import annotations

import tvm
from tvm import relax

from optkit.backend.rewrites.mutator import rewrite_calls

_TAKE = tvm.ir.Op.get("relax.take")


def _clipped(call, _builder):
    if call.attrs.mode != "fast":
        return None
    axis = call.attrs.axis
    return relax.op.take(call.args[0], call.args[1], None if axis is None else int(axis), mode="clip")


def clipped_takes(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Every `take` in "fast" mode made "clip"; returns the module and the count rewritten."""
    return rewrite_calls(mod, _TAKE, _clipped)
