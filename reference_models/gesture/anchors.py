"""SSD anchors, box encoding and the numpy post-process (decode + per-class NMS) that the harness uses.

The graph outputs raw `scores` (1 x N x 4: background, rock, paper, scissors; softmax applied) and
`deltas` (1 x N x 4: SSD encoding with variances 0.1/0.2); everything after that happens here."""

from __future__ import annotations

import numpy as np

from ..metrics import box_iou

SIZE = 256
STRIDES = (8, 16, 32)
SCALES = ((24, 36), (56, 80), (112, 160))          # anchor sides in pixels per level
RATIOS = (1.0,)                                    # hands are roughly square boxes
VARIANCES = (0.1, 0.2)
ANCHORS_PER_CELL = len(SCALES[0]) * len(RATIOS)  # the same on every level


def anchors(size: int = SIZE) -> np.ndarray:
    """All anchors as (cx, cy, w, h) in pixels, level by level, row-major, anchor fastest."""
    out = []
    for stride, scales in zip(STRIDES, SCALES):
        n = size // stride
        ys, xs = np.mgrid[0:n, 0:n]
        centres = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], -1).reshape(-1, 1, 2)
        shapes = np.array([(s * np.sqrt(r), s / np.sqrt(r)) for s in scales for r in RATIOS]).reshape(1, -1, 2)
        level = np.concatenate([np.broadcast_to(centres, (n * n, shapes.shape[1], 2)),
                                np.broadcast_to(shapes, (n * n, shapes.shape[1], 2))], -1)
        out.append(level.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def to_corners(cxcywh: np.ndarray) -> np.ndarray:
    cx, cy, w, h = cxcywh.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def encode(boxes: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return np.stack([(cx - anchor[:, 0]) / anchor[:, 2] / VARIANCES[0], (cy - anchor[:, 1]) / anchor[:, 3] / VARIANCES[0],
                     np.log(w / anchor[:, 2]) / VARIANCES[1], np.log(h / anchor[:, 3]) / VARIANCES[1]], -1)


def decode(deltas: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    cx = anchor[:, 0] + deltas[:, 0] * VARIANCES[0] * anchor[:, 2]
    cy = anchor[:, 1] + deltas[:, 1] * VARIANCES[0] * anchor[:, 3]
    w = anchor[:, 2] * np.exp(np.clip(deltas[:, 2] * VARIANCES[1], -4, 4))
    h = anchor[:, 3] * np.exp(np.clip(deltas[:, 3] * VARIANCES[1], -4, 4))
    return to_corners(np.stack([cx, cy, w, h], -1))


def match(gt_boxes: np.ndarray, gt_labels: np.ndarray, anchor: np.ndarray, pos: float = 0.5, neg: float = 0.4):
    """Training targets: class per anchor (0 background, -1 ignore, k+1 for class k) and encoded boxes."""
    cls = np.zeros(len(anchor), np.int64)
    reg = np.zeros((len(anchor), 4), np.float32)
    if len(gt_boxes) == 0:
        return cls, reg
    iou = box_iou(to_corners(anchor), gt_boxes)
    best_gt = iou.argmax(1)
    best_iou = iou.max(1)
    best_iou[iou.argmax(0)] = 1.0                # every box gets at least its best anchor
    best_gt[iou.argmax(0)] = np.arange(len(gt_boxes))
    cls[(best_iou >= neg) & (best_iou < pos)] = -1
    positive = best_iou >= pos
    cls[positive] = gt_labels[best_gt[positive]] + 1
    reg[positive] = encode(gt_boxes[best_gt[positive]], anchor[positive])
    return cls, reg


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.45) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        if len(order) == 1:
            break
        ious = box_iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][ious < threshold]
    return np.array(keep, np.int64)


def postprocess(scores: np.ndarray, deltas: np.ndarray, score_threshold: float = 0.05, max_detections: int = 20,
                size: int = SIZE):
    """One image: scores N x 4, deltas N x 4 → boxes K x 4 (pixels), scores K, labels K (0..2)."""
    anchor = anchors(size)
    boxes = np.clip(decode(deltas, anchor), 0, size)
    out_b, out_s, out_l = [], [], []
    for c in range(1, scores.shape[1]):
        sel = scores[:, c] > score_threshold
        if not sel.any():
            continue
        b, s = boxes[sel], scores[sel, c]
        keep = nms(b, s)
        out_b.append(b[keep])
        out_s.append(s[keep])
        out_l.append(np.full(len(keep), c - 1))
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    b, s, lab = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_l)
    top = np.argsort(-s, kind="stable")[:max_detections]
    return b[top], s[top], lab[top]
