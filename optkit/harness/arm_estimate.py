"""Estimated device milliseconds from emulated instruction counts. Always an *estimate*.

The cost model is one number per core class: cycles per executed instruction (CPI), threads taken as
scaling linearly (their real inefficiency is folded into the fitted CPI, so a device is best estimated at
the thread count of its anchors). It is fitted on pairs of the same code: ncnn's aarch64 build counted here
(the anchor networks of anchor_nets.py written as ncnn params, ncnn_anchor.py) against the times ncnn
publishes for those networks on real devices (latency_anchors.toml):

    ms = instructions x CPI / (clock GHz x 1e6) / threads

The counts of the anchors are measured by `python bench/arm_calibration.py` into anchor_counts.json (a
test re-counts one of them). The error of the model on each anchor is reported beside every estimate.
Known limits: counts ignore cache misses and instruction latency beyond what the fitted CPI averages;
ncnn's published tables are older than the ncnn wheel counted; the Snapdragon 845's A75 is estimated with
the CPI fitted on an A73-class core (Snapdragon 835)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from optkit.core.errors import OptionError
from optkit.harness.estimate import anchor_entries

COUNTS_FILE = "anchor_counts.json"
LABEL = "estimated from emulated instruction counts"

# Which anchor device's fitted CPI stands for each target's cores.
TARGET_CORE_CLASS = {"rk3399": "RK3399, 2x Cortex-A72 @ 1.8 GHz",
                     "snapdragon625": "RK3399, 1x Cortex-A53 @ 1.4 GHz (Snapdragon 625 core proxy)",
                     "snapdragon845": "Snapdragon 835, 4x Kryo 280 big @ 2.45 GHz"}


@dataclass(frozen=True)
class CountAnchor:
    net: str
    device: str
    qemu_cpu: str
    clock_ghz: float
    threads: int
    published_ms: float
    source: str


@functools.lru_cache(maxsize=1)
def count_anchors() -> tuple[CountAnchor, ...]:
    return tuple(CountAnchor(a["net"], a["device"], a["qemu_cpu"], float(a["clock_ghz"]), int(a["threads"]),
                             float(a["published_ms"]), a["source"]) for a in anchor_entries() if "qemu_cpu" in a)


def anchor_key(anchor: CountAnchor) -> str:
    return f"{anchor.net}@{anchor.qemu_cpu}"


@functools.lru_cache(maxsize=1)
def measured_counts() -> dict[str, int]:
    """Instructions per inference of ncnn on each anchor network and core model (bench/arm_calibration.py)."""
    path = resources.files("optkit.harness").joinpath(COUNTS_FILE)
    if not path.is_file():
        return {}
    return {k: int(v) for k, v in json.loads(path.read_text())["instructions"].items()}


def cpi_of(anchor: CountAnchor, instructions: int) -> float:
    """Cycles per instruction that make `instructions` take the published time on the anchor's device."""
    return anchor.published_ms * 1e6 * anchor.clock_ghz * anchor.threads / instructions


@functools.lru_cache(maxsize=1)
def fitted_cpi() -> dict[str, float]:
    """Device -> CPI: the geometric mean over the device's anchors (errors are relative)."""
    import math

    counts = measured_counts()
    per_device: dict[str, list[float]] = {}
    for a in count_anchors():
        if anchor_key(a) in counts:
            per_device.setdefault(a.device, []).append(math.log(cpi_of(a, counts[anchor_key(a)])))
    return {device: math.exp(sum(v) / len(v)) for device, v in per_device.items()}


def calibration_errors() -> list[dict]:
    """Every anchor: published ms, what the fitted model says, the error."""
    counts, cpi = measured_counts(), fitted_cpi()
    rows = []
    for a in count_anchors():
        if anchor_key(a) not in counts:
            continue
        ms = counts[anchor_key(a)] * cpi[a.device] / (a.clock_ghz * 1e6) / a.threads
        rows.append({"net": a.net, "device": a.device, "threads": a.threads, "instructions": counts[anchor_key(a)],
                     "cpi": round(cpi_of(a, counts[anchor_key(a)]), 3), "published_ms": a.published_ms,
                     "estimated_ms": round(ms, 2), "error_pct": round(100 * (ms / a.published_ms - 1), 1),
                     "source": a.source})
    return rows


@dataclass(frozen=True)
class CountEstimate:
    ms: float
    cpi: float
    device_class: str
    anchors: int
    error_pct: float | None   # the worst calibration error on the device class's anchors (None: one anchor)

    def source(self, cpu: str) -> str:
        error = (f"calibration error up to {self.error_pct:.0f}% over {self.anchors} anchors"
                 if self.error_pct is not None else "one anchor, so its error is not measurable")
        return (f"{LABEL} ({cpu} model, 1 thread, scaled to the target's threads; CPI {self.cpi:.2f} fitted on "
                f"ncnn's published {self.device_class} timings; {error})")


def estimate_from_counts(instructions: int, target) -> CountEstimate:
    """Estimated ms of one inference on the target at its thread count."""
    device = TARGET_CORE_CLASS.get(target.name)
    cpi = fitted_cpi().get(device) if device else None
    if cpi is None:
        raise OptionError(f"target '{target.name}': no count-based cost model (calibrated: "
                          f"{', '.join(TARGET_CORE_CLASS)}; anchor counts from bench/arm_calibration.py)")
    errors = [abs(r["error_pct"]) for r in calibration_errors() if r["device"] == device]
    ms = instructions * cpi / (target.clock_ghz * 1e6) / max(target.threads, 1)
    return CountEstimate(round(ms, 3), cpi, device, len(errors), max(errors) if len(errors) > 1 else None)
