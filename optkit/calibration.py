"""Calibration data for lossy passes: from a reference model's calibration set, from an .npz file, or,
for an unknown model, generated inputs (which only make sense for smoke tests, and are labelled so)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import OptionError

if TYPE_CHECKING:
    from .pass_base import CalibrationProvider

# One sample count for every command that quantizes (compile, tune, check, quantize, bench): the int8
# functions' scale constants come from it, so builds that differ in it share no tuning records.
CALIBRATION_SAMPLES = 32


def from_reference_model(name: str, count: int = CALIBRATION_SAMPLES) -> CalibrationProvider:
    from .reference_models.catalog import get_task

    task = get_task(name)
    return lambda: task.calibration(count)


def from_npz(path: str | Path) -> CalibrationProvider:
    """An .npz holding one array per input name, samples stacked on a new leading axis."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"--calibration-data {path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise OptionError(f"--calibration-data {path}: not a readable .npz file ({exc})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise OptionError(f"--calibration-data {path}: a single array; give an .npz with one array per input "
                          f"name (samples on axis 0), e.g. np.savez(path, x=samples)")
    with data:
        try:
            arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise OptionError(f"--calibration-data {path}: unreadable array ({exc})") from exc
    if not arrays:
        raise OptionError(f"--calibration-data {path}: holds no arrays")
    scalar = [k for k, v in arrays.items() if v.ndim == 0]
    if scalar:
        raise OptionError(f"--calibration-data {path}: array '{scalar[0]}' is a scalar; samples go on axis 0")
    counts = {len(v) for v in arrays.values()}
    if len(counts) != 1:
        raise OptionError(f"--calibration-data {path}: inputs have different sample counts {sorted(counts)}")
    n = counts.pop()
    return lambda: [{k: v[i] for k, v in arrays.items()} for i in range(n)]


def provider(reference: str | None, npz: str | Path | None, count: int = CALIBRATION_SAMPLES) -> CalibrationProvider | None:
    if reference and npz:
        raise OptionError("give --calibration or --calibration-data, not both")
    if reference:
        return from_reference_model(reference, count)
    if npz:
        return from_npz(npz)
    return None


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (higher is better; inf when identical)."""
    ref = np.asarray(reference, np.float64)
    noise = float(np.sum((ref - np.asarray(approx, np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return float("inf")
    return 10 * np.log10(max(signal, 1e-30) / noise)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den else 1.0
