"""Instruments run around every pass without the pass knowing (after tvm.ir.instrument):
validity, numeric equivalence for exact passes, statistics, timing and IR dumps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from optkit.core.errors import PassFailedError, ResourceError
from optkit.graph.numerics import compare, first_divergent_node, make_inputs, run_ort
from optkit.graph.stats import ModelStats, model_stats
from optkit.pass_infra.calibration import calibration_feeds
from optkit.pass_infra.contract import Pass, PassContext, PassResult


@dataclass
class PassRecord:
    """What happened in one pass. Everything but `seconds` is deterministic and goes into manifests."""

    index: int
    name: str
    spec: str
    exact: bool
    changed: bool = False
    stats: dict[str, Any] = field(default_factory=dict)
    before: ModelStats | None = None
    after: ModelStats | None = None
    max_abs_diff: float | None = None
    output_sqnr_db: float | None = None      # lossy passes: worst output's SQNR against the pass's input
    remedy: str = ""                         # lossy passes: what to try when this costs too much
    seconds: float = 0.0

    def as_dict(self, with_timing: bool = False) -> dict[str, Any]:
        d = {
            "index": self.index, "pass": self.name, "spec": self.spec, "exact": self.exact,
            "changed": self.changed, "stats": self.stats,
            "before": self.before.as_dict() if self.before else None,
            "after": self.after.as_dict() if self.after else None,
            "max_abs_diff": self.max_abs_diff,
            "output_sqnr_db": None if self.output_sqnr_db is None else round(self.output_sqnr_db, 3),
        }
        if with_timing:
            d["seconds"] = round(self.seconds, 4)
        return d


class Instrument:
    def run_before_pass(self, pass_: Pass, model: onnx.ModelProto, ctx: PassContext, record: PassRecord) -> None:
        pass

    def run_after_pass(self, pass_: Pass, before: onnx.ModelProto, result: PassResult, ctx: PassContext,
                       record: PassRecord) -> None:
        pass


class Timing(Instrument):
    def run_before_pass(self, pass_, model, ctx, record):
        self._start = time.perf_counter()

    def run_after_pass(self, pass_, before, result, ctx, record):
        record.seconds = time.perf_counter() - self._start


class Validity(Instrument):
    """The result must pass the ONNX checker and strict shape inference."""

    def run_after_pass(self, pass_, before, result, ctx, record):
        try:
            onnx.checker.check_model(result.model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise PassFailedError(pass_.name, f"produced an invalid model: {str(exc).strip()}") from exc
        out_before = [o.name for o in before.graph.output]
        out_after = [o.name for o in result.model.graph.output]
        if out_before != out_after:
            raise PassFailedError(pass_.name, f"changed the graph outputs {out_before} -> {out_after}")


class NumericEquivalence(Instrument):
    """Exact passes must give the same outputs as their input model under onnxruntime; for lossy passes
    the error they introduce is measured (SQNR of each output on calibration data) and recorded."""

    def __init__(self, rtol: float = 1e-4, atol: float = 1e-5, lossy_samples: int = 8):
        self.rtol, self.atol, self.lossy_samples = rtol, atol, lossy_samples

    def run_after_pass(self, pass_, before, result, ctx, record):
        if not result.changed:
            return
        if not pass_.exact:
            record.output_sqnr_db = self._lossy_error(pass_.name, before, result.model, ctx)
            floor = pass_.output_sqnr_floor()
            if floor is None:
                raise PassFailedError(pass_.name, "is lossy but declares no min_output_sqnr_db (the SQNR it guarantees)")
            if not record.output_sqnr_db >= floor:
                remedy = pass_.loss_remedy()
                raise PassFailedError(pass_.name, f"worst output SQNR {record.output_sqnr_db:.1f} dB against its input "
                                                  f"is below the {floor:g} dB it guarantees" + (f"; {remedy}" if remedy else ""))
            return
        # The pass may have fixed symbolic dims, so the inputs follow the result's (more specific) shapes.
        feeds = make_inputs(result.model, ctx.seed)
        what = f"pass '{pass_.name}': verification run"
        try:
            expected = run_ort(before, feeds, what=what)
        except ResourceError:
            raise
        except Exception as exc:
            raise PassFailedError(pass_.name, f"input model does not run on the verification inputs "
                                              f"{ {k: v.shape for k, v in feeds.items()} }: {exc}") from exc
        try:
            actual = run_ort(result.model, feeds, what=what)
        except ResourceError:
            raise
        except Exception as exc:
            raise PassFailedError(pass_.name, f"result does not run under onnxruntime: {exc}") from exc
        worst, bad = compare(expected, actual, self.rtol, self.atol)
        record.max_abs_diff = worst
        if bad:
            m = bad[0]
            where = first_divergent_node(before, result.model, feeds)
            detail = f"; first divergent node: {where}" if where else ""
            raise PassFailedError(
                pass_.name,
                f"claims to be exact but output '{m.name}' differs from the input model "
                f"(max |diff| {m.max_abs:.3g} > tolerance {m.tolerance:.3g}{', ' + m.reason if m.reason else ''})"
                f"{detail}")


    def _lossy_error(self, pass_name, before, after, ctx) -> float:
        from optkit.graph.numerics import sqnr_db

        feeds_list = (calibration_feeds(ctx.calibration, before, self.lossy_samples) if ctx.calibration
                      else [make_inputs(after, ctx.seed)])
        worst = float("inf")
        for feeds in feeds_list:
            ref = run_ort(before, feeds)
            try:
                got = run_ort(after, feeds)
            except Exception as exc:
                raise PassFailedError(pass_name, f"result does not run under onnxruntime: {exc}") from exc
            worst = min([worst] + [sqnr_db(ref[k], got[k]) for k in ref])
        return worst


class Statistics(Instrument):
    def run_before_pass(self, pass_, model, ctx, record):
        record.before = model_stats(model)

    def run_after_pass(self, pass_, before, result, ctx, record):
        record.after = model_stats(result.model)


class IRDump(Instrument):
    """Write the model after every pass as NN-name.onnx into a directory, for debugging."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def run_after_pass(self, pass_, before, result, ctx, record):
        from optkit.core.safe_output import atomic_file

        with atomic_file(self.directory / f"{record.index:02d}-{pass_.name}.onnx", option="--dump-ir") as tmp:
            tmp.write_bytes(result.model.SerializeToString(deterministic=True))


class Snapshots(Instrument):
    """Keep the model after every pass in memory (the harness evaluates accuracy after each pass)."""

    def __init__(self):
        self.models: list[onnx.ModelProto] = []

    def run_after_pass(self, pass_, before, result, ctx, record):
        self.models.append(result.model)


def default_instruments(dump_dir: str | Path | None = None) -> list[Instrument]:
    instruments: list[Instrument] = [Timing(), Statistics(), Validity(), NumericEquivalence()]
    if dump_dir:
        instruments.append(IRDump(dump_dir))
    return instruments


# A lossy pass whose worst output falls below this SQNR against its input gets a loud warning (20 dB is an
# output cosine of about 0.995); `--strict` makes it an error before anything is written.
WARN_BELOW_SQNR_DB = 20.0


def _below_floor(r: PassRecord, min_sqnr_db: float) -> bool:
    return r.changed and r.output_sqnr_db is not None and r.output_sqnr_db < min_sqnr_db


def too_lossy(records: list[PassRecord], min_sqnr_db: float = WARN_BELOW_SQNR_DB) -> list[PassRecord]:
    """Lossy passes that cost more than `min_sqnr_db` allows, or fell short of what they were asked for
    (a `shortfall` in their stats: prune-channels{flops=0.3} that can remove less)."""
    return [r for r in records if not r.exact and (_below_floor(r, min_sqnr_db) or r.stats.get("shortfall"))]


def loss_message(record: PassRecord, min_sqnr_db: float) -> str:
    """What a too-lossy pass cost (cosine ~ 1 - 10^(-SQNR/10) / 2 for an error uncorrelated with the output),
    or what it could not do."""
    if not _below_floor(record, min_sqnr_db):
        return f"fell short: {record.stats['shortfall']}"
    return (f"worst output SQNR {record.output_sqnr_db:.1f} dB < {min_sqnr_db:g} dB against its input (output "
            f"cosine about {1 - 0.5 * 10 ** (-record.output_sqnr_db / 10):.4f})")


def lossy_warnings(records: list[PassRecord], min_sqnr_db: float = WARN_BELOW_SQNR_DB) -> list[str]:
    """One line per lossy pass that cost more than `min_sqnr_db` allows or fell short, naming the pass."""
    return [(f"pass '{r.spec}' costs more than allowed: {loss_message(r, min_sqnr_db)}"
             + (f"; {r.remedy}" if r.remedy else "")) if _below_floor(r, min_sqnr_db)
            else f"pass '{r.spec}' {loss_message(r, min_sqnr_db)}"
            for r in too_lossy(records, min_sqnr_db)]


def refuse_lossy(records: list[PassRecord], min_sqnr_db: float) -> None:
    """--strict: a lossy pass below the SQNR floor is an error, raised before anything is built or written."""
    found = too_lossy(records, min_sqnr_db)
    if found:
        raise PassFailedError(found[0].spec, f"{loss_message(found[0], min_sqnr_db)} (--strict)")
