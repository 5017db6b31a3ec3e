"""The error hierarchy: every failure a user can cause maps to one of these, with a message
that names the file, node, op or option at fault. The CLI prints them without a traceback and exits with
the class's code: 2 when the command line asks for something wrong (an option, a name, an output path), 3
when optkit could not do what was asked (a model, a pass, a build, an artifact). 1 is kept for a check that
ran and failed (the gate), so a CI script can tell the three apart."""

USAGE_EXIT = 2
TOOL_EXIT = 3


class OptkitError(Exception):
    """Base of all errors optkit reports to a user."""

    exit_code = TOOL_EXIT


class ModelLoadError(OptkitError):
    """A model file is missing, unreadable, not ONNX, truncated or invalid."""


class OptionError(OptkitError):
    """A command-line option, pass option, shape spec or pass spec is malformed or unknown."""

    exit_code = USAGE_EXIT


class UnknownNameError(OptionError):
    """A pass, pipeline, target or model name that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        plural = f"{kind}es" if kind.endswith("s") else f"{kind}s"
        super().__init__(f"unknown {kind} '{name}'; valid {plural}: {', '.join(self.valid) or '(none)'}")


class PassFailedError(OptkitError):
    """A pass raised, or produced a model the manager's verification rejected."""

    def __init__(self, pass_name: str, message: str):
        self.pass_name = pass_name
        super().__init__(f"pass '{pass_name}': {message}")


class CompileError(OptkitError):
    """TVM could not import or build the model (unsupported op, missing cross compiler, ...)."""


class ArtifactError(OptkitError):
    """An artifact directory is missing, incomplete or built for another machine."""


class OutputError(OptkitError):
    """An output path optkit refuses to write: it is an input, a special file, or holds files optkit did not make."""

    exit_code = USAGE_EXIT


class ResourceError(OptkitError):
    """A model would take more memory or time than optkit allows itself (verification runs, shapes)."""


def library_message(exc: BaseException) -> str:
    """`Type: message` of a library's exception on one line: TVM puts its C++ backtrace before the message,
    so the last non-empty line is the one that says what went wrong."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else '(no message)'}"
