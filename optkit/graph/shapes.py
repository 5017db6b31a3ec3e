"""Input shape specs: `x:1x3x240x320` or `x:1,3,240,320` (several joined by ';'; a bare `1x3x240x320` names
the only input of a one-input model), checked against a model's inputs; and the plan that makes every input
static before any pass runs: a dynamic batch dim becomes 1 (with a notice), any other dynamic dim is an error
that asks for the size, naming the input and its dims."""

from __future__ import annotations

import onnx

from optkit.core.errors import OptionError
from optkit.graph.numerics import input_specs


def parse_shape_spec(text: str) -> dict[str, tuple[int, ...]]:
    """{input name: dims}; a bare entry (no NAME:) is keyed "" (resolve_input_shapes names it)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for entry in filter(None, (e.strip() for e in text.replace(" ", "").split(";"))):
        name, sep, dims = entry.rpartition(":")
        if (sep and not name) or not dims:
            raise OptionError(f"shape spec '{entry}': expected NAME:D1xD2x... (for example x:1x3x240x320)")
        if name in shapes:
            raise OptionError(f"shape spec '{text}' gives input '{name or '(unnamed)'}' twice")
        try:
            shape = tuple(int(d) for d in dims.lower().replace(",", "x").split("x"))
        except ValueError as exc:
            raise OptionError(f"shape spec '{entry}': dimensions must be integers joined by 'x' or ','") from exc
        if any(d <= 0 for d in shape):
            raise OptionError(f"shape spec '{entry}': dimensions must be positive")
        shapes[name] = shape
    if not shapes:
        raise OptionError(f"shape spec '{text}' is empty")
    return shapes


def check_shapes_against_model(shapes: dict[str, tuple[int, ...]], model: onnx.ModelProto) -> None:
    """Every named input must exist, have the same rank, and agree with dims the model fixes."""
    specs = {s.name: s for s in input_specs(model)}
    for name, shape in shapes.items():
        if name not in specs:
            raise OptionError(f"shape spec names input '{name}', but the model's inputs are: "
                              f"{', '.join(specs) or '(none)'}")
        declared = specs[name].shape
        if declared and len(declared) != len(shape):
            raise OptionError(f"shape spec {name}:{'x'.join(map(str, shape))} has rank {len(shape)}, "
                              f"but input '{name}' has rank {len(declared)} {list(declared)}")
        for axis, (want, have) in enumerate(zip(shape, declared)):
            if isinstance(have, int) and have > 0 and have != want:
                raise OptionError(f"shape spec {name}:{'x'.join(map(str, shape))} sets axis {axis} to {want}, "
                                  f"but the model fixes it to {have} ({list(declared)})")


def format_shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def resolve_input_shapes(text: str, model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The spec parsed and checked against the model, a bare shape given to its only input."""
    shapes = parse_shape_spec(text) if text.strip() else {}
    if "" in shapes:
        names = [s.name for s in input_specs(model)]
        if len(names) != 1 or len(shapes) != 1:
            raise OptionError(f"shape spec '{text}': name the input (NAME:D1xD2x...); the model's inputs are "
                              f"{', '.join(names) or '(none)'}")
        shapes = {names[0]: shapes[""]}
    check_shapes_against_model(shapes, model)
    return shapes


def shape_spec_text(shapes: dict[str, tuple[int, ...]]) -> str:
    """The canonical spec (`x:1x3x240x320;y:...`), as specialize-input's option takes it."""
    return ";".join(f"{name}:{format_shape(shape)}" for name, shape in shapes.items())


def _dynamic(dim) -> bool:
    return not isinstance(dim, int) or dim <= 0


def static_input_plan(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
                      where: str) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """(shapes that make every input static, notices). Only a dynamic leading batch dim is fixed by optkit
    (to 1, with a notice); any other dim left dynamic by `shapes` is an error that asks for its size. A
    size is suggested only where the model says it (its metadata); never a made-up 1."""
    planned, notices, missing = dict(shapes), [], []
    for spec in input_specs(model):
        if spec.name in planned:
            continue
        if not spec.shape:
            missing.append(f"'{spec.name}' (rank unknown)")
            continue
        dynamic = [axis for axis, d in enumerate(spec.shape) if _dynamic(d)]
        if not dynamic:
            continue
        if dynamic == [0] and len(spec.shape) > 1:
            planned[spec.name] = (1, *spec.shape[1:])
            notices.append(f"input '{spec.name}' has a dynamic batch dim ({spec.shape[0] or '?'}); built for batch 1 "
                           f"({spec.name}:{format_shape(planned[spec.name])}; --input-shape sets another)")
            continue
        names = [str(spec.shape[axis] or f"axis {axis}") for axis in dynamic]
        template = format_shape(1 if axis == 0 else f"<{spec.shape[axis] or f'axis{axis}'}>" if axis in dynamic
                                else d for axis, d in enumerate(spec.shape))
        missing.append(f"input '{spec.name}' [{', '.join(str(d or '?') for d in spec.shape)}] has {', '.join(names)} "
                       f"dynamic: give --input-shape {spec.name}:{template} with the size you deploy")
    if missing:
        hint = _metadata_shape_hint(model)
        raise OptionError(f"{where}: TVM builds one fixed input size; " + "; ".join(missing)
                          + (f" (the model's metadata says {hint})" if hint else ""))
    return planned, notices


def _metadata_shape_hint(model: onnx.ModelProto) -> str:
    """A shape the model's own metadata records (converters and exporters sometimes store one)."""
    for prop in model.metadata_props:
        if "shape" in prop.key.lower() or "size" in prop.key.lower():
            return f"{prop.key}={prop.value}"
    return ""
