"""The public benchmark networks the latency estimate is calibrated against, rebuilt as ONNX graphs here
(nothing is downloaded). Only the architecture matters to a roofline, so weights are zeros.

- mobilenet_v2: Sandler et al. 2018, width 1.0, 224x224 (the torchvision layout).
- mnasnet: MnasNet-B1 width 1.0, 224x224 (torchvision `mnasnet1_0`), the net ncnn's table calls mnasnet.
- mobilenet_ssd: MobileNet v1 + SSD extras, 300x300, 21 classes, 1x1 heads (the Caffe MobileNet-SSD
  that ncnn benchmarks).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    """Append Conv/BN-folded layers to a graph, tracking channels; names are sequential and stable."""

    def __init__(self, name: str, shape: tuple[int, int, int, int]):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.input = helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))
        self.outputs: list[str] = []
        self._n = 0

    def _fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = "Relu"):
        name = self._fresh("conv")
        w = numpy_helper.from_array(np.zeros((cout, cin // groups, k, k), np.float32), f"{name}.w")
        b = numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b")
        self.inits += [w, b]
        self.nodes.append(helper.make_node("Conv", [x, w.name, b.name], [name], name=name, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        if act is None:
            return name
        out = self._fresh(act.lower())
        if act == "Relu6":
            self.nodes.append(helper.make_node("Clip", [name, self._const(0.0), self._const(6.0)], [out], name=out))
        else:
            self.nodes.append(helper.make_node(act, [name], [out], name=out))
        return out

    def _const(self, value: float) -> str:
        name = self._fresh("const")
        self.inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    def add(self, a: str, b: str) -> str:
        out = self._fresh("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out], name=out))
        return out

    def classifier(self, x: str, cin: int, classes: int = 1000) -> None:
        pooled, flat, out = self._fresh("pool"), self._fresh("flatten"), "logits"
        w = numpy_helper.from_array(np.zeros((classes, cin), np.float32), "fc.w")
        b = numpy_helper.from_array(np.zeros(classes, np.float32), "fc.b")
        self.inits += [w, b]
        self.nodes += [helper.make_node("GlobalAveragePool", [x], [pooled], name=pooled),
                       helper.make_node("Flatten", [pooled], [flat], name=flat),
                       helper.make_node("Gemm", [flat, w.name, b.name], [out], name="fc", transB=1)]
        self.outputs.append(out)

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, [self.input], [], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="optkit")
        inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        model.graph.output.extend(inferred[o] for o in self.outputs)
        return model

    def inverted_residual(self, x: str, cin: int, cout: int, k: int, stride: int, expand: int, act="Relu6") -> str:
        hidden = cin * expand
        y = self.conv(x, cin, hidden, 1, act=act) if expand != 1 else x
        y = self.conv(y, hidden, hidden, k, stride, groups=hidden, act=act)
        y = self.conv(y, hidden, cout, 1, act=None)
        return self.add(x, y) if stride == 1 and cin == cout else y


def mobilenet_v2() -> onnx.ModelProto:
    b = _Builder("mobilenet_v2", (1, 3, 224, 224))
    x, c = b.conv("image", 3, 32, 3, 2, act="Relu6"), 32
    for t, cout, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                          (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            x, c = b.inverted_residual(x, c, cout, 3, s if i == 0 else 1, t), cout
    x = b.conv(x, c, 1280, 1, act="Relu6")
    b.classifier(x, 1280)
    return b.model()


def mnasnet() -> onnx.ModelProto:
    b = _Builder("mnasnet", (1, 3, 224, 224))
    x = b.conv("image", 3, 32, 3, 2)
    x = b.conv(x, 32, 32, 3, 1, groups=32)
    x, c = b.conv(x, 32, 16, 1, act=None), 16
    for t, k, cout, n, s in [(3, 3, 24, 3, 2), (3, 5, 40, 3, 2), (6, 5, 80, 3, 2), (6, 3, 96, 2, 1),
                             (6, 5, 192, 4, 2), (6, 3, 320, 1, 1)]:
        for i in range(n):
            x, c = b.inverted_residual(x, c, cout, k, s if i == 0 else 1, t, act="Relu"), cout
    x = b.conv(x, c, 1280, 1)
    b.classifier(x, 1280)
    return b.model()


def mobilenet_ssd(classes: int = 21) -> onnx.ModelProto:
    b = _Builder("mobilenet_ssd", (1, 3, 300, 300))
    x, c = b.conv("image", 3, 32, 3, 2), 32
    taps = {}
    for i, (cout, s) in enumerate([(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                                   (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)], start=1):
        x = b.conv(x, c, c, 3, s, groups=c)
        x, c = b.conv(x, c, cout, 1), cout
        taps[i] = (x, c)
    sources = [(taps[11], 3), (taps[13], 6)]
    for mid, cout in [(256, 512), (128, 256), (128, 256), (64, 128)]:
        x = b.conv(x, c, mid, 1)
        x, c = b.conv(x, mid, cout, 3, 2), cout
        sources.append(((x, c), 6))
    for (src, ch), anchors in sources:
        for per_anchor in (4, classes):
            head = b.conv(src, ch, anchors * per_anchor, 1, act=None)
            b.outputs.append(head)
    return b.model()


ANCHOR_NETS = {"mobilenet_v2": mobilenet_v2, "mnasnet": mnasnet, "mobilenet_ssd": mobilenet_ssd}
