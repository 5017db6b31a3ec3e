"""The TVM backend: everything after the ONNX passes. `compiler` drives it: `importer` turns the
optimized ONNX into Relax, `rewrites/` rewrites Relax (integer convolutions, separable resizes,
clipped gathers), `schedules` and `dot_product` give TIR functions their CPU schedules, `tuning` and
`tuning_db` search and store MetaSchedule records, `build` lowers, builds and exports for a target
(`targets`), `validate` runs the build against onnxruntime before `artifact` writes it, and `runtime/`
loads and runs artifacts (natively, in a child process, under qemu, or over RPC).

May import: `optkit.passes`, `optkit.pass_infra`, `optkit.graph`, `optkit.core`. Never the harness or
the CLI. A new Relax rewrite goes in `rewrites/`, a new CPU schedule rule in `schedules`.
"""
