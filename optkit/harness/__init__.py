"""The harness: what checks models against budgets. `gate` runs `optkit check` (every model x target:
optimize, compile, evaluate, time, compare with budgets and a baseline), reading `budgets`; latency is
measured on the host side by side with onnxruntime (`measure`), on a device over RPC (`rpc_measure`), or
estimated from a roofline calibrated on published timings (`estimate`, `anchor_nets`,
`latency_anchors.toml`) or from emulated instruction counts (`arm_estimate`, fitted on ncnn's code counted
through `ncnn_anchor`; `arm_profile` is `optkit profile`). Reports: `report_html`, `report_junit`,
`quant_report`. Accuracy-driven tools: `accuracy_aware` (int8 within a metric budget) and `prune_scan`
(pruning sensitivity).

May import: `optkit.reference_models`, `optkit.backend`, `optkit.passes`, `optkit.pass_infra`,
`optkit.graph`, `optkit.core`. Never the CLI or `optkit.api`.
"""
