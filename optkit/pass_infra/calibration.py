"""Calibration data for lossy passes: a callable returning samples (one dict of input arrays each), read
from an .npz file here; reference models provide theirs (`optkit.reference_models.catalog`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from optkit.core.errors import OptionError

if TYPE_CHECKING:
    from optkit.pass_infra.contract import CalibrationProvider

# One sample count for every command that quantizes (compile, tune, check, quantize, bench): the int8
# functions' scale constants come from it, so builds that differ in it share no tuning records.
CALIBRATION_SAMPLES = 32


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
