"""Relax-level rewrites applied after TVM's ONNX import and before lowering: `mutator` (the driver they
share), `int8` (QDQ convolutions and matmuls to integer arithmetic, requantization by reciprocal),
`resize` (bilinear resize as two separable passes), `take` (gather indices clamped), and for Arm builds
`constant_clamps` (Clip bounds as immediates), `padded_rows` and `hwio_kernels` (the NEON conv's data) and
`bias_init` (float convolutions' sums started from their bias).

May import: `optkit.backend.dot_product`, `optkit.core`. One module per rewrite; each returns the new
module and how many sites it rewrote, which the manifest records.
"""
