"""Pass specs as written on the command line, and named pipelines.

    "specialize-input{shape=x:1x3x240x320},simplify,fold-bn"
    "mobile"                       (a named pipeline)
    "cleanup,fold-bn"              (pipelines and passes mix)

Options go inside braces as key=value pairs separated by commas. Several input shapes in one
option are separated by ';' (`shape=x:1x3x8x8;mask:1x1x8x8`).
"""

from __future__ import annotations

from optkit.core.errors import OptionError
from optkit.pass_infra.contract import Pass
from optkit.pass_infra.registry import create_pass

# One map of named pipelines, in the spirit of tvm.relax.pipeline. Later entries may name earlier ones.
PIPELINES: dict[str, str] = {
    "cleanup": "simplify,eliminate-dead",
    "mobile": "fold-bn,simplify,eliminate-dead",
}


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise OptionError(f"pass spec '{text}': unbalanced '}}'")
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise OptionError(f"pass spec '{text}': unbalanced '{{'")
    parts.append("".join(current).strip())
    return parts


def parse_pass_spec(spec: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a spec into (pass name, raw options) pairs, expanding named pipelines."""
    items: list[tuple[str, dict[str, str]]] = []
    for part in _split_top_level(spec):
        if not part:
            raise OptionError(f"pass spec '{spec}': empty entry")
        name, _, rest = part.partition("{")
        name = name.strip()
        options: dict[str, str] = {}
        if rest:
            if not rest.endswith("}"):
                raise OptionError(f"pass spec entry '{part}': text after '}}'")
            for pair in rest[:-1].split(","):
                if not pair.strip():
                    continue
                key, eq, value = pair.partition("=")
                if not eq or not key.strip():
                    raise OptionError(f"pass '{name}': option '{pair}' is not key=value")
                options[key.strip()] = value.strip()
        if name in PIPELINES:
            if options:
                raise OptionError(f"pipeline '{name}' takes no options; give them to its passes")
            items.extend(parse_pass_spec(PIPELINES[name]))
        else:
            items.append((name, options))
    return items


def build_passes(spec: str) -> list[Pass]:
    """Instantiate every pass in a spec (unknown names and bad options fail here, before any work)."""
    return [create_pass(name, **options) for name, options in parse_pass_spec(spec)]
