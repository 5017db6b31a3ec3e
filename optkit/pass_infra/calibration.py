"""Calibration data for lossy passes, read the way users hold it and fitted to the model's inputs.

A source is a callable returning samples (one dict of input arrays each), as the pass contract has always
said. Sources built here read lazily and may also offer `bind(specs)`, which gets the model's inputs: an
image folder needs them to resize and lay out its pictures. `calibration_set` is what passes call: it binds
the source, fits every sample to the model's inputs (a sample may omit a batch dim of 1; float64 becomes
float32), checks names and shapes with errors that name the input, and fingerprints what it used, so the
manifest says which data and how many samples an int8 build came from.

Sources: an .npz (arrays named by input, samples on axis 0), an .npy (one input), a folder of .npy or .npz
files (one sample each, sorted by name), a folder of PNG/JPEG/BMP images (one image input), or from Python
any iterable of dicts/arrays or an onnxruntime `CalibrationDataReader`-style object (`get_next()`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optkit.core.errors import OptionError
from optkit.graph.numerics import InputSpec, input_specs
from optkit.graph.shapes import format_shape

if TYPE_CHECKING:
    import onnx

    from optkit.pass_infra.contract import CalibrationProvider

# One sample count for every command that quantizes (compile, tune, check, quantize, bench): the int8
# functions' scale constants come from it, so builds that differ in it share no tuning records.
CALIBRATION_SAMPLES = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
LAYOUTS = ("auto", "nchw", "nhwc")


@dataclass(frozen=True)
class ImagePreprocess:
    """How pictures become the input tensor: resized (bilinear) to the input's height and width, RGB (or
    grayscale for one channel), then (pixel * scale - mean) / std per channel, in the layout given (auto:
    NCHW when axis 1 has 1 or 3 channels, else NHWC)."""

    layout: str = "auto"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise OptionError(f"--calibration-layout {self.layout!r}: expected one of {', '.join(LAYOUTS)}")
        if any(s == 0 for s in self.std):
            raise OptionError("--calibration-std: a channel's std is 0")


@dataclass(frozen=True)
class CalibrationSet:
    """The samples a pass calibrated on, fitted to the model's inputs, and their fingerprint."""

    samples: list[dict[str, np.ndarray]]
    sha256: str
    source: str


class _Source:
    """A calibration source read on first use. `read(specs)` returns raw samples; `limit` keeps the first
    ones (files sorted by name, so the choice is deterministic)."""

    def __init__(self, label: str, read: Callable[[list[InputSpec] | None], list], limit: int | None):
        self.label, self._read, self.limit = label, read, limit

    def bind(self, specs: list[InputSpec] | None) -> list:
        samples = self._read(specs)
        return samples[: self.limit] if self.limit else samples

    def __call__(self) -> list:
        return self.bind(None)


def _fail(label: str, message: str) -> OptionError:
    return OptionError(f"calibration data {label}: {message}")


def _load_npy(path: Path, label: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _fail(label, f"{path.name} is not a readable .npy file ({exc})") from exc


def _load_npz(path: Path, label: str) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise _fail(label, f"{path.name} is not a readable .npz file ({exc})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        return {"": data}
    with data:
        try:
            arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise _fail(label, f"{path.name}: unreadable array ({exc})") from exc
    if not arrays:
        raise _fail(label, f"{path.name} holds no arrays")
    return arrays


def _split_samples(arrays: dict[str, np.ndarray], label: str) -> list[dict[str, np.ndarray]]:
    """Arrays with samples on axis 0 -> one dict per sample."""
    scalar = [k or "the array" for k, v in arrays.items() if v.ndim == 0]
    if scalar:
        raise _fail(label, f"'{scalar[0]}' is a scalar; samples go on axis 0")
    counts = {len(v) for v in arrays.values()}
    if len(counts) != 1:
        raise _fail(label, f"inputs have different sample counts {sorted(counts)}")
    return [{k: v[i] for k, v in arrays.items()} for i in range(counts.pop())]


def _image_reader(files: list[Path], preprocess: ImagePreprocess, label: str):
    def read(specs: list[InputSpec] | None) -> list[dict[str, np.ndarray]]:
        if specs is None:
            raise _fail(label, "an image folder is read against a model's inputs (use calibration_set)")
        if len(specs) != 1 or len(specs[0].shape) != 4:
            raise _fail(label, f"images feed one 4-D input; the model has {len(specs)} input(s) "
                        f"{', '.join(f'{s.name} {format_shape(s.shape)}' for s in specs)}")
        return [{specs[0].name: _image_tensor(path, specs[0], preprocess, label)} for path in files]

    return read


def _image_tensor(path: Path, spec: InputSpec, preprocess: ImagePreprocess, label: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    layout = preprocess.layout
    if layout == "auto":
        layout = "nchw" if spec.shape[1] in (1, 3) else "nhwc"
    channels, height, width = ((spec.shape[1], spec.shape[2], spec.shape[3]) if layout == "nchw"
                               else (spec.shape[3], spec.shape[1], spec.shape[2]))
    if not all(isinstance(d, int) and d > 0 for d in (channels, height, width)) or channels not in (1, 3):
        raise _fail(label, f"input '{spec.name}' {format_shape(spec.shape)} is not an image of 1 or 3 channels in "
                    f"{layout.upper()} with a fixed size (give --input-shape, or --calibration-layout)")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L").resize((width, height), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32).reshape(height, width, channels)
    except (OSError, UnidentifiedImageError) as exc:
        raise _fail(label, f"{path.name} is not a readable image ({exc})") from exc
    for name, values in (("mean", preprocess.mean), ("std", preprocess.std)):
        if len(values) not in (1, channels):
            raise _fail(label, f"--calibration-{name} has {len(values)} values; input '{spec.name}' has {channels} channels")
    mean, std = np.float32(preprocess.mean), np.float32(preprocess.std)
    pixels = (pixels * np.float32(preprocess.scale) - mean) / std
    tensor = pixels.transpose(2, 0, 1) if layout == "nchw" else pixels
    return tensor[None].astype(spec.dtype)


def _folder_reader(folder: Path, label: str, preprocess: ImagePreprocess):
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    kinds = {".npy" if p.suffix.lower() == ".npy" else ".npz" if p.suffix.lower() == ".npz"
             else "image" if p.suffix.lower() in IMAGE_SUFFIXES else "other" for p in files}
    if not files:
        raise _fail(label, "the folder is empty")
    if len(kinds) != 1 or "other" in kinds:
        others = [p.name for p in files if p.suffix.lower() not in (".npy", ".npz", *IMAGE_SUFFIXES)]
        raise _fail(label, "a folder holds one kind of sample: .npy files, .npz files or images "
                    f"({', '.join(IMAGE_SUFFIXES)})" + (f"; found {others[0]}" if others else "; found a mix"))
    kind = kinds.pop()
    if kind == "image":
        return _image_reader(files, preprocess, label)
    if kind == ".npy":
        return lambda specs: [{"": _load_npy(p, label)} for p in files]
    return lambda specs: [_load_npz(p, label) for p in files]


def from_path(path: str | Path, samples: int | None = None,
              preprocess: ImagePreprocess | None = None) -> CalibrationProvider:
    """A calibration source from a file or folder (module docstring); `samples` keeps the first N."""
    path = Path(path)
    label = str(path)
    preprocess = preprocess or ImagePreprocess()
    if path.is_dir():
        read = _folder_reader(path, label, preprocess)
    elif not path.exists():
        raise OptionError(f"--calibration-data {path}: no such file or folder")
    elif path.suffix.lower() == ".npy":
        read = lambda specs: _split_samples({"": _load_npy(path, label)}, label)  # noqa: E731
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        read = _image_reader([path], preprocess, label)
    else:
        read = lambda specs: _split_samples(_load_npz(path, label), label)  # noqa: E731
    return _Source(label, read, samples)


def from_npz(path: str | Path, samples: int | None = None) -> CalibrationProvider:
    """An .npz holding one array per input name, samples on axis 0."""
    return from_path(path, samples)


def from_python(data: Any, samples: int | None = None, label: str = "(Python object)") -> CalibrationProvider:
    """An iterable of samples (dicts of arrays, or bare arrays for a one-input model), or an object with
    onnxruntime's `get_next()` (a CalibrationDataReader). Read once, when a pass first asks."""
    if callable(data) and not hasattr(data, "get_next"):
        return data                                     # already a provider
    if isinstance(data, (str, Path)):
        return from_path(data, samples)
    cache: list = []

    def read(specs):
        if not cache:
            if hasattr(data, "get_next"):
                while (sample := data.get_next()) is not None:
                    cache.append(sample)
            else:
                cache.extend(data)
        return [s if isinstance(s, dict) else {"": s} for s in cache]

    return _Source(label, read, samples)


def _fit(value: Any, spec: InputSpec, label: str, index: int) -> np.ndarray:
    """A sample's array in the input's exact shape and type: a missing leading batch dim of 1 is added,
    float64 becomes float32; anything else that differs is an error naming the input."""
    array = np.asarray(value)
    shape = spec.shape
    batch_of_one = bool(shape) and (shape[0] == 1 or not isinstance(shape[0], int) or shape[0] <= 0)
    if batch_of_one and array.ndim == len(shape) - 1:
        array = array[None]
    fits = array.ndim == len(shape) and all(not isinstance(d, int) or d <= 0 or d == n
                                            for d, n in zip(shape, array.shape))
    if not fits:
        raise _fail(label, f"input '{spec.name}' expects shape {format_shape(shape)} ({spec.dtype}); sample {index} "
                    f"has shape {format_shape(array.shape)} ({array.dtype}); samples go on axis 0")
    if array.dtype != spec.dtype:
        if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
            raise _fail(label, f"input '{spec.name}' is {spec.dtype}; sample {index} is {array.dtype}")
        array = array.astype(spec.dtype)
    return np.ascontiguousarray(array)


def _named(sample: dict, specs: list[InputSpec], label: str, index: int) -> dict:
    """Unnamed arrays (.npy, a single-array .npz) go to the only input; other names must be the inputs'."""
    names = [s.name for s in specs]
    if set(sample) == {""} or (len(sample) == 1 and len(specs) == 1 and next(iter(sample)) not in names):
        if len(specs) != 1:
            raise _fail(label, f"unnamed arrays fit a one-input model; this one has inputs {', '.join(names)} "
                        f"(give an .npz with one array per input name)")
        return {names[0]: next(iter(sample.values()))}
    missing = [n for n in names if n not in sample]
    unknown = [n for n in sample if n not in names]
    if missing or unknown:
        detail = "; ".join(filter(None, [f"missing input(s) {', '.join(missing)}" if missing else "",
                                         f"no input named {', '.join(unknown)}" if unknown else ""]))
        raise _fail(label, f"sample {index}: {detail} (the model's inputs: {', '.join(names)})")
    return sample


def calibration_set(provider: CalibrationProvider, model: onnx.ModelProto, limit: int | None = None) -> CalibrationSet:
    """The provider's samples fitted to `model`'s inputs (first `limit` of them), with their sha256."""
    specs = input_specs(model)
    label = getattr(provider, "label", "(calibration)")
    bind = getattr(provider, "bind", None)
    raw = list(bind(specs) if bind is not None else provider())
    if limit is not None:
        raw = raw[:limit]
    if not raw:
        raise _fail(label, "holds no samples")
    digest = hashlib.sha256()
    samples = []
    for index, sample in enumerate(raw):
        sample = _named(sample if isinstance(sample, dict) else {"": sample}, specs, label, index)
        fitted = {s.name: _fit(sample[s.name], s, label, index) for s in specs}
        for name, array in fitted.items():
            digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
            digest.update(array.tobytes())
        samples.append(fitted)
    return CalibrationSet(samples, digest.hexdigest(), label)


def calibration_feeds(provider: CalibrationProvider, model: onnx.ModelProto, limit: int | None = None) -> list[dict]:
    return calibration_set(provider, model, limit).samples


__all__ = ["CALIBRATION_SAMPLES", "CalibrationSet", "ImagePreprocess", "calibration_feeds", "calibration_set",
           "from_npz", "from_path", "from_python"]
