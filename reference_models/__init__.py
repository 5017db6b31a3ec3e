"""optkit's reference models: procedural data generators (numpy only), trained ONNX graphs, task
metrics and evaluation. Torch is needed only to train (the `train` extra)."""
