"""A user's own model in the gate: declared in a budgets file, scored by a task-free criterion against its
own fp32 outputs, or by an evaluator a package registers (entry-point group `optkit.evaluators`).

    [my_detector]
    path = "models/my_detector.onnx"        # relative to the budgets file
    input_shapes = "1,3,224,224"            # optional: as --input-shape
    pipeline = "mobile,quantize-int8"
    calibration = "data/calib/"             # any --calibration-data source (images, .npy, .npz)
    evaluation = "data/eval/"               # evaluation inputs (default: the calibration data)
    criterion = "cosine"                    # cosine | sqnr_db | max_abs, or evaluator = "NAME"
    metric_min = 0.99                       # (metric_max for max_abs)
    size_mb_max = 2.0
    [my_detector.latency_ms_max]
    host = 20.0

`UserTask` has the interface of a reference model's Task (sample, calibration, evaluate), so everything
that takes a reference model (check, estimate, tune) takes a declared user model the same way.

An evaluator is a class or factory registered under `optkit.evaluators`; optkit builds it with the
entry's `[NAME.evaluator_options]` and calls it as `evaluator(run, samples, reference) -> float`, where
`run(feeds) -> outputs` is the build under test, `samples` the evaluation inputs and `reference` the fp32
model's outputs on them (an evaluator with labelled data of its own may ignore both). It declares
`metric_name` and `higher_is_better`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from optkit.core.errors import OptionError
from optkit.graph.numerics import make_inputs, sqnr_db, worst_cosines

EVALUATOR_GROUP = "optkit.evaluators"
# criterion -> higher is better
CRITERIA = {"cosine": True, "sqnr_db": True, "max_abs": False}
GENERATED_SAMPLES = 8         # evaluation inputs drawn from normal noise when the entry gives no data
USER_KEYS = {"path", "input_shapes", "calibration", "evaluation", "criterion", "evaluator", "evaluator_options",
             "calibration_layout", "calibration_scale", "calibration_mean", "calibration_std"}


@dataclass(frozen=True)
class UserModel:
    """A budgets-file entry naming a model file, with paths resolved against the budgets file."""

    name: str
    path: Path
    input_shapes: str = ""
    calibration: Path | None = None
    evaluation: Path | None = None
    criterion: str = "cosine"
    evaluator: str | None = None
    evaluator_options: dict[str, Any] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)     # calibration_layout/scale/mean/std

    @classmethod
    def from_entry(cls, name: str, entry: dict[str, Any], base: Path, where: str) -> UserModel:
        def resolved(key):
            return (base / entry[key]) if key in entry else None

        path = resolved("path")
        if not path.is_file():
            raise OptionError(f"{where}.path: {path}: no such file")
        criterion = entry.get("criterion", "cosine")
        if criterion not in CRITERIA:
            raise OptionError(f"{where}.criterion: {criterion!r}; expected one of {', '.join(CRITERIA)} "
                              f"(or evaluator = NAME from the '{EVALUATOR_GROUP}' entry points)")
        if "evaluator" in entry and "criterion" in entry:
            raise OptionError(f"{where}: give criterion or evaluator, not both")
        for key in ("calibration", "evaluation"):
            if key in entry and not resolved(key).exists():
                raise OptionError(f"{where}.{key}: {resolved(key)}: no such file or folder")
        image = {k.removeprefix("calibration_"): entry[k] for k in entry if k.startswith("calibration_")}
        return cls(name, path, str(entry.get("input_shapes", "")), resolved("calibration"), resolved("evaluation"),
                   criterion, entry.get("evaluator"), dict(entry.get("evaluator_options", {})), image)

    def higher_is_better(self) -> bool:
        return load_evaluator(self).higher_is_better if self.evaluator else CRITERIA[self.criterion]


def load_evaluator(model: UserModel):
    found = {ep.name: ep for ep in entry_points(group=EVALUATOR_GROUP)}
    if model.evaluator not in found:
        raise OptionError(f"model '{model.name}': no evaluator '{model.evaluator}' is installed (entry-point group "
                          f"'{EVALUATOR_GROUP}'; installed: {', '.join(sorted(found)) or 'none'})")
    try:
        evaluator = found[model.evaluator].load()(**model.evaluator_options)
    except Exception as exc:  # a broken plugin is named, not a traceback
        raise OptionError(f"model '{model.name}': evaluator '{model.evaluator}' "
                          f"({found[model.evaluator].value}) failed to load: {type(exc).__name__}: {exc}") from exc
    for attribute in ("metric_name", "higher_is_better"):
        if not hasattr(evaluator, attribute):
            raise OptionError(f"model '{model.name}': evaluator '{model.evaluator}' has no '{attribute}'")
    return evaluator


def _score(criterion: str, got: list[dict[str, np.ndarray]], reference: list[dict[str, np.ndarray]]) -> float:
    """The worst value over samples and outputs: the gate holds every output, not an average (the cosine of
    a one-element output over the samples: graph.numerics.worst_cosines)."""
    if criterion == "cosine":
        return min(worst_cosines(reference, got).values())
    values = []
    for out, ref in zip(got, reference):
        for name, expected in ref.items():
            actual = np.asarray(out[name], np.float64)
            expected = np.asarray(expected, np.float64)
            if criterion == "sqnr_db":
                values.append(sqnr_db(expected, actual))
            else:
                values.append(float(np.max(np.abs(expected - actual))) if expected.size else 0.0)
    return min(values) if CRITERIA[criterion] else max(values)


class UserTask:
    """A declared user model with the interface of a reference model's Task."""

    def __init__(self, model: UserModel):
        from optkit.graph.model_io import load_model

        self.model = model
        self.name = model.name
        self.onnx_path = model.path
        self.compile_shapes = model.input_shapes
        self.description = f"user model {model.path.name}"
        self._evaluator = load_evaluator(model) if model.evaluator else None
        self.metric_name = self._evaluator.metric_name if self._evaluator else f"output {model.criterion}"
        self.higher_is_better = bool(self._evaluator.higher_is_better if self._evaluator
                                     else CRITERIA[model.criterion])
        self._float = load_model(model.path)
        self._samples: list[dict[str, np.ndarray]] | None = None
        self._reference: list[dict[str, np.ndarray]] | None = None

    @functools.cached_property
    def _specialized(self):
        """The fp32 model with the declared input shapes (what the samples are fitted to), made once."""
        from optkit.pass_infra.contract import PassContext
        from optkit.pass_infra.manager import PassManager
        from optkit.pass_infra.spec import build_passes

        if not self.model.input_shapes:
            return self._float
        from optkit.graph.shapes import resolve_input_shapes, shape_spec_text

        spec = shape_spec_text(resolve_input_shapes(self.model.input_shapes, self._float))
        model, _ = PassManager(build_passes(f"specialize-input{{shape={spec}}}")).run(self._float, PassContext())
        return model

    def _source(self, path: Path | None, count: int | None):
        from optkit.pass_infra.calibration import ImagePreprocess, from_path

        image = self.model.image

        def per_channel(key, default):
            value = image.get(key, default)
            return tuple(map(float, value if isinstance(value, (list, tuple)) else [value]))

        preprocess = ImagePreprocess(image.get("layout", "auto"), float(image.get("scale", 1 / 255)),
                                     per_channel("mean", 0.0), per_channel("std", 1.0))
        return from_path(path, count, preprocess)

    def calibration(self, count: int) -> list[dict[str, np.ndarray]]:
        from optkit.pass_infra.calibration import calibration_feeds

        if self.model.calibration is None:
            raise OptionError(f"model '{self.name}': its pipeline quantizes, but the budgets entry gives no "
                              f"'calibration' data")
        return calibration_feeds(self._source(self.model.calibration, count), self._specialized, count)

    def samples(self) -> list[dict[str, np.ndarray]]:
        """Evaluation inputs: the entry's evaluation data, else its calibration data, else seeded noise."""
        if self._samples is None:
            from optkit.pass_infra.calibration import calibration_feeds

            specialized = self._specialized
            data = self.model.evaluation or self.model.calibration
            self._samples = (calibration_feeds(self._source(data, None), specialized) if data
                             else [make_inputs(specialized, seed) for seed in range(GENERATED_SAMPLES)])
        return self._samples

    @property
    def eval_size(self) -> int:
        return len(self.samples())

    def sample(self, index: int, seed: int = 0) -> tuple[dict[str, np.ndarray], None]:
        return self.samples()[index % self.eval_size], None

    def reference(self, limit: int | None = None) -> list[dict[str, np.ndarray]]:
        """The fp32 model's outputs on the evaluation inputs (onnxruntime), computed once."""
        if self._reference is None:
            from optkit.graph.numerics import run_ort

            model = self._specialized
            self._reference = [run_ort(model, feeds) for feeds in self.samples()]
        return self._reference[:limit]

    def evaluate(self, run: Callable[[dict], dict], limit: int | None = None):
        from optkit.reference_models.task import Evaluation

        samples = self.samples()[:limit]
        reference = self.reference(limit)
        if self._evaluator is not None:
            value = float(self._evaluator(run, samples, reference))
        else:
            value = _score(self.model.criterion, [run(feeds) for feeds in samples], reference)
        return Evaluation(self.name, self.metric_name, value, len(samples), self.higher_is_better)
