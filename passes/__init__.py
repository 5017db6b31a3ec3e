"""optkit's built-in passes. Each top-level module holds one pass (a subpackage such as `int8/` holds the
numerics one pass needs); they are registered through the
`optkit.passes` entry-point group in pyproject.toml, exactly like a third-party pass.

May import: `optkit.pass_infra`, `optkit.graph`, `optkit.core` (docs/writing-passes.md); never the
backend, so a pass runs wherever onnxruntime does.
"""
