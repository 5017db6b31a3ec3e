"""im2col for ONNX Conv: the input patches each output position reads, in the order of the weight's
flattened rows (in-channel, kernel row, kernel column), so that `weight @ patches` is the Conv before bias.
Pruning's reconstruction and int8 weight rounding both solve per-layer problems on these."""

from __future__ import annotations

import numpy as np
import onnx

from optkit.graph.index import attr


def conv_patches(x: np.ndarray, node: onnx.NodeProto, kernel: tuple[int, int], groups: int = 1) -> np.ndarray:
    """Patches of an N x C x H x W input: (groups, C/groups · kh · kw, N · Hout · Wout)."""
    if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"Conv '{node.name}': auto_pad is not modelled; fold it into pads first")
    kh, kw = kernel
    sh, sw = attr(node, "strides", [1, 1])
    dh, dw = attr(node, "dilations", [1, 1])
    pt, pl, pb, pr = attr(node, "pads", [0, 0, 0, 0])
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, c, h, w = xp.shape
    hout = (h - dh * (kh - 1) - 1) // sh + 1
    wout = (w - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, hout, wout), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * (hout - 1) + 1:sh, j * dw:j * dw + sw * (wout - 1) + 1:sw]
    return cols.transpose(1, 2, 3, 0, 4, 5).reshape(groups, (c // groups) * kh * kw, n * hout * wout)
