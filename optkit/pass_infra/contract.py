"""The pass contract: what a pass declares, what it receives and what it returns."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import onnx

from optkit.core.errors import OptionError

CalibrationProvider = Callable[[], Iterable[dict[str, np.ndarray]]]


@dataclass
class PassContext:
    """What every pass may read: the target it optimizes for, its options, calibration data, a seed.

    Calibration data is a callable so that it is produced only by the passes that need it.
    """

    target: Any = None
    seed: int = 0
    calibration: CalibrationProvider | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("optkit"))


@dataclass
class PassResult:
    model: onnx.ModelProto
    changed: bool
    stats: dict[str, Any] = field(default_factory=dict)


def parse_bool(text: str) -> bool:
    """Option strings for booleans: true/false/1/0 (any case), nothing else. Python's bool("false") is True."""
    value = str(text).strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise ValueError("expected true, false, 1 or 0")
    return value in ("true", "1")


def choice(*values: str) -> Callable[[str], str]:
    """An option type that accepts exactly one of `values`."""
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"choose one of {', '.join(values)}")
        return text

    return parse


@dataclass(frozen=True)
class PassOption:
    """One typed option of a pass, as written in a pass spec: `name{option=value}`."""

    type: Callable[[str], Any]     # parses the option's string; `bool` means parse_bool
    default: Any
    help: str


class Pass:
    """Base class of every optkit pass.

    Subclasses set `name`, `exact` (the manager then checks outputs numerically against the input model
    with onnxruntime; lossy passes declare `min_output_sqnr_db` instead) and `options`, and implement `run`.
    The manager hands `run` its own copy of the model, which it may edit in place and return (called
    outside the manager, give it a `copy_model`). Whatever `changed` says, the manager checks a model
    whose bytes changed. docs/writing-passes.md has the whole contract.
    """

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = True
    # Lossy passes only: the worst output SQNR (dB, against the pass's input on calibration data) the pass
    # guarantees; the manager fails the pass below it. A lossy pass must declare one.
    min_output_sqnr_db: ClassVar[float | None] = None
    options: ClassVar[dict[str, PassOption]] = {}
    summary: ClassVar[str] = ""

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "(none)"
            raise OptionError(f"pass '{self.name}': unknown option(s) {', '.join(unknown)}; valid: {valid}")
        self.config: dict[str, Any] = {}
        for key, opt in self.options.items():
            value = options.get(key, opt.default)
            if isinstance(value, str) and opt.type is not str:
                parse = parse_bool if opt.type is bool else opt.type
                try:
                    value = parse(value)
                except (TypeError, ValueError) as exc:
                    raise OptionError(f"pass '{self.name}': bad value {value!r} for option '{key}': {exc}") from exc
            self.config[key] = value

    def run(self, model: onnx.ModelProto, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def output_sqnr_floor(self) -> float | None:
        """The SQNR floor the manager holds this (lossy) pass to; a pass may make it an option."""
        return self.min_output_sqnr_db

    def loss_remedy(self) -> str:
        """What to try when this lossy pass costs more than its floor ('' when there is nothing to suggest)."""
        return ""

    def describe(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.config.items() if v != self.options[k].default)
        return f"{self.name}{{{opts}}}" if opts else self.name


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out
