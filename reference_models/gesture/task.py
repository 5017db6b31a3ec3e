"""Gesture: 0-3 hands per 256x256 scene; SSD outputs are decoded and NMS'ed in numpy
(anchors.postprocess); metric: AP@0.5 averaged over rock, paper and scissors."""

from __future__ import annotations

from ..hands import CLASSES, sample
from ..metrics import detection_ap
from ..task import EVAL_SEED, Evaluation, Task, image_input
from .anchors import SIZE, postprocess


class GestureTask(Task):
    name = "gesture"
    description = "rock-paper-scissors hand detector (SSD + FPN), 256x256"
    input_shape = (1, 3, SIZE, SIZE)
    metric_name = "AP@0.5"
    size_budget_mb = 1.9
    seed_note = "production model: AP 0.984 at IoU 0.5 (seed-facts)"
    data = "hands.py: 0-3 hands per scene showing rock, paper or scissors; boxes and classes"

    def sample(self, index, seed=EVAL_SEED):
        s = sample(seed, index, SIZE, SIZE)
        return {self.input_name: image_input(s.image)}, (s.boxes, s.labels)

    def score(self, outputs, labels):
        detections = [postprocess(out["scores"][0], out["deltas"][0]) for out in outputs]
        value, per_class = detection_ap(detections, labels, len(CLASSES))
        return Evaluation(self.name, self.metric_name, value, len(labels),
                          details={"AP": {c: round(a, 4) for c, a in zip(CLASSES, per_class)},
                                   "hands": int(sum(len(b) for b, _ in labels))})
