"""Seeded random vision graphs for differential testing against onnxruntime: odd sizes, every Resize mode and
coordinate transform (scales that do and do not divide the size), pools with windows up to the map's size,
residual adds, concats and activations. `random_graph(seed)` always makes the same model."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RESIZE_MODES = ("nearest", "linear", "cubic")
TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
SCALES = (0.5, 0.75, 1.5, 2.0, 3.0)


class _Builder:
    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits, self.k = rng, [], [], 0

    def name(self, base: str) -> str:
        self.k += 1
        return f"{base}{self.k}"

    def const(self, value: np.ndarray) -> str:
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name("t")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op.lower()), **attrs))
        return out


def _shape_after(model: onnx.ModelProto, name: str) -> tuple[int, ...]:
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name == name:
            return tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    raise KeyError(name)


def random_graph(seed: int, layers: int = 4) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    b = _Builder(rng)
    c, h, w = int(rng.integers(1, 9)), int(rng.integers(3, 24)), int(rng.integers(3, 24))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])
    current, shape = "x", (1, c, h, w)
    for _ in range(layers):
        kind = rng.choice(["conv", "act", "pool", "resize", "residual", "concat"])
        c = shape[1]
        if kind == "conv":
            k, stride = int(rng.choice([1, 3])), int(rng.choice([1, 2]))
            out_c = int(rng.integers(1, 9))
            wt = b.const((rng.standard_normal((out_c, c, k, k)) * 0.5).astype(np.float32))
            bias = b.const((rng.standard_normal(out_c) * 0.1).astype(np.float32))
            current = b.node("Conv", [current, wt, bias], kernel_shape=[k, k], strides=[stride, stride],
                             pads=[k // 2] * 4)
        elif kind == "act":
            op = str(rng.choice(["Relu", "Sigmoid", "Tanh", "LeakyRelu"]))
            current = b.node(op, [current])
        elif kind == "pool":
            op = str(rng.choice(["MaxPool", "AveragePool"]))
            k = int(rng.integers(2, max(3, min(shape[2], shape[3]) + 2)))
            stride = int(rng.choice([1, 2]))
            attrs = {"kernel_shape": [k, k], "strides": [stride, stride]}
            if op == "AveragePool":
                attrs["count_include_pad"] = int(rng.integers(0, 2))
            current = b.node(op, [current], **attrs)
        elif kind == "resize":
            mode = str(rng.choice(RESIZE_MODES))
            transform = str(rng.choice(TRANSFORMS if mode == "nearest" else TRANSFORMS[:4]))
            sh, sw = float(rng.choice(SCALES)), float(rng.choice(SCALES))
            if int(shape[2] * sh) < 1 or int(shape[3] * sw) < 1:
                sh = sw = 2.0
            attrs = {"mode": mode, "coordinate_transformation_mode": transform}
            if mode == "nearest":
                attrs["nearest_mode"] = str(rng.choice(NEAREST_MODES))
            scales = b.const(np.array([1, 1, sh, sw], np.float32))
            current = b.node("Resize", [current, "", scales], **attrs)
        elif kind == "residual":
            other = b.node("Relu", [current])
            current = b.node("Add", [current, other])
        else:
            other = b.node("Neg", [current])
            current = b.node("Concat", [current, other], axis=1)
        probe = helper.make_model(helper.make_graph(b.nodes, "fuzz", [x], [helper.make_tensor_value_info(current, 1, None)],
                                                    b.inits), opset_imports=[helper.make_opsetid("", 18)])
        shape = _shape_after(probe, current)
        if min(shape) < 1 or int(np.prod(shape)) > 1 << 18:
            break
    y = helper.make_tensor_value_info(current, TensorProto.FLOAT, list(shape))
    model = helper.make_model(helper.make_graph(b.nodes, f"fuzz{seed}", [x], [y], b.inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model
