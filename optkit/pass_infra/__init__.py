"""The pass framework: the contract a pass implements (`contract`), the registry that finds passes
through the `optkit.passes` entry-point group (`registry`), pass specs and named pipelines (`spec`), the
instruments that verify every pass (`instruments`), the manager that runs them (`manager`) and the
calibration data lossy passes receive (`calibration`).

May import: `optkit.graph`, `optkit.core`. The passes themselves live in `optkit.passes` (the top-level
`passes/` folder); a third-party pass imports what it needs from here and from `optkit.graph`
(docs/writing-passes.md).
"""

from optkit.pass_infra.contract import (
    CalibrationProvider,
    Pass,
    PassContext,
    PassOption,
    PassResult,
    choice,
    parse_bool,
)

__all__ = ["CalibrationProvider", "Pass", "PassContext", "PassOption", "PassResult", "choice", "parse_bool"]
