"""Input shape specs: `x:1x3x240x320` (several joined by ';'), checked against a model's inputs."""

from __future__ import annotations

import onnx

from optkit.core.errors import OptionError
from optkit.graph.numerics import input_specs


def parse_shape_spec(text: str) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for entry in filter(None, (e.strip() for e in text.replace(" ", "").split(";"))):
        name, sep, dims = entry.rpartition(":")
        if not sep or not name or not dims:
            raise OptionError(f"shape spec '{entry}': expected NAME:D1xD2x... (for example x:1x3x240x320)")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError as exc:
            raise OptionError(f"shape spec '{entry}': dimensions must be integers joined by 'x'") from exc
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
