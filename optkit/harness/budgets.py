"""Budgets: for each model, the pipeline to apply and the metric, size and per-target latency limits a build
must hold (reference_models/budgets.toml for the reference models), plus the tolerances of baseline
comparison. An entry with a `path` declares a user's own model (harness/user_models.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from optkit.core.errors import OptionError
from optkit.harness.user_models import USER_KEYS, UserModel, UserTask

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Tolerance:
    metric: float = 0.02     # absolute worsening of the task metric
    latency: float = 0.30    # relative growth
    size: float = 0.02       # relative growth
    instructions: float = 0.01   # relative growth of emulated instructions per inference (deterministic)


@dataclass(frozen=True)
class Budget:
    model: str
    pipeline: str
    metric_min: float | None = None
    metric_max: float | None = None
    size_mb_max: float | None = None
    latency_ms_max: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    user: UserModel | None = None       # a user's model file (None: the reference model of that name)

    @property
    def higher_is_better(self) -> bool:
        from optkit.reference_models.catalog import TASKS

        return self.user.higher_is_better() if self.user else TASKS[self.model].higher_is_better

    def task(self):
        """What scores and feeds the model: the reference model's Task, or a UserTask."""
        from optkit.reference_models.catalog import get_task

        return UserTask(self.user) if self.user else get_task(self.model)


def default_budget_file() -> Path:
    return Path(str(resources.files("optkit.reference_models").joinpath("budgets.toml")))


def load_budgets(path: str | Path | None = None) -> tuple[dict[str, Budget], Tolerance]:
    """Parse and validate a budgets file; every error names the file and the key at fault."""
    from optkit.backend.targets import list_targets
    from optkit.reference_models.catalog import TASKS

    path = Path(path) if path else default_budget_file()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise OptionError(f"budgets file {path}: no such file") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OptionError(f"budgets file {path}: {exc}") from exc
    tol = data.pop("tolerance", {})
    try:
        tolerance = Tolerance(**{k: float(v) for k, v in tol.items()})
    except TypeError as exc:
        raise OptionError(f"budgets file {path}: [tolerance]: {exc}") from exc
    targets = {t.name for t in list_targets()}
    budgets = {}
    for model, entry in data.items():
        where = f"budgets file {path}: [{model}]"
        if not isinstance(entry, dict):
            raise OptionError(f"{where}: expected a table")
        user = UserModel.from_entry(model, entry, path.parent, where) if "path" in entry else None
        if user is None and model not in TASKS:
            raise OptionError(f"{where}: not a reference model (known: {', '.join(TASKS)}); a model of your own "
                              f"needs path = \"FILE.onnx\"")
        if "pipeline" not in entry:
            raise OptionError(f"{where}: missing 'pipeline'")
        if "metric_min" in entry and "metric_max" in entry:
            raise OptionError(f"{where}: give metric_min or metric_max, not both")
        # an evaluator plugin says its direction when it loads, with the cell that uses it
        higher = None if user and user.evaluator else user.higher_is_better() if user else TASKS[model].higher_is_better
        metric = f"output {user.criterion}" if user else TASKS[model].metric_name
        if higher is not None and ("metric_max" if higher else "metric_min") in entry:
            raise OptionError(f"{where}: {metric} is {'higher' if higher else 'lower'}-is-better; "
                              f"use {'metric_min' if higher else 'metric_max'}")
        latency = {str(k): float(v) for k, v in entry.get("latency_ms_max", {}).items()}
        unknown = sorted(set(latency) - targets)
        if unknown:
            raise OptionError(f"{where}.latency_ms_max: unknown target(s) {', '.join(unknown)}")
        allowed = {"pipeline", "metric_min", "metric_max", "size_mb_max", "latency_ms_max", "sources"}
        unexpected = sorted(set(entry) - allowed - (USER_KEYS if user else set()))
        if unexpected:
            raise OptionError(f"{where}: unknown key(s) {', '.join(unexpected)}")
        budgets[model] = Budget(model, entry["pipeline"], entry.get("metric_min"), entry.get("metric_max"),
                                entry.get("size_mb_max"), latency, dict(entry.get("sources", {})), user)
    return budgets, tolerance
