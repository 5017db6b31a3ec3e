"""The `optkit` command line: parses arguments, calls `optkit.api` and prints what it returns. Every
failure is reported as one line naming what is wrong; no tracebacks."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from optkit import __version__, api
from optkit.core.errors import TOOL_EXIT, USAGE_EXIT, OptkitError
from optkit.core.safe_output import atomic_file

# Wide enough for the pass tables when output is a file or a CI log; markup off so names print as they are.
console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 150)


SEED = click.IntRange(0, 2**32 - 1)      # numpy's generators take no negative seed


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())


def _fail(message: str, status: int = TOOL_EXIT) -> None:
    click.echo(f"optkit: error: {_one_line(message)}", err=True)
    sys.exit(status)


class OptkitGroup(click.Group):
    """Every failure becomes one `optkit: error: ...` line. Exit status: 1 a check that ran and failed (the
    gate), 2 a usage error (click's, and optkit's OptionError/OutputError), 3 a tool error (optkit's other
    errors, files the system refuses, out of memory), 70 an internal error (with a hint to report it;
    OPTKIT_TRACEBACK=1 shows the traceback), 130 interrupted."""

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            command = f" {exc.ctx.command_path}" if exc.ctx else ""
            _fail(f"{exc.format_message()} (see optkit{command.removeprefix(' optkit')} --help)", USAGE_EXIT)
        except click.ClickException as exc:
            _fail(exc.format_message(), USAGE_EXIT if exc.exit_code == 2 else TOOL_EXIT)
        except click.Abort:
            _fail("interrupted", 130)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OptkitError as exc:
            _fail(str(exc), exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}")
        except MemoryError:
            _fail("out of memory; try smaller input shapes (--input-shape) or fewer samples")
        except Exception as exc:
            if os.environ.get("OPTKIT_TRACEBACK"):
                raise
            _fail(f"internal error ({type(exc).__name__}: {exc}); this is a bug in optkit: please report it with "
                  f"the command and model (OPTKIT_TRACEBACK=1 shows where)", 70)


@click.group(cls=OptkitGroup)
@click.version_option(__version__, prog_name="optkit")
@click.option("-v", "--verbose", is_flag=True, help="Log what each pass does.")
def main(verbose: bool) -> None:
    """optkit: optimize, compile and check mobile vision models."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")


def _pass_table(records, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("#", "pass", "changed", "nodes", "params", "MFLOPs", "KB", "check", "ms", "stats"):
        table.add_column(col, justify="right" if col not in ("pass", "stats") else "left")
    for r in records:
        b, a = r.before, r.after
        table.add_row(
            str(r.index), r.spec, "yes" if r.changed else "no", f"{b.nodes}→{a.nodes}", f"{b.params}→{a.params}",
            f"{b.flops / 1e6:.2f}→{a.flops / 1e6:.2f}", f"{b.size_bytes / 1024:.0f}→{a.size_bytes / 1024:.0f}",
            _check_cell(r), f"{r.seconds * 1e3:.0f}",
            ", ".join(f"{k}={v}" for k, v in r.stats.items()))
    return table


def _check_cell(record) -> str:
    """What the manager verified: max |diff| for exact passes, worst output SQNR for lossy ones."""
    if record.output_sqnr_db is not None:
        return f"SQNR {record.output_sqnr_db:.1f} dB"
    return "-" if record.max_abs_diff is None else f"|d| {record.max_abs_diff:.1e}"


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """'0.485,0.456,0.406' (or one number; each may be a fraction like 1/255)."""
    if text is None:
        return None
    return tuple(_number(v, option) for v in text.replace(";", ",").split(",") if v.strip())


def _number(text: str, option: str) -> float:
    """'0.5' or '1/255'."""
    top, _, bottom = text.strip().partition("/")
    try:
        return float(top) / float(bottom) if bottom else float(top)
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{text!r} is not a number (e.g. 0.5 or 1/255)", param_hint=option) from None


def calibration_options(fn):
    """--calibration NAME / --calibration-data PATH with the image options, for lossy passes. The command
    receives one `calibration` (a provider or None) and `calibration_data` (the path, which no output may
    replace)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, calibration_model, calibration_layout, calibration_scale, calibration_mean,
                calibration_std, **kwargs):
        from optkit.pass_infra.calibration import ImagePreprocess

        preprocess = ImagePreprocess(
            calibration_layout, _number(calibration_scale, "--calibration-scale"),
            _floats(calibration_mean, "--calibration-mean") or (0.0,),
            _floats(calibration_std, "--calibration-std") or (1.0,))
        kwargs["calibration"] = api.calibration(calibration_model, kwargs["calibration_data"],
                                                kwargs["calibration_samples"], preprocess)
        return fn(*args, **kwargs)

    for option in (
            click.option("--calibration-std", help="Images: per-channel std, e.g. 0.229,0.224,0.225 (default 1)."),
            click.option("--calibration-mean", help="Images: per-channel mean, subtracted after the scale "
                                                    "(default 0), e.g. 0.485,0.456,0.406."),
            click.option("--calibration-scale", default="1/255", show_default=True,
                         help="Images: pixel values (0-255) are multiplied by this first."),
            click.option("--calibration-layout", type=click.Choice(["auto", "nchw", "nhwc"]), default="auto",
                         show_default=True, help="Images: the input's layout (auto: NCHW when axis 1 has 1 or 3)."),
            click.option("--calibration-data", type=click.Path(path_type=Path),
                         help="Calibration inputs: an .npz (one array per input name, samples on axis 0), an .npy, "
                              "or a folder of .npy/.npz files or of images (PNG/JPEG/BMP)."),
            click.option("--calibration", "calibration_model",
                         help="Use this reference model's calibration set (see `optkit models list`)."),
    ):
        wrapper = option(wrapper)
    return calibration_samples_option(wrapper)


def calibration_samples_option(fn):
    from optkit.pass_infra.calibration import CALIBRATION_SAMPLES

    return click.option("--calibration-samples", default=CALIBRATION_SAMPLES, show_default=True, type=click.IntRange(1),
                        help="Calibration samples quantize-int8 uses; tuning records match only builds with the same count.")(fn)


def _json_to_stdout(ctx, param, value):
    if value is not None and str(value) == "-" and not console.stderr:
        console.stderr = True           # stdout carries the JSON alone; the tables go to stderr, for this command
        ctx.call_on_close(lambda: setattr(console, "stderr", False))
    return value


def json_option(what: str):
    """--json [PATH], one spelling for every command: PATH gets the JSON (written atomically); no PATH, or
    -, prints it on stdout."""
    return click.option("--json", "json_path", is_flag=False, flag_value="-", default=None, callback=_json_to_stdout,
                        type=click.Path(path_type=Path, allow_dash=True),
                        help=f"Write {what} as JSON to PATH (no PATH or '-': stdout).")


def _write_json(path: Path | None, data, read=()) -> None:
    if path is None:
        return
    text = json.dumps(data, indent=2) + "\n"
    if str(path) == "-":
        click.echo(text, nl=False)
        return
    with atomic_file(path, read) as tmp:
        tmp.write_text(text)
    console.print(f"wrote {path}")


def loss_options(fn):
    """--strict / --min-sqnr: how much a lossy pass (quantize-int8, prune-channels) may cost."""
    from optkit.pass_infra.instruments import WARN_BELOW_SQNR_DB

    fn = click.option("--min-sqnr", default=WARN_BELOW_SQNR_DB, show_default=True, type=float,
                      help="A lossy pass whose worst output SQNR (dB, against its input) falls below this is "
                           "reported loudly (20 dB ~ output cosine 0.995).")(fn)
    return click.option("--strict", is_flag=True,
                        help="Make that an error (exit 3): nothing is built or written.")(fn)


def _warn(warnings: list[str]) -> None:
    for line in warnings:
        click.echo(f"optkit: WARNING: {line} (--strict makes this an error)", err=True)


def _inputs(*paths) -> tuple[Path, ...]:
    """The files a command reads: no output may replace them."""
    return tuple(Path(p) for p in paths if p)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Where to write the optimized ONNX.")
@click.option("--passes", default="mobile", show_default=True,
              help="Pass spec, e.g. 'specialize-input{shape=x:1x3x240x320},simplify,fold-bn', or a pipeline name.")
@click.option("--input-shape", default="", help="Fix input dims first: NAME:1x3x240x320 (several joined by ';').")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed for verification inputs and calibration.")
@click.option("--dump-ir", type=click.Path(), help="Write the model after every pass into this directory.")
@click.option("--report", type=click.Path(path_type=Path), help="Write the pass log as JSON.")
@loss_options
@calibration_options
def optimize(model, output, passes, input_shape, seed, dump_ir, report, strict, min_sqnr, calibration,
             calibration_data, calibration_samples):
    """Run passes over MODEL and write the optimized ONNX (the input is never modified)."""
    read = _inputs(model, calibration_data)
    result = api.optimize(model, output, passes, input_shape, seed,
                          calibration, dump_ir, read[1:], strict=strict, min_sqnr_db=min_sqnr)
    _warn(result.warnings)
    if report:
        with atomic_file(report, (*read, output), "--report") as tmp:
            tmp.write_text(json.dumps([r.as_dict(with_timing=True) for r in result.records], indent=2) + "\n")
    console.print(_pass_table(result.records, f"{model} → {output}"))


@main.command("compile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-t", "--target", "target_name", required=True, help="Target name (see `optkit targets list`).")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Artifact directory to create (replaced atomically).")
@click.option("--passes", default="mobile", show_default=True, help="Pass spec or pipeline applied before TVM.")
@click.option("--input-shape", default="", help="Fix input dims: NAME:1x3x240x320 (several joined by ';').")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed for verification and validation inputs.")
@click.option("--dump-ir", type=click.Path(), help="Write the model after every pass into this directory.")
@click.option("--schedules", type=click.Choice(["default", "none"]), default="default", show_default=True,
              help="optkit's default CPU schedules for functions no tuning record covers, or none (TVM's loops).")
@click.option("--tuning-db", type=click.Path(path_type=Path), help="MetaSchedule database from `optkit tune`.")
@click.option("--force", is_flag=True, help="Replace -o even if it is a directory optkit did not create.")
@click.option("--validate", "validate", type=click.Choice(["auto", "emulate", "off"]), default="auto", show_default=True,
              help="Run the build against onnxruntime before writing it: auto (host builds natively, ARM/iOS via a "
                   "host build of the same module), emulate (the AArch64 library under qemu), off.")
@loss_options
@calibration_options
def compile_cmd(model, target_name, output, passes, input_shape, seed, dump_ir, schedules, tuning_db, force, validate,
                strict, min_sqnr, calibration, calibration_data, calibration_samples):
    """Optimize MODEL and build it with TVM for a target into an artifact directory."""
    from optkit.backend.compiler import tuning_label

    target = api.resolve_target(target_name)
    result = api.compile(model, target, output, passes, input_shape, seed,
                         calibration, schedules,
                         tuning_db, force, validate, dump_ir, _inputs(calibration_data), strict=strict,
                         min_sqnr_db=min_sqnr)
    for notice in result.notices:
        click.echo(f"optkit: notice: {notice}", err=True)
    _warn(result.warnings)
    console.print(_pass_table(result.records, f"{model} → {target.name}"))
    lib = result.manifest["library"]
    counts = ", ".join(f"{k} {v}" for k, v in result.manifest["schedules"]["functions"].items() if v)
    console.print(f"schedules: {tuning_label(result.manifest['tuning'])}; functions by rule: {counts or 'none'}")
    console.print(f"validated: {_validation_line(result.manifest['validation'])}")
    console.print(f"wrote {output}/: {lib['file']} ({lib['kind']}), model.opt.onnx, manifest.json")


def _validation_line(validation: dict) -> str:
    if "skipped" in validation:
        return f"NO ({validation['skipped']})"
    from optkit.backend.validate import MIN_QDQ_SQNR_DB

    worst = max((o["max_abs_diff"] for o in validation["outputs"].values()), default=0.0)
    lowered = [f"{name} {o['sqnr_db']:.1f} dB (bar {o['bar_db']:.1f})" for name, o in validation["outputs"].items()
               if o.get("bar_db", MIN_QDQ_SQNR_DB) < MIN_QDQ_SQNR_DB and o.get("sqnr_db") is not None]
    sensitive = (f"; SQNR against onnxruntime held to a lower bar where this model itself amplifies one-step rounding "
                 f"differences: {', '.join(lowered)}") if lowered else ""
    return f"matches onnxruntime on generated inputs (max |diff| {worst:.1e}; {validation['how']}{sensitive})"


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("-i", "--input", "inputs", multiple=True, required=True,
              help="FILE.npy (single-input models), NAME=FILE.npy, or FILE.npz with one array per input name.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="FILE.npy (one output) or FILE.npz.")
@click.option("--emulate", is_flag=True, help="Run an AArch64 artifact under qemu user-mode emulation.")
@click.option("--compare/--no-compare", default=None,
              help="Compare with onnxruntime on the artifact's optimized ONNX (default: on with --emulate).")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(0, 1024),
              help="TVM runtime threads (0: one per core).")
def run(artifact, inputs, output, emulate, compare, threads):
    """Execute a compiled artifact on inputs from .npy/.npz files."""
    from optkit.backend.artifact import read_manifest

    manifest = read_manifest(artifact)
    result = api.run(artifact, api.read_inputs(inputs, artifact), emulate, compare, threads)
    for name, value in result.outputs.items():
        console.print(f"{name}: shape {list(value.shape)} {value.dtype}  [{result.how}]")
    if output:
        api.save_outputs(result.outputs, output, _inputs(artifact, *(i.partition("=")[2] or i for i in inputs)))
        console.print(f"wrote {output}")
    if result.reference_max_abs_diff is not None:
        verdict = "MISMATCH" if result.mismatches else "match"
        console.print(f"vs onnxruntime on {manifest['optimized_onnx']}: max |diff| "
                      f"{result.reference_max_abs_diff:.2e} ({verdict})")
        if result.mismatches:
            sys.exit(1)


@main.group("passes")
def passes_group():
    """Inspect the registered passes (built-in and plugins)."""


@passes_group.command("list")
@json_option("the passes and pipelines")
def passes_list(json_path):
    rows, pipelines = api.list_passes()
    if json_path:
        _write_json(json_path, {"passes": rows, "pipelines": pipelines})
        return
    table = Table(title="passes")
    for col in ("name", "exact", "options", "summary", "from"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], "-" if "error" in r else ("exact" if r["exact"] else "lossy"),
                      ", ".join(r.get("options", {})), r.get("summary") or r.get("error", ""), r["origin"])
    console.print(table)
    for name, spec in pipelines.items():
        console.print(f"pipeline {name} = {spec}")


@passes_group.command("show")
@click.argument("name")
@json_option("the pass")
def passes_show(name, json_path):
    """A pass's options with their defaults and help, and what it does."""
    info = api.show_pass(name)
    if json_path:
        _write_json(json_path, info)
        return
    kind = "exact (checked against onnxruntime)" if info["exact"] else "lossy (reports what it costs)"
    console.print(f"{info['name']}: {info['summary']}\n{kind}; from {info['origin']}")
    table = Table(title=f"options: {name}{{option=value,...}}", title_justify="left")
    for col in ("option", "default", "help"):
        table.add_column(col)
    for option, spec in info["options"].items():
        table.add_row(option, repr(spec["default"]), spec["help"])
    console.print(table if info["options"] else "no options")
    if info["doc"]:
        console.print(f"\n{info['doc']}")


@main.group("targets")
def targets_group():
    """Inspect the device targets (one TOML file each)."""


@targets_group.command("list")
@json_option("the targets")
def targets_list(json_path):
    targets = api.list_targets()
    if json_path:
        _write_json(json_path, [t.as_dict() for t in targets])
        return
    table = Table(title="targets")
    for col in ("name", "arch", "export", "threads", "fp32 GFLOP/s", "int8 GOP/s", "GB/s", "rpc key",
                "file"):
        table.add_column(col)
    for t in targets:
        p = t.peak
        peak = [f"{v:g}" if v else "measured" for v in (p.fp32_gflops, p.int8_gops, p.bandwidth_gbs)]
        table.add_row(t.name, t.arch, t.export_format, str(t.threads or "all"), *peak, t.rpc_key or "-",
                      Path(t.path).name)
    console.print(table)


@main.group("models")
def models_group():
    """The reference models: list them, evaluate any ONNX or host artifact on their evaluation sets."""


@models_group.command("list")
@json_option("the reference models")
def models_list(json_path):
    rows = api.list_models()
    if json_path:
        _write_json(json_path, rows)
        return
    table = Table(title="reference models")
    for col in ("name", "input", "params", "MFLOPs", "size KB", "metric", "fp32 (full eval set)", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], "x".join(map(str, r["input"])), str(r.get("params", "-")),
                      f"{r['flops'] / 1e6:.0f}" if r.get("flops") else "-",
                      f"{r['file_bytes'] / 1024:.0f}" if r.get("file_bytes") else "missing",
                      r["metric"] + (" ↑" if r["higher_is_better"] else " ↓"),
                      "-" if r["fp32"] is None else f"{r['fp32']:.4f}", r["description"])
    console.print(table)


@models_group.command("eval")
@click.argument("name")
@click.option("--model", "model_path", type=click.Path(path_type=Path),
              help="Another ONNX with this model's interface (default: the committed reference model).")
@click.option("--artifact", type=click.Path(path_type=Path), help="A compiled host artifact directory instead.")
@click.option("--limit", type=click.IntRange(1), help="Evaluate only the first N samples of the evaluation set.")
@json_option("the evaluation")
def models_eval(name, model_path, artifact, limit, json_path):
    """Evaluate a model with NAME's interface on NAME's evaluation set."""
    result = api.evaluate(name, model_path, artifact, limit)
    source = artifact or model_path or "committed reference ONNX"
    direction = "higher is better" if result.higher_is_better else "lower is better"
    console.print(f"{name}: {result.metric} = {result.value:.4f} ({direction}) on {result.samples} samples "
                  f"[{source}; {'TVM host artifact' if artifact else 'onnxruntime'}]")
    for key, value in result.details.items():
        console.print(f"  {key}: {value}")
    _write_json(json_path, result.as_dict())


@models_group.command("fusion-demo")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("fusion.png"), show_default=True)
@click.option("--model", "model_path", type=click.Path(path_type=Path), help="Landmark ONNX (default: the face model).")
def models_fusion_demo(output, model_path):
    """Face fusion: align two generated faces by their predicted landmarks, warp, tone-match, blend."""
    result = api.fusion_demo(output, model_path)
    console.print(f"wrote {result['picture']} (source | target | fused); mean landmark error in px: "
                  f"{result['landmark_error_px']}")


@main.command("quant-report")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--passes", default="mobile", show_default=True, help="Float pipeline applied before quantizing.")
@click.option("--calibrator", default="minmax", show_default=True, help="minmax | percentile | entropy")
@click.option("--top", default=15, show_default=True, help="How many tensors to show.")
@json_option("the per-tensor errors")
@calibration_options
def quant_report(model, passes, calibrator, top, json_path, calibration, calibration_data, calibration_samples):
    """Rank tensors by quantization error (SQNR, cosine) between the float and the int8 model."""
    report = api.quant_report(model, calibration,
                              passes, calibrator)
    rows, record = report.tensors, report.record
    table = Table(title=f"quantization error per tensor, worst first ({calibrator} calibration)")
    for col in ("tensor", "node", "op", "SQNR dB", "cosine"):
        table.add_column(col)
    for e in rows[:top]:
        table.add_row(e.tensor, e.node, e.op, f"{e.sqnr_db:.1f}", f"{e.cosine:.5f}")
    console.print(table)
    console.print(f"model outputs: worst SQNR {record.output_sqnr_db:.1f} dB; size "
                  f"{record.before.size_bytes / 1024:.0f} KB → {record.after.size_bytes / 1024:.0f} KB")
    _write_json(json_path, [e.as_dict() for e in rows])


@main.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path))
@click.option("--reference-model", "task_name", required=True,
              help="The model whose evaluation data and metric judge accuracy (and whose calibration data is used): "
                   "a reference model, or with --budgets any model that file declares.")
@click.option("--budgets", type=click.Path(path_type=Path), help="A budgets file declaring models of your own.")
@click.option("--accuracy-budget", type=float, required=True, help="Largest metric cost allowed (e.g. 0.01 mIoU).")
@click.option("--passes", default="mobile", show_default=True, help="Float pipeline applied before quantizing.")
@click.option("--calibrator", default="minmax", show_default=True)
@click.option("--eval-samples", default=40, show_default=True, type=click.IntRange(1))
@calibration_samples_option
def quantize_cmd(model, output, task_name, budgets, accuracy_budget, passes, calibrator, eval_samples,
                 calibration_samples):
    """Accuracy-aware int8: keep the worst layers in float until the task metric is within budget."""
    result = api.quantize(model, output, task_name, accuracy_budget, passes, calibrator, eval_samples,
                          calibration_samples, log=console.print, budgets=budgets)
    verdict = "within budget" if result.within_budget else "NOT within budget (limit of float layers reached)"
    console.print(f"wrote {output}: {verdict}; float {result.float_metric:.4f} → int8 {result.steps[-1].metric:.4f}; "
                  f"kept in float: {', '.join(result.kept_float) or 'none'}")
    if not result.within_budget:
        sys.exit(1)


@main.command("prune-scan")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--reference-model", "task_name", required=True,
              help="Whose evaluation data and metric to use: a reference model, or with --budgets any model there.")
@click.option("--budgets", type=click.Path(path_type=Path), help="A budgets file declaring models of your own.")
@click.option("--ratio", default=0.5, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Fraction of each group's channels removed.")
@click.option("--passes", default="mobile", show_default=True, help="Float pipeline applied first.")
@click.option("--eval-samples", default=16, show_default=True, type=click.IntRange(1))
@click.option("--no-reconstruct", is_flag=True, help="Plain removal, without least-squares reconstruction.")
@json_option("the scan")
def prune_scan_cmd(model, task_name, budgets, ratio, passes, eval_samples, no_reconstruct, json_path):
    """Prune each channel group alone and report the task metric it costs (cheapest per FLOP first)."""
    result = api.prune_scan(model, task_name, ratio, passes, eval_samples, not no_reconstruct, log=console.print,
                            budgets=budgets)
    base, rows = result.unpruned, result.groups
    table = Table(title=f"prune sensitivity, {ratio:.0%} of each group, {result.metric_name} {base:.4f} unpruned "
                        f"({eval_samples} eval samples), cheapest per FLOP first")
    for col in ("group", "producers", "channels", "FLOPs saved", result.metric_name, "cost"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.group), ", ".join(r.producers), str(r.channels), f"{r.flops_saved:.1%}", f"{r.metric:.4f}",
                      f"{r.cost:+.4f}")
    console.print(table)
    _write_json(json_path, {"unpruned": base, "groups": [r.as_dict() for r in rows]})


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def targets_option(help_text: str):
    """-t/--target NAME, repeatable (NAME,NAME works too), the one spelling every command takes; the old
    comma-separated --targets is still read."""
    def decorate(fn):
        fn = click.option("--targets", "targets_csv", hidden=True, help="Old spelling of -t: NAME,NAME.")(fn)
        return click.option("-t", "--target", "target_names", multiple=True,
                            help=f"{help_text} Repeatable (-t rk3399 -t host), or NAME,NAME.")(fn)
    return decorate


def _targets(names: tuple[str, ...], csv: str | None) -> list[str] | None:
    return _csv(",".join((*names, *([csv] if csv else []))))


@contextlib.contextmanager
def _progress(title: str):
    """A callback taking progress text: a spinner on a terminal, else (a CI log) one plain timestamped line
    per step on stderr, so a long run is never silent."""
    if sys.stderr.isatty():
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=Console(stderr=True, highlight=False, markup=False), transient=True) as bar:
            task = bar.add_task(title, total=None)
            yield lambda text: bar.update(task, description=text)
        return
    started = time.monotonic()
    yield lambda text: click.echo(f"{title}: [{time.monotonic() - started:6.0f} s] {text}", err=True)


@main.command("check")
@click.option("--models", help="Comma-separated reference models (default: every model in the budgets file).")
@targets_option("Target to check (default per model: host and every target it has a latency budget for).")
@click.option("--budgets", type=click.Path(path_type=Path), help="Budgets TOML (default: the built-in one).")
@click.option("--baseline", type=click.Path(path_type=Path), help="A previous --json report: fail on regressions.")
@json_option("the full report")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), help="Write JUnit XML for CI.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), help="Write a self-contained HTML report.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Evaluation samples per model.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 1024),
              help="Threads for TVM and onnxruntime on host.")
@click.option("--repeat", default=10, show_default=True, type=click.IntRange(1),
              help="Timed runs per measurement (after 2 warm-up).")
@click.option("--rpc", help="HOST:PORT of a TVM RPC tracker: measure ARM builds on the device registered there.")
@click.option("--key", help="Device key at the tracker (default: the target file's rpc_key).")
@click.option("--work-dir", default="build/check", show_default=True, type=click.Path(path_type=Path),
              help="Where the compiled artifacts go.")
@click.option("--tuning-db", type=click.Path(path_type=Path),
              help="MetaSchedule database from `optkit tune`: builds use it and say they are tuned.")
@click.option("--counts", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="ARM builds: count instructions per inference under qemu (deterministic; the baseline holds "
                   "them to [tolerance] instructions). auto: where qemu-user and the sysroot are set up.")
def check_cmd(models, target_names, targets_csv, budgets, baseline, json_path, junit_path, html_path, limit, threads,
              repeat, rpc, key, work_dir, tuning_db, counts):
    """The gate: budgets for accuracy, latency and size per model x target; exit 1 on any failure."""
    from optkit.harness.gate import CheckOptions
    from optkit.harness.report_html import html_report
    from optkit.harness.report_junit import junit_xml

    opts = CheckOptions(budgets=budgets, limit=limit, threads=threads, repeat=repeat, rpc=rpc, key=key,
                        work_dir=work_dir, baseline=baseline, tuning_db=tuning_db, counts=counts)
    with _progress("optkit check") as progress:
        report = api.check(_csv(models), _targets(target_names, targets_csv), opts, progress=progress)
    table = Table(title=f"optkit check: {'PASSED' if report.passed else 'FAILED'}", title_justify="left")
    for col in ("model", "target", "accuracy", "latency ms", "latency source", "budget ms", "instructions (M)",
                "model MB", "tuning", "verdict"):
        table.add_column(col)
    for c in report.cells:
        if c.error:
            table.add_row(c.model, c.target, "-", "-", "-", "-", "-", "-", "-", "ERROR")
            continue
        counted = c.latency.get("instructions", {})
        instructions = f"{counted['total'] / 1e6:.1f} ({counted['cpu']})" if "total" in counted else "-"
        lat = next(v for v in c.verdicts if v.check == "latency")
        kind = {"host": "measured (host)", "rpc": "measured (device, RPC)", "estimated": "estimated (roofline)",
                "counted": "estimated (counts)"}[c.latency["kind"]]
        table.add_row(c.model, c.target, f"{c.accuracy['metric']} {c.accuracy['value']:.4f}",
                      f"{c.latency['median_ms']:.2f}", kind, "-" if lat.limit is None else f"{lat.limit:g}",
                      instructions, f"{c.size['model_mb']:.3f}", c.tuning, c.status.upper())
    console.print(table)
    _write_json(json_path, report.as_dict())
    for path, render in ((junit_path, lambda: junit_xml(report)), (html_path, lambda: html_report(report))):
        if path:
            with atomic_file(path) as tmp:
                tmp.write_bytes(render())
            console.print(f"wrote {path}")
    if not report.passed:
        failures = report.failures()
        for line in failures:
            click.echo(f"optkit check: FAIL: {line}", err=True)
        click.echo(f"optkit check: {len(failures)} failure(s) in {len(report.cells)} model x target cell(s)", err=True)
        sys.exit(1)


@main.command("tune")
@click.argument("models", nargs=-1, required=True)
@click.option("-t", "--target", "target_name", default="host", show_default=True)
@click.option("--db", "db_dir", required=True, type=click.Path(path_type=Path),
              help="Database directory (created, or resumed: tasks with enough records are skipped).")
@click.option("--trials", default=32, show_default=True, type=click.IntRange(1), help="Measured candidates per task.")
@click.option("--passes", default="mobile", show_default=True, help="Pipeline applied first (as for compile).")
@click.option("--input-shape", default="", help="Fix input dims: NAME:1x3x240x320 (applies to every model).")
@click.option("--rpc", help="HOST:PORT of a TVM RPC tracker: time candidates on the device registered there.")
@click.option("--key", help="Device key at the tracker (default: the target file's rpc_key).")
@calibration_options
def tune_cmd(models, target_name, db_dir, trials, passes, input_shape, rpc, key, calibration, calibration_data,
             calibration_samples):
    """MetaSchedule-tune MODELS (ONNX files or reference-model names) into a database for compile."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    target = api.resolve_target(target_name)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        job = bar.add_task("extracting tasks", total=None)

        def report(task_name, done, total):
            bar.update(job, description=f"tuning {task_name}", completed=done, total=total)

        tasks = api.tune(models, target, db_dir, trials, passes, input_shape, rpc, key, calibration_samples,
                         progress=report, calibration=calibration)
    table = Table(title=f"tuning database {db_dir} ({target.name}, {trials} trials per task)", title_justify="left")
    for col in ("task", "weight", "models", "records before"):
        table.add_column(col)
    for t in tasks:
        table.add_row(t.name, str(t.weight), ",".join(sorted(set(t.models))), str(t.existing))
    console.print(table)
    console.print(f"{len(tasks)} distinct tasks; compile with: optkit compile MODEL --target {target.name} "
                  f"--tuning-db {db_dir}")


@main.command("estimate")
@click.option("--models", help="Comma-separated reference models (default: all budgeted models).")
@targets_option("Target to estimate for (default: snapdragon625, snapdragon845, rk3399, ios-arm64).")
@click.option("--budgets", type=click.Path(path_type=Path), help="Budgets TOML (default: the built-in one).")
def estimate_cmd(models, target_names, targets_csv, budgets):
    """Estimated device latency of each model (after its budget pipeline) beside its budget, and the
    calibration of the estimate against published timings."""
    from optkit.harness.estimate import calibrated_efficiency, calibration_table

    names = _targets(target_names, targets_csv) or ["snapdragon625", "snapdragon845", "rk3399", "ios-arm64"]
    target_objs = [api.resolve_target(t) for t in names]
    rows = api.estimate(_csv(models), target_objs, budgets)
    table = Table(title="estimated latency, ms (per-layer roofline; budget from budgets.toml / seed-facts)",
                  title_justify="left")
    table.add_column("model")
    table.add_column("pipeline")
    for t in target_objs:
        table.add_column(f"{t.name} est.", justify="right")
        table.add_column("budget", justify="right")
    for row in rows:
        cells = [(f"{ms:.1f}", "-" if limit is None else f"{limit:g}") for ms, limit in row.cells.values()]
        table.add_row(row.model, row.pipeline, *(text for cell in cells for text in cell))
    console.print(table)
    calib = Table(title=f"calibration: estimated vs published (efficiencies {calibrated_efficiency().as_dict()})",
                  title_justify="left")
    for col in ("network", "device", "published ms", "estimated ms", "error", "source"):
        calib.add_column(col)
    for r in calibration_table():
        calib.add_row(r["net"], r["device"], f"{r['published_ms']}", f"{r['estimated_ms']}", f"{r['error_pct']:+.1f}%",
                      r["source"])
    console.print(calib)


@main.command("profile")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--cpu", type=click.Choice(["cortex-a53", "cortex-a72", "cortex-a76"]),
              help="qemu core model (default: the target file's qemu_cpu).")
@click.option("--onnx", "original_onnx", type=click.Path(path_type=Path),
              help="The original ONNX: onnxruntime runs it too.")
@click.option("--tflite", type=click.Path(path_type=Path), help="A .tflite of the network: LiteRT (XNNPACK) runs it too.")
@click.option("--same-graph/--no-same-graph", default=True, show_default=True,
              help="Count onnxruntime on the artifact's own optimized graph (the same QDQ graph for int8 builds).")
@click.option("--top", default=10, show_default=True, type=click.IntRange(0), help="Hot functions of the build to list.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the generated inputs.")
@json_option("the counts")
def profile_cmd(artifact, cpu, original_onnx, tflite, same_graph, top, seed, json_path):
    """Executed AArch64 instructions per inference under qemu, beside onnxruntime and LiteRT (deterministic
    counts, not times)."""
    log = Console(stderr=True, highlight=False, markup=False).print
    result = api.profile(artifact, cpu, original_onnx, tflite, same_graph, seed, log=log)
    base = result.optkit.instructions
    table = Table(title=f"instructions per inference: qemu {result.cpu} model, 1 thread (emulated counts, not times)",
                  title_justify="left")
    for col in ("engine", "graph", "instructions (M)", "SIMD", "loads (M)", "stores (M)", "dot products", "/ optkit"):
        table.add_column(col, justify="left" if col in ("engine", "graph") else "right")
    for row in result.rows:
        c = row.counts
        table.add_row(row.label, row.graph, f"{c.instructions / 1e6:.1f}", f"{c.simd / max(c.instructions, 1):.0%}",
                      f"{c.loads / 1e6:.1f}", f"{c.stores / 1e6:.1f}", str(c.dot_products),
                      f"{c.instructions / base:.2f}x")
    console.print(table)
    if top:
        hot = Table(title=f"hottest functions of {artifact} ({base / 1e6:.1f} M instructions)", title_justify="left")
        for col in ("instructions (M)", "share", "function"):
            hot.add_column(col, justify="left" if col == "function" else "right")
        for name, n in list(result.optkit.by_function.items())[:top]:
            hot.add_row(f"{n / 1e6:.2f}", f"{n / base:.1%}", name)
        console.print(hot)
    _write_json(json_path, result.as_dict(), (Path(artifact),))


@main.group("emulator")
def emulator_group():
    """The AArch64 user-mode emulation used by `optkit run --emulate`."""


@emulator_group.command("setup")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
def emulator_setup(dest):
    """Prepare and cache the AArch64 sysroot (qemu-user-static, arm64 Python, TVM runtime wheels)."""
    path = api.setup_emulator(dest)
    console.print(f"AArch64 sysroot ready at {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
