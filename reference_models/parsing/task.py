"""Parsing: one person per 240x320 scene, six labels; metric mIoU over the evaluation set."""

from __future__ import annotations

import numpy as np

from ..metrics import confusion, miou
from ..people import PARTS, sample
from ..task import EVAL_SEED, Evaluation, Task, image_input


class ParsingTask(Task):
    name = "parsing"
    description = "real-time human parsing (6 parts), 240x320"
    input_shape = (1, 3, 240, 320)
    metric_name = "mIoU"
    size_budget_mb = 1.7
    seed_note = "production model: 0.94 mIoU on real photos (seed-facts)"
    data = "people.py: one articulated figure per scene, 6 labels (background, hair, face, torso, arms, legs)"

    def sample(self, index, seed=EVAL_SEED):
        s = sample(seed, index, self.input_shape[2], self.input_shape[3], people=1)
        return {self.input_name: image_input(s.image)}, s.parts

    def score(self, outputs, labels):
        conf = np.zeros((len(PARTS), len(PARTS)), np.int64)
        for out, target in zip(outputs, labels):
            pred = next(iter(out.values()))[0].argmax(0)
            conf += confusion(pred, target, len(PARTS))
        value, per_class = miou(conf)
        return Evaluation(self.name, self.metric_name, value, len(labels),
                          details={"iou": {p: round(float(v), 4) for p, v in zip(PARTS, per_class)}})
