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

The Python API mirrors the CLI (`optkit.api`; importing optkit stays light: TVM loads on first use):

    import optkit
    result = optkit.compile("pose.onnx", target="rk3399", output="build/pose", passes="mobile,quantize-int8",
                            input_shapes={"image": (1, 3, 320, 320)}, calibration="calib_images/")
    outputs = optkit.load_artifact("build/pose").run(image)            # host builds (emulate=True for ARM)
    report = optkit.check(["pose"], ["host"], limit=8)                  # report.passed
"""

from optkit.core.version import __version__

_API = ("compile", "optimize", "check", "tune", "quantize", "quant_report", "prune_scan", "estimate", "profile",
        "run", "load_artifact", "Artifact", "calibration", "list_passes", "show_pass", "list_targets", "list_models",
        "evaluate")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from optkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'optkit' has no attribute {name!r}")
