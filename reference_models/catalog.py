"""The reference models by name, and evaluation of any ONNX model or host artifact with a model's
interface on that model's evaluation set."""

from __future__ import annotations

import json
from pathlib import Path

from optkit.core.errors import OptionError, UnknownNameError
from optkit.pass_infra.calibration import CALIBRATION_SAMPLES
from optkit.pass_infra.contract import CalibrationProvider

from .face.task import FaceTask
from .gesture.task import GestureTask
from .parsing.task import ParsingTask
from .parsing_hp.task import ParsingHPTask
from .pose.task import PoseTask
from .style.task import StyleTask
from .task import Evaluation, Runner, Task

TASKS: dict[str, type[Task]] = {t.name: t for t in (ParsingTask, ParsingHPTask, GestureTask, PoseTask, StyleTask,
                                                    FaceTask)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UnknownNameError("model", name, list(TASKS))
    return TASKS[name]()


def calibration_provider(name: str, count: int = CALIBRATION_SAMPLES) -> CalibrationProvider:
    """A reference model's calibration set, generated only when a lossy pass asks for it."""
    task = get_task(name)
    return lambda: task.calibration(count)


def recorded_metrics(task: Task) -> dict | None:
    """The fp32 evaluation on the full set, as recorded when the card was made."""
    path = task.onnx_path.parent / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def onnx_runner(path: Path, threads: int = 1) -> Runner:
    from optkit.graph.model_io import load_model

    return session_runner(load_model(path), threads)


def session_runner(model, threads: int = 1) -> Runner:
    """Run an in-memory ONNX model with onnxruntime (all graph optimizations on, as deployed)."""
    from optkit.graph.numerics import ort_session

    sess = ort_session(model, threads, optimize=True)
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: dict(zip(names, sess.run(names, feeds)))


def artifact_runner(directory: Path) -> Runner:
    """Run a compiled host artifact (the same TVM VM `optkit run` uses)."""
    import tvm
    from tvm import relax

    from optkit.backend.artifact import read_manifest
    from optkit.backend.runtime.runner import prepare_inputs
    from optkit.backend.runtime.vm_runner import load_fresh

    manifest = read_manifest(directory)
    if manifest["target"]["arch"] != "host":
        raise OptionError(f"{directory}: evaluation runs host artifacts; this one is for {manifest['target']['name']}")
    vm = relax.VirtualMachine(load_fresh(str(directory / manifest["library"]["file"])), tvm.cpu())
    names = [o["name"] for o in manifest["outputs"]]

    def run(feeds):
        from optkit.backend.runtime.vm_runner import flatten

        args = [tvm.runtime.tensor(x) for x in prepare_inputs(manifest, feeds)]
        return dict(zip(names, [r.numpy() for r in flatten(vm["main"](*args))]))

    return run


def check_interface(task: Task, path: Path) -> None:
    from optkit.graph.model_io import load_model
    from optkit.graph.numerics import input_specs

    names = {s.name for s in input_specs(load_model(path))}
    feeds, _ = task.sample(0)
    if set(feeds) != names:
        raise OptionError(f"{path}: inputs {sorted(names)} do not match model '{task.name}' "
                          f"(expects {sorted(feeds)})")


def evaluate(name: str, model: Path | None = None, artifact: Path | None = None, limit: int | None = None
             ) -> Evaluation:
    task = get_task(name)
    if artifact is not None:
        run = artifact_runner(artifact)
    else:
        path = model or task.onnx_path
        if not path.exists():
            raise OptionError(f"{path}: no such model file")
        check_interface(task, path)
        run = onnx_runner(path)
    is_reference = artifact is None and (model is None or model.resolve() == task.onnx_path.resolve())
    return evaluate_runner(task, run, limit, is_reference)


def evaluate_runner(task: Task, run: Runner, limit: int | None = None, is_reference: bool = False) -> Evaluation:
    """Score `run` on the first `limit` evaluation samples. The style metric of anything but the reference
    model itself also needs the reference model's outputs on the same samples."""
    if isinstance(task, StyleTask) and not is_reference:
        reference = onnx_runner(task.onnx_path)
        n = min(limit or task.eval_size, task.eval_size)
        task.reference_outputs = [reference(task.sample(i)[0]) for i in range(n)]
    return task.evaluate(run, limit)


def file_stats(path: Path) -> dict:
    from optkit.graph.model_io import load_model
    from optkit.graph.stats import model_stats

    s = model_stats(load_model(path))
    return {"file_bytes": path.stat().st_size, "params": s.params, "flops": s.flops, "nodes": s.nodes}



