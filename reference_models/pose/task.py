"""Pose: 1-3 people per 320x320 scene; the model's heatmaps and PAFs are grouped into people by
postprocess.group_people; metrics: OKS-AP (COCO-style, averaged over OKS 0.50:0.95) and PCK@0.2."""

from __future__ import annotations

import numpy as np

from ..metrics import oks, oks_ap, pck
from ..people import JOINTS, sample
from ..task import EVAL_SEED, Evaluation, Task, image_input
from .postprocess import group_people

# Per-joint OKS falloff, from COCO's sigmas for the corresponding joints (head top and neck take the ear/
# shoulder values).
SIGMAS = np.array([0.035, 0.079, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107, 0.087, 0.089, 0.107,
                   0.087, 0.089])


def person_area(kps: np.ndarray) -> float:
    vis = kps[:, 2] > 0
    if vis.sum() < 2:
        return 1.0
    x, y = kps[vis, 0], kps[vis, 1]
    return float((x.max() - x.min()) * (y.max() - y.min())) * 1.3  # keypoint box → approximate body area


def torso_size(kps: np.ndarray) -> float:
    return float(np.linalg.norm(kps[1, :2] - (kps[8, :2] + kps[11, :2]) / 2))


class PoseTask(Task):
    name = "pose"
    description = "multi-person pose (14 joints, heatmaps + PAFs), 320x320"
    input_shape = (1, 3, 320, 320)
    metric_name = "OKS-AP"
    size_budget_mb = 2.5
    seed_note = "production model: no accuracy published; 11 ms on Snapdragon 845, 66 ms on RK3399 (seed-facts)"
    data = "people.py: 1-3 figures per scene, 14 keypoints with visibility"

    def sample(self, index, seed=EVAL_SEED):
        s = sample(seed, index, self.input_shape[2], self.input_shape[3])
        return {self.input_name: image_input(s.image)}, s.keypoints

    def score(self, outputs, labels):
        predictions, gts, areas = [], [], []
        matched_pred, matched_gt, scales = [], [], []
        for out, gt in zip(outputs, labels):
            heat, paf = out["heatmaps"][0], out["pafs"][0]
            people, scores = group_people(heat, paf)
            predictions.append((people, scores))
            gts.append(gt)
            ar = [person_area(g) for g in gt]
            areas.append(ar)
            for g, a in zip(gt, ar):  # PCK on the best-matching predicted person (or nothing)
                sims = [oks(p, g, a, SIGMAS) for p in people]
                best = people[int(np.argmax(sims))][:, :2] if sims else np.full((len(JOINTS), 2), -1e6)
                matched_pred.append(best)
                matched_gt.append(g)
                scales.append(torso_size(g))
        value = oks_ap(predictions, gts, areas, SIGMAS)
        pck_value = pck(np.array(matched_pred), np.array(matched_gt), np.array(scales))
        return Evaluation(self.name, self.metric_name, value, len(labels),
                          details={"PCK@0.2": round(pck_value, 4), "people": int(sum(len(g) for g in gts))})
