"""Face landmarks: one face per 128x128 crop; metric NME (mean point error / inter-ocular distance)."""

from __future__ import annotations

import numpy as np

from ..faces import CROP as SIZE
from ..faces import LANDMARKS, interocular, sample
from ..metrics import nme
from ..task import EVAL_SEED, Evaluation, Task, image_input


def landmarks_from_output(out: np.ndarray) -> np.ndarray:
    return np.asarray(out).reshape(-1, LANDMARKS, 2) * SIZE


class FaceTask(Task):
    name = "face"
    description = "68-point face landmarks (MobileNet-style regressor), 128x128"
    input_shape = (1, 3, SIZE, SIZE)
    metric_name = "NME"
    higher_is_better = False
    seed_note = "production pipeline: 'robust on low-quality selfies', no number published (seed-facts)"
    data = "faces.py: one face per crop, yaw up to ~35 degrees, 68 landmarks (iBUG layout)"

    def sample(self, index, seed=EVAL_SEED):
        s = sample(seed, index, SIZE)
        return {self.input_name: image_input(s.image)}, s.landmarks

    def score(self, outputs, labels):
        pred = np.concatenate([landmarks_from_output(out["landmarks"]) for out in outputs])
        gt = np.stack(labels)
        value = nme(pred, gt, interocular(gt))
        within = float(np.mean(np.linalg.norm(pred - gt, axis=-1).mean(-1) / interocular(gt) < 0.08))
        return Evaluation(self.name, self.metric_name, value, len(labels), higher_is_better=False,
                          details={"fraction_below_0.08": round(within, 4)})
