"""The numerics behind `quantize-int8`, one technique per module: per-layer statistics of the layers'
inputs (`layer_inputs`), weight rounding against them (`rounding`), activation ranges chosen by error
(`ranges`), and which activations and layers cost the outputs most (`sensitivity`, for mixed precision).
They work on ONNX graphs and onnxruntime only, like the pass."""
