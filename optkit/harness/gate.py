"""`optkit check`, the gate: every model x target is optimized with its budget's pipeline, compiled,
evaluated on its evaluation slice, timed (measured on host, measured on a device over RPC, or estimated)
and sized; each number is held to its budget and, when given, to a baseline report. The result is data
(CheckReport); the command line and the JSON/JUnit/HTML writers only present it."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optkit.backend.artifact import OPTIMIZED_ONNX
from optkit.backend.targets import Target, get_target
from optkit.core.errors import OptionError, OptkitError
from optkit.harness.budgets import Budget, Tolerance, load_budgets
from optkit.pass_infra.calibration import calibration_feeds

FORMAT = "optkit-check/1"


@dataclass
class Verdict:
    check: str            # accuracy | latency | size | baseline-accuracy | baseline-latency | baseline-size |
                          # baseline-instructions
    status: str           # pass | fail | info (nothing to hold it to) | noisy (over budget on a busy machine)
    value: float | None
    limit: float | None
    unit: str
    source: str           # how the value was obtained, e.g. "estimated (roofline ...)"
    message: str


@dataclass
class Cell:
    model: str
    target: str
    pipeline: str
    tuning: str = "untuned"
    accuracy: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    size: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)    # wall time per phase: build, accuracy, latency

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if any(v.status == "fail" for v in self.verdicts):
            return "fail"
        return "noisy" if any(v.status == "noisy" for v in self.verdicts) else "pass"


@dataclass
class ModelSummary:
    model: str
    metric: str
    higher_is_better: bool
    passes: list[dict]             # the source model, then the model after each pass: size, FLOPs, metric
    quant_errors: list[dict]       # worst tensors first, when the pipeline quantizes


@dataclass
class CheckReport:
    cells: list[Cell]
    models: dict[str, ModelSummary]
    calibration: list[dict]
    tolerance: Tolerance
    options: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(c.status in ("pass", "noisy") for c in self.cells)

    def failures(self) -> list[str]:
        lines = []
        for c in self.cells:
            if c.error:
                lines.append(f"{c.model} on {c.target}: error: {c.error}")
            lines += [f"{c.model} on {c.target}: {v.message}" for v in c.verdicts if v.status == "fail"]
        return lines

    def as_dict(self) -> dict[str, Any]:
        from optkit.backend.artifact import versions

        return {"format": FORMAT, "passed": self.passed, "versions": versions(), "options": self.options,
                "tolerance": asdict(self.tolerance), "calibration": self.calibration,
                "models": {k: asdict(v) for k, v in self.models.items()},
                "cells": [{**asdict(c), "status": c.status} for c in self.cells]}


@dataclass
class CheckOptions:
    budgets: Path | None = None
    limit: int = 20
    threads: int = 2
    warmup: int = 2
    repeat: int = 10
    rpc: str | None = None
    key: str | None = None
    work_dir: Path = Path("build/check")
    baseline: Path | None = None
    tuning_db: Path | None = None   # MetaSchedule database from `optkit tune`; tuned builds say so
    counts: str = "auto"            # ARM builds: instructions per inference under qemu (auto: where qemu is set up)


COUNT_MODES = ("auto", "on", "off")


Progress = Callable[[str], None]


def _compare(value: float, limit: float, higher_is_better: bool) -> bool:
    return value >= limit if higher_is_better else value <= limit


def _latency(artifact: Path, optimized, target: Target, feeds, opts: CheckOptions) -> tuple[dict, list[dict]]:
    """(latency summary with its source, per-layer costs) for one built cell."""
    from optkit.harness.estimate import estimate_latency, layer_costs

    estimate = estimate_latency(optimized, target.peak) if target.peak.fp32_gflops > 0 else None
    layers = estimate.layers if estimate else [c.as_dict() for c in layer_costs(optimized)]
    if opts.rpc and target.export_format == "so":
        from optkit.harness.rpc_measure import measure_rpc

        key = opts.key or target.rpc_key
        if not key:
            raise OptionError(f"target '{target.name}' has no rpc_key; pass --key")
        lat = measure_rpc(artifact, feeds, opts.rpc, key, target.threads, opts.warmup, opts.repeat)
        return {"source": f"measured on device over RPC (tracker {opts.rpc}, key {key}, {target.threads} threads)",
                "kind": "rpc", "median_ms": round(lat.median_ms, 3), "p95_ms": round(lat.p95_ms, 3),
                "runs": lat.runs}, layers
    if target.is_host:
        from optkit.harness.measure import measure_host

        m = measure_host(artifact, feeds, opts.threads, opts.warmup, opts.repeat)
        tvm, ort = m["tvm"], m["onnxruntime"]
        return {"source": f"measured on host ({platform.machine()}, {opts.threads} threads; TVM beside "
                          f"onnxruntime in the same run)",
                "kind": "host", "median_ms": round(tvm.median_ms, 3), "p95_ms": round(tvm.p95_ms, 3),
                "runs": tvm.runs, "onnxruntime_median_ms": round(ort.median_ms, 3),
                "onnxruntime_p95_ms": round(ort.p95_ms, 3),
                "ratio_vs_onnxruntime": round(tvm.median_ms / ort.median_ms, 3),
                "load_average": round(os.getloadavg()[0], 2), "cores": os.cpu_count() or 1}, layers
    if estimate is None:
        raise OptionError(f"target '{target.name}' declares no peak numbers to estimate from; measure it with --rpc")
    lat = {"source": "estimated (per-layer roofline from the target's peaks, calibrated on ncnn timings)",
           "kind": "estimated", "median_ms": round(estimate.total_ms, 3), "p95_ms": None,
           "efficiency": estimate.efficiency.as_dict()}
    counted = _instructions(artifact, target, feeds, opts.counts)
    if counted is not None:
        lat["instructions"] = counted
    if counted and "total" in counted:
        from optkit.harness.arm_estimate import estimate_from_counts

        try:
            by_counts = estimate_from_counts(counted["total"], target)
        except OptionError:
            return lat, layers          # no cost model for this target: the roofline stands
        lat.update({"source": by_counts.source(counted["cpu"]), "kind": "counted", "median_ms": by_counts.ms,
                    "cpi": round(by_counts.cpi, 3), "calibration_error_pct": by_counts.error_pct,
                    "roofline_ms": round(estimate.total_ms, 3)})
    return lat, layers


def counting_available() -> str:
    """'' where instruction counting can run here, else why not."""
    import shutil

    from optkit.backend.runtime.emulation import sysroot_path

    if shutil.which("qemu-aarch64") is None:
        return "the dynamic qemu-aarch64 is not installed (apt-get install qemu-user)"
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "no C compiler for the counting plugin"
    if not (sysroot_path() / ".complete").is_file():
        return f"no AArch64 sysroot at {sysroot_path()} (optkit emulator setup)"
    return ""


def _instructions(artifact: Path, target: Target, feeds, mode: str) -> dict | None:
    """Instructions per inference of an ARM build on its target's core model, one thread, under qemu:
    deterministic, so the baseline holds them to a tight tolerance."""
    from optkit.backend.artifact import read_manifest
    from optkit.backend.runtime.instruction_count import count_inference
    from optkit.backend.runtime.runner import prepare_inputs

    if mode == "off" or target.export_format != "so" or target.arch != "aarch64":
        return None
    why = counting_available() or ("" if target.qemu_cpu else f"target '{target.name}' names no qemu_cpu")
    if why:
        if mode == "on":
            raise OptionError(f"--counts on: cannot count instructions for '{target.name}': {why}")
        return {"skipped": why}
    manifest = read_manifest(artifact)
    counts = count_inference("tvm", artifact / manifest["library"]["file"], prepare_inputs(manifest, feeds),
                             target.qemu_cpu)
    return {"total": counts.instructions, "simd": counts.simd, "loads": counts.loads, "stores": counts.stores,
            "dot_products": counts.dot_products, "cpu": counts.cpu, "threads": 1,
            "hot_functions": dict(list(counts.by_function.items())[:8]),
            "source": f"instructions per inference counted under qemu ({counts.cpu} model, 1 thread)"}


# A host cell over its latency budget is re-measured this many more times, keeping the quietest run.
HOST_RETRIES = 2
# p95/median above this: the runs of one measurement disagree too much for a verdict.
NOISY_SPREAD = 1.5
# A 1-minute load average above this many runnable tasks per core: other work shared the cores. TVM's thread
# pool degrades far more than onnxruntime when its threads are preempted (face 0.65 -> 163 ms with the
# hostile campaign running beside the tests), so the TVM/onnxruntime ratio alone does not show it.
BUSY_LOAD_PER_CORE = 1.5


def host_noise_verdict(lat: dict) -> tuple[str, str]:
    """('fail', '') for a host cell over budget on a quiet machine; ('noisy', why) where the same run shows
    the machine, not the build, was slow: a load average above the cores, onnxruntime beside it no faster
    than TVM, or runs spread widely."""
    if lat.get("kind") != "host":
        return "fail", ""
    spread = lat["p95_ms"] / lat["median_ms"] if lat["median_ms"] else 1.0
    ratio = lat.get("ratio_vs_onnxruntime", float("inf"))
    load, cores = lat.get("load_average", 0.0), lat.get("cores", 1)
    if load > BUSY_LOAD_PER_CORE * cores:
        return "noisy", (f"; noisy, not failed: the load average was {load:.1f} on {cores} cores while measuring "
                         f"(other work shared the cores)")
    if ratio <= 1.0:
        return "noisy", (f"; noisy, not failed: onnxruntime in the same run took {lat['onnxruntime_median_ms']:.2f} "
                         f"ms (TVM/onnxruntime {ratio:.2f}), so the machine was slow, not the build")
    if spread > NOISY_SPREAD:
        return "noisy", f"; noisy, not failed: p95/median {spread:.2f} over {lat['measurements']} measurement(s)"
    return "fail", ""


def _budget_verdicts(cell: Cell, budget: Budget, higher_is_better: bool) -> list[Verdict]:
    out = []
    acc = cell.accuracy
    limit = budget.metric_min if higher_is_better else budget.metric_max
    word = ">=" if higher_is_better else "<="
    if limit is None:
        out.append(Verdict("accuracy", "info", acc["value"], None, acc["metric"], acc["source"],
                           f"{acc['metric']} {acc['value']:.4f} (no budget)"))
    else:
        ok = _compare(acc["value"], limit, higher_is_better)
        out.append(Verdict("accuracy", "pass" if ok else "fail", acc["value"], limit, acc["metric"], acc["source"],
                           f"{acc['metric']} {acc['value']:.4f} {'meets' if ok else 'misses'} budget {word} {limit} "
                           f"({acc['samples']} samples, {acc['source']})"))
    lat = cell.latency
    ms_limit = budget.latency_ms_max.get(cell.target)
    if ms_limit is None:
        out.append(Verdict("latency", "info", lat["median_ms"], None, "ms", lat["source"],
                           f"{lat['median_ms']:.2f} ms, {lat['source']} (no budget for {cell.target})"))
    else:
        ok = lat["median_ms"] <= ms_limit
        status, note = ("pass", "") if ok else host_noise_verdict(lat)
        out.append(Verdict("latency", status, lat["median_ms"], ms_limit, "ms", lat["source"],
                           f"latency {lat['median_ms']:.2f} ms {'within' if ok else 'over'} budget {ms_limit} ms "
                           f"({lat['source']}; {cell.tuning}){note}"))
    mb = cell.size["model_mb"]
    if budget.size_mb_max is None:
        out.append(Verdict("size", "info", mb, None, "MB", "optimized ONNX file", f"model {mb:.3f} MB (no budget)"))
    else:
        ok = mb <= budget.size_mb_max
        out.append(Verdict("size", "pass" if ok else "fail", mb, budget.size_mb_max, "MB", "optimized ONNX file",
                           f"model {mb:.3f} MB {'within' if ok else 'over'} budget {budget.size_mb_max} MB"))
    return out


def load_baseline(path: Path) -> dict[tuple[str, str], dict]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise OptionError(f"--baseline {path}: no such file") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise OptionError(f"--baseline {path}: not a JSON report ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise OptionError(f"--baseline {path}: not an `optkit check --json` report (format {FORMAT})")
    return {(c["model"], c["target"]): c for c in data["cells"] if not c.get("error")}


def baseline_verdicts(cell: Cell, base: dict | None, tol: Tolerance, higher_is_better: bool) -> list[Verdict]:
    """Regressions against a previous report: metric worse by more than tol.metric (absolute), latency or
    size grown by more than tol.latency / tol.size (relative). Host latency is compared as the ratio to
    onnxruntime measured in the same run, which a busy or different CI machine leaves unchanged."""
    if base is None:
        return [Verdict("baseline", "info", None, None, "", "baseline", "not in the baseline report")]
    out = []
    old, new = base["accuracy"]["value"], cell.accuracy["value"]
    worse = (old - new) if higher_is_better else (new - old)
    ok = worse <= tol.metric
    out.append(Verdict("baseline-accuracy", "pass" if ok else "fail", new, old, cell.accuracy["metric"], "baseline",
                       f"{cell.accuracy['metric']} {old:.4f} -> {new:.4f} "
                       f"({'within' if ok else 'regressed beyond'} tolerance {tol.metric})"))
    lat_old, lat_new = base["latency"], cell.latency
    if lat_old.get("kind") == lat_new.get("kind"):
        field_name = "ratio_vs_onnxruntime" if lat_new["kind"] == "host" else "median_ms"
        a, b = lat_old[field_name], lat_new[field_name]
        ok = b <= a * (1 + tol.latency)
        what = "TVM/onnxruntime ratio" if field_name.startswith("ratio") else "latency ms"
        out.append(Verdict("baseline-latency", "pass" if ok else "fail", b, a, field_name, lat_new["source"],
                           f"{what} {a:.3f} -> {b:.3f} ({'within' if ok else 'grew beyond'} "
                           f"+{tol.latency:.0%}; {lat_new['source']})"))
    else:
        out.append(Verdict("baseline-latency", "info", None, None, "", "baseline",
                           f"latency sources differ (baseline {lat_old.get('kind')}, now {lat_new.get('kind')})"))
    old_count = base["latency"].get("instructions", {}).get("total")
    new_count = cell.latency.get("instructions", {}).get("total")
    if old_count and new_count:
        ok = new_count <= old_count * (1 + tol.instructions)
        out.append(Verdict("baseline-instructions", "pass" if ok else "fail", new_count, old_count, "instructions",
                           cell.latency["instructions"]["source"],
                           f"instructions per inference {old_count / 1e6:.2f} M -> {new_count / 1e6:.2f} M "
                           f"({new_count / old_count - 1:+.2%}; {'within' if ok else 'grew beyond'} "
                           f"+{tol.instructions:.0%}; {cell.latency['instructions']['source']})"))
    a, b = base["size"]["model_mb"], cell.size["model_mb"]
    ok = b <= a * (1 + tol.size)
    out.append(Verdict("baseline-size", "pass" if ok else "fail", b, a, "MB", "optimized ONNX file",
                       f"model {a:.3f} -> {b:.3f} MB ({'within' if ok else 'grew beyond'} +{tol.size:.0%})"))
    return out


def _pass_metrics(task, source, records, snapshots, limit: int) -> list[dict]:
    """Size, FLOPs and the task metric of the source model and of the model after every pass (onnxruntime)."""
    from optkit.graph.stats import model_stats
    from optkit.reference_models.catalog import evaluate_runner, session_runner

    rows, value = [], None
    for name, model, changed in [("source", source, True), *[(r.spec, m, r.changed) for r, m in zip(records, snapshots)]]:
        stats = model_stats(model)
        if changed or value is None:       # a pass that changed nothing keeps the metric before it
            value = evaluate_runner(task, session_runner(model), limit, is_reference=name == "source").value
        rows.append({"after": name, "nodes": stats.nodes, "params": stats.params, "size_bytes": stats.size_bytes,
                     "flops": stats.flops, "metric": round(value, 6)})
    return rows


def _quant_errors(source, records, snapshots, calibration, samples: int = 4, keep: int = 24) -> list[dict]:
    from optkit.harness.quant_report import tensor_errors

    for i, r in enumerate(records):
        if r.name == "quantize-int8":
            before = snapshots[i - 1] if i else source
            feeds = calibration_feeds(calibration, before, samples)
            return [e.as_dict() for e in tensor_errors(before, snapshots[i], feeds)[:keep]]
    return []


def tuning_db_for(opts: CheckOptions, target: Target) -> Path | None:
    """--tuning-db if given, else the database shipped for the target (reference_models/tuning/TARGET)."""
    if opts.tuning_db is not None:
        return opts.tuning_db
    from importlib import resources

    shipped = Path(str(resources.files("optkit.reference_models").joinpath("tuning", target.name)))
    return shipped if (shipped / "database_tuning_record.json").is_file() else None


def check_cell(model: str, target: Target, budget: Budget, opts: CheckOptions, progress: Progress,
               summary_needed: bool) -> tuple[Cell, ModelSummary | None]:
    from optkit.backend.compiler import compile_model, tuning_label
    from optkit.graph.model_io import load_model
    from optkit.pass_infra.calibration import CALIBRATION_SAMPLES
    from optkit.pass_infra.instruments import Snapshots, default_instruments
    from optkit.reference_models.catalog import artifact_runner, evaluate_runner, session_runner

    task = budget.task()
    cell = Cell(model, target.name, budget.pipeline)

    def calibration():
        return task.calibration(CALIBRATION_SAMPLES)
    snapshots = Snapshots()
    out_dir = opts.work_dir / model / target.name
    progress(f"{model} on {target.name}: optimizing and compiling")
    started = time.perf_counter()
    result = compile_model(task.onnx_path, target, out_dir, passes=budget.pipeline, calibration=calibration,
                           input_shapes=budget.user.input_shapes if budget.user else "",
                           instruments=[*default_instruments(), snapshots], tuning_db=tuning_db_for(opts, target))
    cell.tuning = tuning_label(result.manifest["tuning"])
    optimized = load_model(out_dir / OPTIMIZED_ONNX, check=False)
    cell.seconds["build"] = round(time.perf_counter() - started, 3)
    progress(f"{model} on {target.name}: evaluating {task.metric_name} on {opts.limit} samples")
    started = time.perf_counter()
    if target.is_host:
        evaluation, source = evaluate_runner(task, artifact_runner(out_dir), opts.limit), "TVM build, run on host"
    else:
        evaluation = evaluate_runner(task, session_runner(optimized), opts.limit)
        source = "onnxruntime on the optimized graph (the ARM build's numerics are checked under emulation in tests)"
    cell.accuracy = {"metric": task.metric_name, "value": round(evaluation.value, 6), "samples": evaluation.samples,
                     "higher_is_better": task.higher_is_better, "source": source}
    cell.seconds["accuracy"] = round(time.perf_counter() - started, 3)
    progress(f"{model} on {target.name}: latency")
    started = time.perf_counter()
    cell.latency, cell.layers = _latency(out_dir, optimized, target, task.sample(0)[0], opts)
    limit = budget.latency_ms_max.get(target.name)
    if cell.latency["kind"] == "host":
        cell.latency["measurements"] = 1
        while limit is not None and cell.latency["median_ms"] > limit and cell.latency["measurements"] <= HOST_RETRIES:
            progress(f"{model} on {target.name}: over budget, measuring again")
            again, _ = _latency(out_dir, optimized, target, task.sample(0)[0], opts)
            again["measurements"] = cell.latency["measurements"] + 1
            cell.latency = min(cell.latency, again, key=lambda lat: lat["median_ms"])
            cell.latency["measurements"] = again["measurements"]
        cell.latency["p95_over_median"] = round(cell.latency["p95_ms"] / cell.latency["median_ms"], 3)
    cell.seconds["latency"] = round(time.perf_counter() - started, 3)
    library = out_dir / result.manifest["library"]["file"]
    cell.size = {"model_mb": round((out_dir / OPTIMIZED_ONNX).stat().st_size / 1e6, 4),
                 "library_mb": round(library.stat().st_size / 1e6, 4), "library": result.manifest["library"]["kind"]}
    cell.verdicts = _budget_verdicts(cell, budget, task.higher_is_better)
    summary = None
    if summary_needed:
        progress(f"{model}: accuracy after each pass")
        source_model = load_model(task.onnx_path)
        summary = ModelSummary(model, task.metric_name, task.higher_is_better,
                               _pass_metrics(task, source_model, result.records, snapshots.models, opts.limit),
                               _quant_errors(source_model, result.records, snapshots.models, calibration))
    return cell, summary


def run_check(models: list[str] | None, targets: list[str] | None, opts: CheckOptions,
              progress: Progress = lambda _: None) -> CheckReport:
    from optkit.harness.estimate import calibration_table

    budgets, tolerance = load_budgets(opts.budgets)
    chosen = models or list(budgets)
    missing = [m for m in chosen if m not in budgets]
    if missing:
        raise OptionError(f"--models: no budget for {', '.join(missing)} (budgeted: {', '.join(budgets)})")
    target_objs = {name: get_target(name) for name in (targets or [])}
    baseline = load_baseline(opts.baseline) if opts.baseline else None
    if opts.counts not in COUNT_MODES:
        raise OptionError(f"--counts {opts.counts!r}: expected one of {', '.join(COUNT_MODES)}")
    if opts.rpc:
        from optkit.backend.runtime.rpc import parse_address

        parse_address(opts.rpc)  # a malformed address is named before anything is built
    cells, summaries = [], {}
    for model in chosen:
        budget = budgets[model]
        names = targets or sorted({"host", *budget.latency_ms_max})
        for name in names:
            target = target_objs.get(name) or get_target(name)
            started = time.perf_counter()
            try:
                cell, summary = check_cell(model, target, budget, opts, progress, model not in summaries)
            except OptkitError as exc:
                cell, summary = Cell(model, name, budget.pipeline, error=str(exc)), None
                cell.seconds["build"] = round(time.perf_counter() - started, 3)
            if summary:
                summaries[model] = summary
            if baseline is not None and not cell.error:
                cell.verdicts += baseline_verdicts(cell, baseline.get((model, name)), tolerance,
                                                   budget.higher_is_better)
            cells.append(cell)
            progress(f"{model} on {name}: {cell.status}")
    options = {"models": chosen, "targets": targets, "limit": opts.limit, "threads": opts.threads,
               "repeat": opts.repeat, "rpc": opts.rpc, "counts": opts.counts,
               "tuning_db": str(opts.tuning_db) if opts.tuning_db else None,
               "baseline": str(opts.baseline) if opts.baseline else None,
               "budgets": str(opts.budgets) if opts.budgets else "built-in"}
    return CheckReport(cells, summaries, calibration_table(), tolerance, options)
