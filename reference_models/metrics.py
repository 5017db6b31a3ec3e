"""Task metrics in numpy: mIoU (parsing), AP@0.5 (detection), PCK and OKS-AP (pose), NME (landmarks),
PSNR / SSIM (style transfer against the fp32 output)."""

from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, target: np.ndarray, classes: int) -> np.ndarray:
    idx = target.astype(np.int64).ravel() * classes + pred.astype(np.int64).ravel()
    return np.bincount(idx, minlength=classes * classes).reshape(classes, classes)


def miou(conf: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean IoU over classes that occur in targets or predictions, from an accumulated confusion matrix."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), iou


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes (x0, y0, x1, y1): a is N x 4, b is M x 4 → N x M."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (all-point interpolation, as in VOC 2010+ and COCO-style)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def detection_ap(detections: list, ground_truth: list, classes: int, iou_threshold: float = 0.5) -> tuple[float, list]:
    """AP@iou per class and their mean. detections[i] = (boxes Nx4, scores N, labels N) for image i;
    ground_truth[i] = (boxes Mx4, labels M). Greedy matching by score; a GT box matches once."""
    aps = []
    for c in range(classes):
        scored, n_gt = [], 0
        for (dboxes, dscores, dlabels), (gboxes, glabels) in zip(detections, ground_truth):
            gsel = np.asarray(gboxes).reshape(-1, 4)[np.asarray(glabels) == c]
            n_gt += len(gsel)
            dsel = np.asarray(dlabels) == c
            db, ds = np.asarray(dboxes).reshape(-1, 4)[dsel], np.asarray(dscores)[dsel]
            order = np.argsort(-ds, kind="stable")
            used = np.zeros(len(gsel), bool)
            ious = box_iou(db[order], gsel) if len(gsel) else np.zeros((len(order), 0))
            for k, j in enumerate(order):
                hit = False
                if ious.shape[1]:
                    cand = np.where(~used & (ious[k] >= iou_threshold))[0]
                    if len(cand):
                        used[cand[np.argmax(ious[k, cand])]] = hit = True
                scored.append((ds[j], hit))
        if n_gt == 0:
            continue
        scored.sort(key=lambda t: -t[0])
        hits = np.array([h for _, h in scored], bool)
        tp, fp = np.cumsum(hits), np.cumsum(~hits)
        recall = tp / n_gt if len(hits) else np.zeros(0)
        precision = tp / np.maximum(tp + fp, 1) if len(hits) else np.zeros(0)
        aps.append(average_precision(recall, precision))
    return (float(np.mean(aps)) if aps else 0.0), aps


def pck(pred: np.ndarray, gt: np.ndarray, scale: np.ndarray, alpha: float = 0.2) -> float:
    """Fraction of visible GT keypoints whose prediction lies within alpha * scale (per person).
    pred, gt: P x K x 2 (+ visibility in gt[..., 2]); scale: P (for example torso length)."""
    vis = gt[..., 2] > 0
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    ok = dist <= alpha * scale[:, None]
    return float(ok[vis].mean()) if vis.any() else 0.0


def oks(pred: np.ndarray, gt: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """Object keypoint similarity between one predicted and one GT person (COCO definition)."""
    vis = gt[:, 2] > 0
    if not vis.any():
        return 0.0
    d2 = np.sum((pred[:, :2] - gt[:, :2]) ** 2, axis=1)
    e = d2 / (2 * area * (2 * sigmas) ** 2 + np.spacing(1))
    return float(np.mean(np.exp(-e[vis])))


OKS_THRESHOLDS = np.arange(0.5, 0.96, 0.05)   # COCO's 0.50:0.05:0.95


def oks_ap(predictions: list, ground_truth: list, areas: list, sigmas: np.ndarray,
           thresholds: np.ndarray = OKS_THRESHOLDS) -> float:
    """COCO-style keypoint AP averaged over OKS thresholds. predictions[i] = (P x K x 3 people with
    scores in [..., 2]... , scores P); ground_truth[i] = G x K x 3; areas[i] = G."""
    aps = []
    for t in thresholds:
        scored, n_gt = [], 0
        for (people, scores), gts, ar in zip(predictions, ground_truth, areas):
            n_gt += len(gts)
            used = np.zeros(len(gts), bool)
            for k in np.argsort(-np.asarray(scores), kind="stable"):
                sims = np.array([oks(people[k], g, a, sigmas) for g, a in zip(gts, ar)])
                sims[used] = -1
                hit = bool(len(sims) and sims.max() >= t)
                if hit:
                    used[int(np.argmax(sims))] = True
                scored.append((scores[k], hit))
        scored.sort(key=lambda s: -s[0])
        hits = np.array([h for _, h in scored], bool)
        if n_gt == 0:
            continue
        tp, fp = np.cumsum(hits), np.cumsum(~hits)
        aps.append(average_precision(tp / n_gt, tp / np.maximum(tp + fp, 1)) if len(hits) else 0.0)
    return float(np.mean(aps)) if aps else 0.0


def nme(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray) -> float:
    """Normalised mean error: mean point distance divided by a per-face normaliser (inter-ocular distance).
    pred, gt: N x L x 2; norm: N."""
    return float(np.mean(np.linalg.norm(pred - gt, axis=-1).mean(-1) / norm))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def _box_filter(x: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k windows (valid positions only), via integral images on the last two axes."""
    c = np.cumsum(np.cumsum(np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 0), (1, 0)]), -2), -1)
    return (c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]) / (k * k)


def ssim(a: np.ndarray, b: np.ndarray, peak: float = 1.0, window: int = 7) -> float:
    """Mean SSIM with a uniform window (as in skimage's default), over channels-first or HxW arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _box_filter(a, window), _box_filter(b, window)
    n = window * window
    cov = n / (n - 1)
    va = (_box_filter(a * a, window) - mu_a ** 2) * cov
    vb = (_box_filter(b * b, window) - mu_b ** 2) * cov
    vab = (_box_filter(a * b, window) - mu_a * mu_b) * cov
    s = ((2 * mu_a * mu_b + c1) * (2 * vab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(s.mean())
