"""Graph utilities passes are written with: indexing and editing an ONNX graph (`index`), static shapes
and input-shape specs (`shapes`), size/parameter/FLOP statistics (`stats`), channel dependencies for
pruning (`channel_deps`), loading and saving models with clear errors (`model_io`), and reference
execution in onnxruntime with comparison (`numerics`).

May import: `optkit.core`. Add here a helper that two passes (or a pass and the harness) need and that
is about ONNX graphs, not about running passes.
"""

from optkit.graph.index import GraphIndex, attr, remove_unused_initializers, static_shapes, subgraph_inputs

__all__ = ["GraphIndex", "attr", "remove_unused_initializers", "static_shapes", "subgraph_inputs"]
