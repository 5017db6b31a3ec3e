"""optkit: a compiler-style optimization toolkit for mobile vision models.

The house, top to bottom (each layer imports only the ones below it; docs/architecture.md):
    cli               `optkit ...`: parses arguments, calls the API, prints
    api               the Python API: one function per command
    harness           the gate: budgets, measurement, estimates, reports
    reference_models  the five reference models, their data, training and task metrics
    backend           TVM: import, Relax rewrites, schedules, tuning, build, validation, runtime
    passes            the built-in graph passes (plugins arrive through the same entry points)
    pass_infra        the pass contract, registry, specs, instruments and manager
    graph             ONNX graph helpers, shapes, statistics, reference runs in onnxruntime
    core              errors, safe outputs, resource limits
"""

from optkit.core.version import __version__

__all__ = ["__version__"]
