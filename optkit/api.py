"""optkit's Python API: one function per CLI command. Each takes paths, spec strings and target names (or
Target objects) and returns a result object; nothing here prints. `optkit.cli` only parses arguments,
calls these functions and renders what they return, so a script gets exactly what the CLI does.

Imports are deferred into the functions: `optkit --help` and `optkit passes list` must not pay for TVM.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optkit.core.errors import OptionError, OptkitError
from optkit.pass_infra.instruments import WARN_BELOW_SQNR_DB

if TYPE_CHECKING:
    import onnx

    from optkit.backend.compiler import CompileResult
    from optkit.backend.runtime.runner import RunResult
    from optkit.backend.targets import Target
    from optkit.harness.gate import CheckOptions, CheckReport
    from optkit.pass_infra.calibration import ImagePreprocess
    from optkit.pass_infra.contract import CalibrationProvider
    from optkit.pass_infra.instruments import PassRecord

PathLike = str | os.PathLike
ModelLike = "PathLike | onnx.ModelProto"      # a path to an ONNX file, or the model itself
Shapes = "str | dict[str, Sequence[int]]"      # 'x:1x3x224x224' (or '1,3,224,224'), or {'x': (1, 3, 224, 224)}
Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def resolve_target(target: str | Target) -> Target:
    """A target by name (`optkit targets list`), or the Target object given."""
    from optkit.backend.targets import get_target

    return get_target(target) if isinstance(target, str) else target


def calibration(reference_model: str | None = None, data: PathLike | Any = None, samples: int | None = None,
                preprocess: ImagePreprocess | None = None) -> CalibrationProvider | None:
    """Calibration data for lossy passes: a reference model's calibration set, or `data`: a file or folder
    (.npz, .npy, a folder of .npy/.npz files or of images, read with `preprocess`), or from Python an
    iterable of samples or a CalibrationDataReader (pass_infra/calibration.py). `samples` keeps the first N."""
    from optkit.pass_infra.calibration import CALIBRATION_SAMPLES, from_path, from_python

    if reference_model and data is not None:
        raise OptionError("give --calibration or --calibration-data, not both")
    if reference_model:
        from optkit.reference_models.catalog import calibration_provider

        return calibration_provider(reference_model, samples or CALIBRATION_SAMPLES)
    if data is None:
        return None
    if isinstance(data, (str, os.PathLike)):
        return from_path(data, samples, preprocess)
    return from_python(data, samples)


@contextlib.contextmanager
def _model_file(model: ModelLike) -> Iterator[Path]:
    """A path for `model`: the file itself, or an in-memory ModelProto written to a private temporary file
    (removed afterwards) so every command reads models one way."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        yield Path(model)
        return
    with tempfile.TemporaryDirectory(prefix="optkit-model-") as tmp:
        path = Path(tmp) / f"{model.graph.name or 'model'}.onnx"
        path.write_bytes(model.SerializeToString(deterministic=True))
        yield path


def _shapes_text(input_shapes: Shapes | None) -> str:
    if not input_shapes:
        return ""
    if isinstance(input_shapes, str):
        return input_shapes
    return ";".join(f"{name}:{'x'.join(str(int(d)) for d in dims)}" for name, dims in input_shapes.items())


def _calibration_of(value) -> CalibrationProvider | None:
    """A provider from what a script holds: None, a provider, a path, an iterable of samples or a reader."""
    return None if value is None else calibration(data=value)


def _instruments(dump_ir: PathLike | None):
    from optkit.pass_infra.instruments import default_instruments

    return default_instruments(str(dump_ir) if dump_ir else None)


def _run_passes(model: PathLike, spec: str, ctx_calibration=None, seed: int = 0, dump_ir: PathLike | None = None):
    from optkit.graph.model_io import load_model
    from optkit.pass_infra.contract import PassContext
    from optkit.pass_infra.manager import PassManager
    from optkit.pass_infra.spec import build_passes

    ctx = PassContext(seed=seed, calibration=ctx_calibration)
    optimized, records = PassManager(build_passes(spec), _instruments(dump_ir)).run(load_model(model), ctx)
    return optimized, records, ctx


@dataclass
class OptimizeResult:
    model: onnx.ModelProto
    records: list[PassRecord]
    warnings: list[str]         # lossy passes that cost more than min_sqnr_db allows


def optimize(model: ModelLike, output: PathLike | None = None, passes: str = "mobile", input_shapes: Shapes = "",
             seed: int = 0, calibration: Any = None, dump_ir: PathLike | None = None,
             inputs: Iterable[PathLike] = (), strict: bool = False,
             min_sqnr_db: float = WARN_BELOW_SQNR_DB) -> OptimizeResult:
    """Run a pass spec over an ONNX file or ModelProto (never modified); write the result to `output` if
    given. `calibration`: a provider, a path, an iterable of samples or a CalibrationDataReader. `inputs`:
    other files the run reads, which `output` may not replace. A lossy pass whose worst output falls below
    `min_sqnr_db` is in `warnings`; with `strict` it is an error and nothing is written."""
    from optkit.core.safe_output import check_file_output
    from optkit.graph.model_io import load_model, save_model
    from optkit.graph.shapes import resolve_input_shapes, shape_spec_text
    from optkit.pass_infra.instruments import lossy_warnings, refuse_lossy

    with _model_file(model) as path:
        read = (path, *map(Path, inputs))
        if output is not None:
            check_file_output(output, read)    # refuse before the passes run, not after
        shapes = _shapes_text(input_shapes)
        if shapes:
            shapes = shape_spec_text(resolve_input_shapes(shapes, load_model(path)))
        spec = ",".join(filter(None, [f"specialize-input{{shape={shapes}}}" if shapes else "", passes]))
        optimized, records, _ = _run_passes(path, spec, _calibration_of(calibration), seed, dump_ir)
        if strict:
            refuse_lossy(records, min_sqnr_db)
        if output is not None:
            save_model(optimized, output, inputs=read)
    return OptimizeResult(optimized, records, lossy_warnings(records, min_sqnr_db))


def compile(model: ModelLike, target: str | Target, output: PathLike, passes: str = "mobile",  # noqa: A001
            input_shapes: Shapes = "", seed: int = 0, calibration: Any = None,
            schedules: str = "default", tuning_db: PathLike | None = None, force: bool = False,
            validate: str = "auto", dump_ir: PathLike | None = None,
            inputs: Iterable[PathLike] = (), strict: bool = False,
            min_sqnr_db: float = WARN_BELOW_SQNR_DB) -> CompileResult:
    """Optimize, build with TVM for a target (a name or a Target), validate, and write an artifact directory
    atomically. `model`: an ONNX path or a ModelProto; `calibration`, `strict` and `min_sqnr_db` as for
    `optimize` (strict refuses before anything is built)."""
    from optkit.backend.compiler import compile_model
    from optkit.pass_infra.instruments import lossy_warnings

    with _model_file(model) as path:
        result = compile_model(path, resolve_target(target), output, passes=passes,
                               input_shapes=_shapes_text(input_shapes), seed=seed, instruments=_instruments(dump_ir),
                               schedules=schedules, tuning_db=tuning_db, force=force, inputs=tuple(inputs),
                               validate=validate, calibration=_calibration_of(calibration),
                               strict_sqnr_db=min_sqnr_db if strict else None)
    result.warnings = lossy_warnings(result.records, min_sqnr_db)
    return result


class Artifact:
    """A compiled artifact directory: its manifest, inputs and outputs, and `run`."""

    def __init__(self, directory: PathLike):
        from optkit.backend.artifact import read_manifest

        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)     # an error naming the directory if it is not one

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.manifest["inputs"]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.manifest["outputs"]

    def run(self, feeds: dict[str, np.ndarray] | np.ndarray, emulate: bool = False,
            threads: int = 0) -> dict[str, np.ndarray]:
        """Outputs by name. `feeds`: arrays by input name, or one array for a one-input model; an AArch64
        artifact runs under qemu with `emulate=True`."""
        if not isinstance(feeds, dict):
            if len(self.inputs) != 1:
                raise OptionError(f"{self.directory}: the model has inputs {', '.join(i['name'] for i in self.inputs)}; "
                                  f"pass a dict of arrays by name")
            feeds = {self.inputs[0]["name"]: feeds}
        return run(self.directory, feeds, emulate=emulate, compare=False, threads=threads).outputs

    def __repr__(self) -> str:
        return f"Artifact({str(self.directory)!r}, target={self.manifest['target']['name']!r})"


def load_artifact(directory: PathLike) -> Artifact:
    """An artifact directory from `compile`, ready to run."""
    return Artifact(directory)


def read_inputs(specs: Iterable[str], artifact: PathLike) -> dict[str, np.ndarray]:
    """Inputs for an artifact from `FILE.npy` (single-input models), `NAME=FILE.npy` or `FILE.npz`."""
    from optkit.backend.artifact import read_manifest

    names = [s["name"] for s in read_manifest(artifact)["inputs"]]
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, eq, path = spec.partition("=")
        if not eq:
            name, path = "", spec
        p = Path(path)
        if not p.is_file():
            raise OptionError(f"--input {spec}: no such file {p}")
        try:
            data = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise OptionError(f"--input {spec}: {p} is not a .npy/.npz file: {exc}") from exc
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                feeds.update({k: data[k] for k in data.files})
            continue
        if not name:
            if len(names) != 1:
                raise OptionError(f"--input {spec}: the model has inputs {', '.join(names)}; "
                                  f"write --input NAME=FILE.npy")
            name = names[0]
        feeds[name] = data
    return feeds


def run(artifact: PathLike, feeds: dict[str, np.ndarray], emulate: bool = False, compare: bool | None = None,
        threads: int = 0) -> RunResult:
    """Execute an artifact; compare with onnxruntime on its optimized ONNX (default: when emulating)."""
    from optkit.backend.runtime.runner import run_artifact

    return run_artifact(artifact, feeds, emulate=emulate, compare_reference=emulate if compare is None else compare,
                        threads=threads)


def save_outputs(outputs: dict[str, np.ndarray], path: PathLike, inputs: Iterable[PathLike] = ()) -> None:
    """Outputs to FILE.npy (one output) or FILE.npz, atomically; `path` may not replace an input."""
    from optkit.core.safe_output import atomic_file

    path = Path(path)
    if path.suffix != ".npz" and len(outputs) != 1:
        raise OptionError(f"-o {path}: the model has {len(outputs)} outputs; use a .npz file")
    with atomic_file(path, tuple(map(Path, inputs))) as tmp, open(tmp, "wb") as f:
        if path.suffix == ".npz":
            np.savez(f, **outputs)
        else:
            np.save(f, next(iter(outputs.values())))


def list_passes() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every registered pass (built-in and plugins; a plugin that fails to load carries its error), and the
    named pipelines."""
    from optkit.pass_infra.registry import available_passes, get_pass_class
    from optkit.pass_infra.spec import PIPELINES

    rows = []
    for name, origin in available_passes().items():
        try:
            cls = get_pass_class(name)
            rows.append({"name": name, "origin": origin, "exact": cls.exact, "summary": cls.summary,
                         "options": {k: {"default": o.default, "help": o.help} for k, o in cls.options.items()}})
        except OptkitError as exc:
            rows.append({"name": name, "origin": origin, "error": str(exc)})
    return rows, PIPELINES


def show_pass(name: str) -> dict[str, Any]:
    """One pass: its summary, exactness, origin, docstring and options with their defaults and help."""
    import inspect
    import sys

    from optkit.pass_infra.registry import available_passes, get_pass_class

    cls = get_pass_class(name)             # an unknown name is an error listing the known ones
    doc = vars(cls).get("__doc__") or sys.modules[cls.__module__].__doc__
    return {"name": name, "origin": available_passes()[name], "exact": cls.exact, "summary": cls.summary,
            "doc": inspect.cleandoc(doc or ""),
            "options": {k: {"default": o.default, "help": o.help} for k, o in cls.options.items()}}


def list_targets() -> list[Target]:
    from optkit.backend.targets import list_targets as targets

    return targets()


def list_models() -> list[dict[str, Any]]:
    """The reference models with their interface, size and recorded fp32 metric."""
    from optkit.reference_models.catalog import TASKS, file_stats, get_task, recorded_metrics

    rows = []
    for name in TASKS:
        task = get_task(name)
        row = {"name": name, "description": task.description, "onnx": str(task.onnx_path),
               "input": list(task.input_shape), "metric": task.metric_name,
               "higher_is_better": task.higher_is_better, "eval_samples": task.eval_size}
        if task.onnx_path.exists():
            row.update(file_stats(task.onnx_path))
        recorded = recorded_metrics(task)
        row["fp32"] = recorded["value"] if recorded else None
        rows.append(row)
    return rows


def evaluate(name: str, model: PathLike | None = None, artifact: PathLike | None = None, limit: int | None = None):
    """A model with reference model `name`'s interface (ONNX or host artifact) on its evaluation set."""
    from optkit.reference_models.catalog import evaluate as evaluate_task

    if model and artifact:
        raise OptionError("give --model or --artifact, not both")
    return evaluate_task(name, Path(model) if model else None, Path(artifact) if artifact else None, limit)


def fusion_demo(output: PathLike, model: PathLike | None = None) -> dict[str, Any]:
    """Face fusion with the face landmark model (or another with its interface); writes a picture."""
    from optkit.reference_models.catalog import get_task, onnx_runner
    from optkit.reference_models.face.demo import fusion_demo as demo

    return demo(onnx_runner(model or get_task("face").onnx_path), output)


@dataclass
class QuantReport:
    tensors: list            # quant_report.TensorError, worst first
    record: PassRecord       # the quantize-int8 pass: output SQNR and sizes


def quant_report(model: PathLike, calibration: CalibrationProvider | None, passes: str = "mobile",
                 calibrator: str = "minmax") -> QuantReport:
    """Per-tensor quantization error (SQNR, cosine) between the float model and its int8 version."""
    from optkit.harness.quant_report import tensor_errors
    from optkit.pass_infra.calibration import calibration_feeds
    from optkit.pass_infra.manager import PassManager
    from optkit.pass_infra.spec import build_passes

    if calibration is None:
        raise OptionError("quant-report needs calibration data: --calibration MODEL_NAME or --calibration-data FILE.npz")
    float_model, _, ctx = _run_passes(model, passes, calibration)
    quantized, records = PassManager(build_passes(f"quantize-int8{{calibrator={calibrator}}}")).run(float_model, ctx)
    return QuantReport(tensor_errors(float_model, quantized, calibration_feeds(ctx.calibration, float_model, 8)), records[0])


def _judge(name: str, budgets: PathLike | None, samples: int | None):
    """(task, calibration) of a model that judges accuracy: a reference model, or any model a budgets file
    declares (a user model with its criterion or evaluator, and its calibration data)."""
    from optkit.pass_infra.calibration import CALIBRATION_SAMPLES

    if budgets is None:
        from optkit.reference_models.catalog import get_task

        return get_task(name), calibration(name, samples=samples)
    from optkit.harness.budgets import load_budgets

    table, _ = load_budgets(budgets)
    if name not in table:
        raise OptionError(f"--reference-model {name}: not in {budgets} (models there: {', '.join(table)})")
    task = table[name].task()
    return task, lambda: task.calibration(samples or CALIBRATION_SAMPLES)


def quantize(model: PathLike, output: PathLike, reference_model: str, accuracy_budget: float,
             passes: str = "mobile", calibrator: str = "minmax", eval_samples: int = 40,
             calibration_samples: int | None = None, log: Log = _silent, budgets: PathLike | None = None):
    """Accuracy-aware int8: keep the worst layers in float until the task metric of `reference_model` (a
    reference model, or a model `budgets` declares) is within `accuracy_budget`; writes the model either
    way (check `within_budget`)."""
    from optkit.graph.model_io import save_model
    from optkit.harness.accuracy_aware import quantize_within_budget

    task, provider = _judge(reference_model, budgets, calibration_samples)
    float_model, _, ctx = _run_passes(model, passes, provider)
    log(f"{reference_model}: float {task.metric_name} on {eval_samples} eval samples, budget {accuracy_budget}")
    result = quantize_within_budget(float_model, task, accuracy_budget, ctx, calibrator, eval_samples, log=log)
    save_model(result.model, output)
    return result


@dataclass
class PruneScan:
    metric_name: str
    unpruned: float
    groups: list             # prune_scan.GroupSensitivity, cheapest per FLOP first


def prune_scan(model: PathLike, reference_model: str, ratio: float = 0.5, passes: str = "mobile",
               eval_samples: int = 16, reconstruct: bool = True, log: Log = _silent,
               budgets: PathLike | None = None) -> PruneScan:
    """Prune each channel group alone by `ratio` and measure the task metric (of a reference model, or of a
    model `budgets` declares) it costs."""
    from optkit.harness.prune_scan import scan

    task, provider = _judge(reference_model, budgets, 8)
    float_model, _, ctx = _run_passes(model, passes, provider)
    base, rows = scan(float_model, task, ctx, ratio, eval_samples, reconstruct, log=log)
    return PruneScan(task.metric_name, base, rows)


def check(models: list[str] | None = None, targets: list[str | Target] | None = None,
          options: CheckOptions | None = None, progress: Log = _silent, **option_fields: Any) -> CheckReport:
    """The gate: every model x target against its budgets (and a baseline); `report.passed` is the verdict.
    Options as a CheckOptions or as its fields (`check(["face"], ["host"], limit=4, budgets="b.toml")`)."""
    import dataclasses

    from optkit.harness.gate import CheckOptions, run_check

    unknown = sorted(set(option_fields) - {f.name for f in dataclasses.fields(CheckOptions)})
    if unknown:
        raise OptionError(f"check: unknown option(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(f.name for f in dataclasses.fields(CheckOptions))}")
    options = dataclasses.replace(options or CheckOptions(), **{
        k: Path(v) if k in ("budgets", "baseline", "work_dir", "tuning_db") and v is not None else v
        for k, v in option_fields.items()})
    names = [t if isinstance(t, str) else t.name for t in targets] if targets else None
    return run_check(models, names, options, progress=progress)


def tune(models: Iterable[str], target: str | Target, db: PathLike, trials: int = 32, passes: str = "mobile",
         input_shapes: str = "", rpc: str | None = None, key: str | None = None,
         calibration_samples: int | None = None, progress: Callable[[str, int, int], None] | None = None,
         calibration: CalibrationProvider | None = None):
    """MetaSchedule-tune ONNX files or reference models into a database `compile --tuning-db` applies.
    Reference models quantize on their own calibration set, model files on `calibration`."""
    from optkit.backend.tuning import tune as tune_models
    from optkit.pass_infra.calibration import CALIBRATION_SAMPLES
    from optkit.reference_models.catalog import TASKS, calibration_provider, get_task

    entries = []
    for m in models:
        if m in TASKS:
            entries.append((m, get_task(m).onnx_path, input_shapes or get_task(m).compile_shapes))
        elif Path(m).is_file():
            entries.append((Path(m).stem, Path(m), input_shapes))
        else:
            raise OptionError(f"{m}: neither a model file nor a reference model ({', '.join(TASKS)})")
    return tune_models(entries, resolve_target(target), Path(db), trials, passes, rpc, key,
                       calibration_for=lambda name: calibration_provider(name, calibration_samples or CALIBRATION_SAMPLES)
                       if name in TASKS else calibration, progress=progress)


def _budget_pipeline(budget) -> tuple[Path, str, CalibrationProvider]:
    """(model file, pass spec, calibration) of a budgets entry, reference model or user model alike (a user
    model's declared input shapes first)."""
    from optkit.graph.model_io import load_model
    from optkit.graph.shapes import resolve_input_shapes, shape_spec_text
    from optkit.pass_infra.calibration import CALIBRATION_SAMPLES

    task = budget.task()
    spec = budget.pipeline
    if budget.user and budget.user.input_shapes:
        shapes = shape_spec_text(resolve_input_shapes(budget.user.input_shapes, load_model(task.onnx_path)))
        spec = f"specialize-input{{shape={shapes}}},{spec}"
    return task.onnx_path, spec, lambda: task.calibration(CALIBRATION_SAMPLES)


@dataclass
class EstimateRow:
    model: str
    pipeline: str
    cells: dict[str, tuple[float, float | None]]    # target -> (estimated ms, budget ms or None)


def estimate(models: list[str] | None = None, targets: Iterable[str | Target] = (),
             budgets: PathLike | None = None) -> list[EstimateRow]:
    """Estimated device latency (per-layer roofline) of each budgeted model after its budget pipeline."""
    from optkit.harness.budgets import load_budgets
    from optkit.harness.estimate import estimate_latency

    table_budgets, _ = load_budgets(budgets)
    target_objs = [resolve_target(t) for t in targets]
    rows = []
    for name in models or list(table_budgets):
        if name not in table_budgets:
            raise OptionError(f"--models: no budget for {name} (budgeted: {', '.join(table_budgets)})")
        budget = table_budgets[name]
        model, _, _ = _run_passes(*_budget_pipeline(budget))
        rows.append(EstimateRow(name, budget.pipeline, {
            t.name: (estimate_latency(model, t.peak).total_ms, budget.latency_ms_max.get(t.name))
            for t in target_objs}))
    return rows


def profile(artifact: PathLike, cpu: str | None = None, original_onnx: PathLike | None = None,
            tflite: PathLike | None = None, same_graph: bool = True, seed: int = 0, log: Log = _silent):
    """Instructions per inference of an AArch64 artifact under qemu (the target's core model, one thread),
    beside onnxruntime on the same graph and the original ONNX, and LiteRT on a .tflite."""
    from optkit.harness.arm_profile import profile_artifact

    return profile_artifact(artifact, cpu, original_onnx, tflite, same_graph, seed, log)


def setup_emulator(dest: PathLike | None = None) -> Path:
    """Prepare (or reuse) the AArch64 sysroot `run --emulate` and `--validate emulate` need."""
    from optkit.backend.runtime.emulation import prepare_sysroot

    return prepare_sysroot(Path(dest) if dest else None)
