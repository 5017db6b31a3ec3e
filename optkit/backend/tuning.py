"""`optkit tune`: MetaSchedule search over the fused TIR functions of one or more models, into a JSON
database that `optkit compile --tuning-db DIR` (and `optkit check`) apply.

- The functions tuned are exactly the ones `compile` builds: same passes, same Relax import and int8
  rewrite, same `zero` pipeline. Tasks are deduplicated across models by structural equality, so a layer
  shape two models share is tuned once (its weight is the sum of its uses).
- Resumable: the database is MetaSchedule's JSON pair (database_workload.json,
  database_tuning_record.json) in DIR, appended as trials finish; a task that already holds `trials`
  records is skipped on the next run.
- Host tuning measures locally; a device behind a TVM tracker is tuned with `--rpc HOST:PORT --key KEY`
  (candidates built here with the target's cross compiler, timed on the board).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from optkit.backend.build import lower
from optkit.backend.compiler import frontend
from optkit.backend.runtime.vm_runner import SHORT_SPIN, allow_every_core
from optkit.backend.targets import Target
from optkit.backend.tuning_db import open_database
from optkit.core.errors import OptionError


def lowered(model_path: Path, target: Target, passes: str, input_shapes: str, calibration):
    """The fused TIR functions compile would build (same passes, import and lowering), and the TVM target."""
    return lower(frontend(model_path, target, passes, input_shapes, calibration=calibration).mod, target)


@dataclass
class TuneTask:
    name: str
    mod: object            # IRModule holding one PrimFunc
    weight: int
    models: list[str]
    existing: int = 0      # records already in the database


def extract(models: list[tuple[str, object]], tvm_target) -> list[TuneTask]:
    """Tasks of all models, deduplicated by structural equality of the function."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    tasks: dict[int, TuneTask] = {}
    for model_name, mod in models:
        for t in ms.relax_integration.extract_tasks(mod, tvm_target):
            key = int(tvm_ffi.structural_hash(t.dispatched[0]))
            if key in tasks:
                tasks[key].weight += int(t.weight)
                tasks[key].models.append(model_name)
            else:
                tasks[key] = TuneTask(t.task_name, t.dispatched[0], int(t.weight), [model_name])
    return list(tasks.values())


def _runner_options(target: Target, rpc: str | None, key: str | None) -> tuple[str, int, str] | None:
    """(tracker host, port, device key) for a device, None for this machine; named errors otherwise."""
    from optkit.backend.runtime.rpc import parse_address

    if not rpc:
        if not target.is_host:
            raise OptionError(f"target '{target.name}' is not this machine: tune it on the device with "
                              f"--rpc HOST:PORT --key {target.rpc_key or 'KEY'}")
        return None
    host, port = parse_address(rpc)
    device_key = key or target.rpc_key
    if not device_key:
        raise OptionError(f"target '{target.name}' has no rpc_key; pass --key")
    return host, port, device_key


def _runner(target: Target, rpc: str | None, key: str | None):
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20, enable_cpu_cache_flush=False)
    device = _runner_options(target, rpc, key)
    if device is None:
        return ms.runner.LocalRunner(evaluator_config=evaluator)
    host, port, device_key = device
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=device_key, session_timeout_sec=120)
    return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator)


def _builder(target: Target):
    """Candidates are built in this process: TVM 0.27's LocalBuilder workers took ~47 s per candidate here
    (in-process: 0.1 s), which made every candidate time out. Device candidates are linked with the target's
    cross compiler."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder import local_builder
    from tvm.support import cc

    def export(rt_mod) -> str:
        if not target.cross_compiler:
            return local_builder.default_export(rt_mod)
        path = os.path.join(tempfile.mkdtemp(prefix="optkit-ms-"), "candidate.so")
        rt_mod.export_library(path, fcompile=cc.cross_compiler(target.cross_compiler))
        return path

    def build_candidate(mod, tvm_target):
        # local_builder.default_build without its `import tvm.s_tir.tensor_intrin` (28 s here, registering
        # CUDA/ROCm intrinsics); the search imports that itself when it needs it.
        from tvm.driver import build as tvm_build
        from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

        return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=tvm_target)

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for item in build_inputs:
                try:
                    built = build_candidate(item.mod, item.target)
                    results.append(ms.builder.BuilderResult(export(built), None))
                except Exception as exc:  # a candidate that does not build is a failed trial, not a failed run
                    results.append(ms.builder.BuilderResult(None, f"{type(exc).__name__}: {exc}"))
            return results

    return InProcessBuilder()


def seed_with_defaults(tasks: list[TuneTask], tvm_target, database, builder, runner) -> int:
    """Measure optkit's default schedule of every task the database holds nothing for, and record it as a
    tuning record (its trace replays the rule). The search then starts from it, and the database's best
    for a function is never slower than what an untuned build gets. Returns the records added."""
    from tvm.s_tir import meta_schedule as ms

    from optkit.backend.schedules import default_schedule, vector_lanes

    lanes = vector_lanes(tvm_target)
    seeds = []
    for task in tasks:
        if task.existing:
            continue
        sch, _ = default_schedule(task.mod["main"], lanes)
        if sch is not None:
            seeds.append((task, sch))
    if not seeds:
        return 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, tvm_target) for _, sch in seeds])
    measured = []
    for (task, sch), result in zip(seeds, built):
        if result.error_msg is None:
            args = ms.arg_info.ArgInfo.from_prim_func(task.mod["main"])
            measured.append((task, sch, args, ms.runner.RunnerInput(result.artifact_path, "cpu", args)))
    added = 0
    for (task, sch, args, _), future in zip(measured, runner.run([m[3] for m in measured])):
        outcome = future.result()
        if outcome.error_msg is None:
            workload = database.commit_workload(task.mod)
            database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, outcome.run_secs,
                                                                   tvm_target, args))
            task.existing += 1
            added += 1
    return added


def _require_search_packages() -> None:
    import importlib.util

    missing = [m for m in ("xgboost", "psutil", "cloudpickle") if importlib.util.find_spec(m) is None]
    if missing:
        raise OptionError(f"tuning needs {', '.join(missing)} (MetaSchedule's cost model and workers): "
                          f"pip install -e '.[tune]'")


def tune(models: list[tuple[str, Path, str]], target: Target, db_dir: Path, trials: int, passes: str,
         rpc: str | None = None, key: str | None = None, calibration_for: Callable | None = None,
         progress: Callable[[str, int, int], None] = lambda *_: None, seed: int = 0) -> list[TuneTask]:
    """Tune every task of `models` (name, path, input shapes) that has fewer than `trials` records."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    if trials < 1:
        raise OptionError("--trials must be at least 1")
    _runner_options(target, rpc, key)
    lowered_mods, tvm_target = [], None
    for name, path, shapes in models:
        mod, tvm_target = lowered(path, target, passes, shapes, calibration_for(name) if calibration_for else None)
        lowered_mods.append((name, mod))
    tasks = extract(lowered_mods, tvm_target)
    database = open_database(db_dir, target, create=True)
    for task in tasks:
        workload = database.commit_workload(task.mod) if database.has_workload(task.mod) else None
        task.existing = len(database.get_top_k(workload, trials)) if workload is not None else 0
    os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", str(SHORT_SPIN))
    allow_every_core()          # the runner's worker processes measure with every core, as builds will run
    builder, runner = _builder(target), _runner(target, rpc, key)
    seed_with_defaults(tasks, tvm_target, database, builder, runner)
    todo = [t for t in tasks if t.existing < trials]
    if not todo:
        return tasks
    _require_search_packages()
    # TVM's generic CPU rules, not the ones it picks for a VNNI target: those try to tensorize int8 blocks
    # with TVM's own VNNI intrinsic, which never matches optkit's packed convolution and printed ~20000
    # "Tensorize failed" warnings in one face tuning run (optkit's default schedule already tensorizes them).
    contexts = [ms.TuneContext(mod=t.mod, target=tvm_target,
                               space_generator=ms.space_generator.PostOrderApply(sch_rules="llvm", postprocs="llvm",
                                                                                 mutator_probs="llvm"),
                               search_strategy="evolutionary", task_name=t.name, num_threads="physical",
                               rand_state=seed + i) for i, t in enumerate(todo)]
    done = {"trials": 0}
    total = sum(trials - t.existing for t in todo)

    from tvm.ir.utils import derived_object

    @derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            done["trials"] += len(runner_results)
            progress(todo[task_id].name, done["trials"], total)

    callbacks = [*ms.measure_callback.MeasureCallback.create("default"), Progress()]
    with tempfile.TemporaryDirectory(prefix="optkit-tune-") as work_dir, tvm.transform.PassContext(opt_level=3):
        ms.tune_tasks(tasks=contexts, task_weights=[float(t.weight) for t in todo], work_dir=work_dir,
                      max_trials_global=total, max_trials_per_task=trials, num_trials_per_iter=min(16, trials),
                      builder=builder, runner=runner, database=database,
                      cost_model="xgb", measure_callbacks=callbacks, task_scheduler="gradient")
    return tasks
