"""Loading and saving ONNX models with errors that say what is wrong with which file."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from optkit.core.errors import ModelLoadError
from optkit.core.resources import check_memory
from optkit.core.safe_output import atomic_file


def load_model(path: str | os.PathLike, check: bool = True) -> onnx.ModelProto:
    """Read and validate an ONNX file. The file is only read, never modified."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a file")
    data = path.read_bytes()
    if not data:
        raise ModelLoadError(f"{path}: file is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a valid ONNX protobuf (truncated or not ONNX): {exc}") from exc
    if not model.graph.node and not model.graph.output:
        raise ModelLoadError(f"{path}: parsed as protobuf but holds no ONNX graph (not an ONNX model?)")
    if model.graph.initializer and any(t.data_location == onnx.TensorProto.EXTERNAL
                                       for t in model.graph.initializer):
        load_external_data(model, path)
    if check:
        check_model(model, str(path))
    check_memory(model, str(path))
    return model


def load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Read initializers stored beside the model; each reference must name a file inside the model's folder
    and a range inside that file."""
    folder = path.parent.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        file = (folder / location).resolve()
        where = f"{path}: initializer '{tensor.name}' stores its data in '{location}'"
        if not location or folder not in file.parents:
            raise ModelLoadError(f"{where}, which is not a file inside {folder}")
        if not file.is_file():
            raise ModelLoadError(f"{where}, which does not exist")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", file.stat().st_size))
        except ValueError as exc:
            raise ModelLoadError(f"{where} with a bad offset/length: {exc}") from exc
        if offset < 0 or length < 0 or offset + length > file.stat().st_size:
            raise ModelLoadError(f"{where} at bytes {offset}..{offset + length}, past its end "
                                 f"({file.stat().st_size} bytes)")
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:
        raise ModelLoadError(f"{path}: its external data cannot be read: {exc}") from exc


def check_model(model: onnx.ModelProto, where: str) -> None:
    """Run the ONNX checker (with strict shape inference) and name `where` on failure."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        raise ModelLoadError(f"{where}: fails the ONNX checker: {' '.join(first[:3])}") from exc


def save_model(model: onnx.ModelProto, path: str | os.PathLike, inputs=()) -> None:
    """Serialize atomically and deterministically (same model, same bytes); never over one of `inputs`."""
    with atomic_file(path, inputs) as tmp:
        tmp.write_bytes(model.SerializeToString(deterministic=True))
