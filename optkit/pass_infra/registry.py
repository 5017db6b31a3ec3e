"""The pass registry. Built-in and third-party passes arrive the same way: through the
`optkit.passes` entry-point group, so a plugin package appears in `optkit passes list` without
touching optkit. `register` adds a pass class in-process (for tests and notebooks)."""

from __future__ import annotations

from importlib.metadata import entry_points

from optkit.core.errors import OptionError, UnknownNameError
from optkit.pass_infra.contract import Pass

ENTRY_POINT_GROUP = "optkit.passes"

_registered: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: register a pass under its `name`."""
    if not cls.name:
        raise OptionError(f"pass class {cls.__qualname__} has no name")
    _registered[cls.name] = cls
    return cls


def _entry_point_passes() -> dict[str, tuple[str, object]]:
    return {ep.name: (ep.value, ep) for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_passes() -> dict[str, str]:
    """Pass name → where it comes from ('module:Class'), without importing plugins."""
    found = {name: value for name, (value, _) in _entry_point_passes().items()}
    found.update({name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in _registered.items()})
    return dict(sorted(found.items()))


def get_pass_class(name: str) -> type[Pass]:
    if name in _registered:
        return _registered[name]
    eps = _entry_point_passes()
    if name not in eps:
        raise UnknownNameError("pass", name, list(available_passes()))
    value, ep = eps[name]
    try:
        cls = ep.load()  # type: ignore[attr-defined]
    except Exception as exc:  # a broken plugin must not look like a missing one
        raise OptionError(f"pass '{name}' ({value}) failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise OptionError(f"pass '{name}' ({value}) is not an optkit Pass subclass")
    if cls.name != name:
        raise OptionError(f"pass entry point '{name}' ({value}) declares name '{cls.name}'")
    return cls


def create_pass(name: str, **options) -> Pass:
    return get_pass_class(name)(**options)
