"""The interface every reference model offers the harness: a fixed evaluation set generated from a
seed that training never sees, a post-process, and a task metric. Numpy only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Training uses seeds 0..999; every evaluation set is drawn from EVAL_SEED, and calibration data for
# quantization and pruning from CALIBRATION_SEED, so neither training nor calibration sees the eval set.
EVAL_SEED = 1_000_003
CALIBRATION_SEED = 2_000_003

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class Evaluation:
    model: str
    metric: str
    value: float
    samples: int
    higher_is_better: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "metric": self.metric, "value": round(self.value, 6),
                "samples": self.samples, "higher_is_better": self.higher_is_better, "details": self.details}


class Task:
    """Subclasses: name, input name/shape, the eval-set size, how to render a sample, how to score."""

    name: str = ""
    description: str = ""
    input_name: str = "image"
    input_shape: tuple[int, ...] = ()
    metric_name: str = ""
    higher_is_better: bool = True
    eval_size: int = 200          # the full evaluation set; CI evaluates a slice of it
    size_budget_mb: float | None = None   # fp32 ONNX budget from shared/seed-facts.md, where it gives one
    seed_note: str = ""           # what the production model reached (seed-facts), for comparison
    data: str = ""                # which generator makes the data, and what a sample holds
    compile_shapes: str = ""      # --input-shape for a model exported with dynamic dims (TVM needs fixed ones)

    @property
    def onnx_path(self) -> Path:
        return Path(__file__).parent / self.name / f"{self.name}.onnx"

    def sample(self, index: int, seed: int = EVAL_SEED) -> tuple[dict[str, np.ndarray], Any]:
        """Model inputs and the label of sample `index` of the set drawn from `seed` (deterministic)."""
        raise NotImplementedError

    def score(self, outputs: list[dict[str, np.ndarray]], labels: list[Any]) -> Evaluation:
        raise NotImplementedError

    def calibration(self, count: int) -> list[dict[str, np.ndarray]]:
        """Model inputs for calibration, from a seed neither training nor evaluation uses."""
        return [self.sample(i, CALIBRATION_SEED)[0] for i in range(count)]

    def evaluate(self, run: Runner, limit: int | None = None) -> Evaluation:
        n = min(limit or self.eval_size, self.eval_size)
        outputs, labels = [], []
        for i in range(n):
            feeds, label = self.sample(i)
            outputs.append(run(feeds))
            labels.append(label)
        return self.score(outputs, labels)


def image_input(image: np.ndarray) -> np.ndarray:
    """HxWx3 float [0,1] → 1x3xHxW float32, the layout every reference model takes."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32))
