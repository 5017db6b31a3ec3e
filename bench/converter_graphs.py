"""Graphs shaped like what tf2onnx / TFLite converters emit for mobile nets: NHWC inputs and Transposes,
explicit Pad nodes before convolutions, depthwise stacks, HardSwish and ReLU6 (Clip), weights random but
fixed (seeded). Used by bench/compiled_speed.py beside the reference models."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Graph:
    def __init__(self, name: str, seed: int):
        self.name, self.rng = name, np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, value: np.ndarray) -> str:
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str = "relu6") -> str:
        if k > 1:  # converters write the padding as its own node
            p = k // 2
            x = self.node("Pad", [x, self.const(np.array([0, 0, p, p, 0, 0, p, p], np.int64))], mode="constant")
        w = (self.rng.normal(size=(cout, cin // groups, k, k)) * np.sqrt(2 / (cin // groups * k * k))).astype(np.float32)
        y = self.node("Conv", [x, self.const(w), self.const(np.zeros(cout, np.float32))], strides=[stride] * 2,
                      group=groups, kernel_shape=[k, k])
        if act == "relu6":
            return self.node("Clip", [y, self.const(np.array(0, np.float32)), self.const(np.array(6, np.float32))])
        if act == "hswish":
            return self.node("HardSwish", [y])
        return y

    def model(self, input_shape: list[int], outputs: list[str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name,
                                  [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)], [],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tf2onnx-like")
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        model.graph.output.extend(inferred[o] for o in outputs)
        return model


def landmark_nhwc() -> onnx.ModelProto:
    """A 112x112 face-landmark net: depthwise-separable stack with HardSwish, global pool, 136-way Gemm."""
    g = _Graph("landmark_nhwc", 1)
    x = g.node("Transpose", ["input"], perm=[0, 3, 1, 2])
    x, c = g.conv(x, 3, 16, 3, 2, act="hswish"), 16
    for cout, stride in [(32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2)]:
        x = g.conv(x, c, c, 3, stride, groups=c, act="hswish")
        x, c = g.conv(x, c, cout, 1, act="hswish"), cout
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    w = (g.rng.normal(size=(c, 136)) * 0.05).astype(np.float32)
    out = g.node("Gemm", [pooled, g.const(w), g.const(np.zeros(136, np.float32))])
    return g.model([1, 112, 112, 3], [out])


def detector_nhwc() -> onnx.ModelProto:
    """An SSD-lite-style 192x192 detector: inverted residuals with ReLU6, box/class heads transposed back to
    NHWC and reshaped, as converters leave them."""
    g = _Graph("detector_nhwc", 2)
    x = g.node("Transpose", ["input"], perm=[0, 3, 1, 2])
    x, c = g.conv(x, 3, 16, 3, 2), 16
    heads = []
    for i, (cout, stride) in enumerate([(24, 2), (24, 1), (32, 2), (32, 1), (64, 2), (64, 1), (96, 1), (160, 2)]):
        y = g.conv(x, c, c * 4, 1)
        y = g.conv(y, c * 4, c * 4, 3, stride, groups=c * 4)
        y = g.conv(y, c * 4, cout, 1, act="none")
        x = g.node("Add", [x, y]) if stride == 1 and cout == c else y
        c = cout
        if i in (5, 7):
            for per_anchor in (4, 3):
                h = g.conv(x, c, 3 * per_anchor, 1, act="none")
                h = g.node("Transpose", [h], perm=[0, 2, 3, 1])
                heads.append(g.node("Reshape", [h, g.const(np.array([1, -1, per_anchor], np.int64))]))
    return g.model([1, 192, 192, 3], heads)


CONVERTER_GRAPHS = {"landmark_nhwc": landmark_nhwc, "detector_nhwc": detector_nhwc}
