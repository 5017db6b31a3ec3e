"""Tiny hand-built ONNX graphs for tests, including the awkward cases passes must survive."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.compose
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def rand(rng, *shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def make(nodes, inputs, outputs, inits, name="g", opset=OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def side_by_side(models: list[onnx.ModelProto]) -> onnx.ModelProto:
    """One model holding independent graphs, every name prefixed `b{k}_`: one build (and one emulator run)
    checks several cases."""
    graphs = [onnx.compose.add_prefix(m, f"b{k}_").graph for k, m in enumerate(models)]
    merged = helper.make_graph([n for g in graphs for n in g.node], "side_by_side", [i for g in graphs for i in g.input],
                               [o for g in graphs for o in g.output], [t for g in graphs for t in g.initializer])
    model = helper.make_model(merged, opset_imports=list(models[0].opset_import))
    model.ir_version = models[0].ir_version
    onnx.checker.check_model(model)
    return model


def fin(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def bn_inits(rng, prefix: str, c: int):
    return [init(f"{prefix}_g", rng.uniform(0.5, 1.5, c).astype(np.float32)),
            init(f"{prefix}_b", rand(rng, c)),
            init(f"{prefix}_m", rand(rng, c)),
            init(f"{prefix}_v", rng.uniform(0.5, 2.0, c).astype(np.float32))]


def bn_node(prefix: str, x: str, y: str):
    return helper.make_node("BatchNormalization", [x, f"{prefix}_g", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"],
                            [y], name=prefix, epsilon=1e-3)


def conv_bn_net(seed: int = 0, dynamic_batch: bool = True) -> onnx.ModelProto:
    """Conv (no bias) → BN feeding two consumers; grouped conv with bias → BN; ConvTranspose → BN;
    Flatten → Gemm → BN. Dynamic batch by default."""
    rng = np.random.default_rng(seed)
    n = "N" if dynamic_batch else 1
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv_nobias", pads=[1, 1, 1, 1]),
        bn_node("bn1", "c1", "b1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Sigmoid", ["b1"], ["s1"], name="sig1"),  # BN output read twice
        helper.make_node("Mul", ["r1", "s1"], ["m1"], name="mul1"),
        helper.make_node("Conv", ["m1", "w2", "bias2"], ["c2"], name="conv_grouped", group=2, pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        bn_node("bn2", "c2", "b2"),
        helper.make_node("ConvTranspose", ["b2", "wt", "biast"], ["ct"], name="deconv", group=2, strides=[2, 2],
                         pads=[0, 0, 1, 1], output_padding=[1, 1]),
        bn_node("bn3", "ct", "y"),
        helper.make_node("GlobalAveragePool", ["b2"], ["gp"], name="gap"),
        helper.make_node("Flatten", ["gp"], ["fl"], name="flat"),
        helper.make_node("Gemm", ["fl", "wg", "bg"], ["gm"], name="gemm", transB=1, alpha=0.7, beta=1.3),
        bn_node("bn4", "gm", "z"),
    ]
    inits = [init("w1", rand(rng, 8, 3, 3, 3)), *bn_inits(rng, "bn1", 8),
             init("w2", rand(rng, 8, 4, 3, 3)), init("bias2", rand(rng, 8)), *bn_inits(rng, "bn2", 8),
             init("wt", rand(rng, 8, 3, 3, 3)), init("biast", rand(rng, 6)), *bn_inits(rng, "bn3", 6),
             init("wg", rand(rng, 5, 8)), init("bg", rand(rng, 5)), *bn_inits(rng, "bn4", 5)]
    return make(nodes, [fin("x", [n, 3, 16, 16])], [fin("y", [n, 6, None, None]), fin("z", [n, 5])], inits)


def resize_shape_chain_net(seed: int = 0) -> onnx.ModelProto:
    """Fully dynamic input; Resize sizes computed by a Shape → Slice → Mul → Concat chain, and a
    Reshape whose target comes from Shape; plus a dead branch."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["sh"], name="shape"),
        helper.make_node("Slice", ["sh", "st", "en"], ["hw"], name="slice_hw"),
        helper.make_node("Mul", ["hw", "two"], ["hw2"], name="double"),
        helper.make_node("Slice", ["sh", "zero", "st"], ["nc"], name="slice_nc"),
        helper.make_node("Concat", ["nc", "hw2"], ["sizes"], name="concat_sizes", axis=0),
        helper.make_node("Resize", ["c", "", "", "sizes"], ["up"], name="resize", mode="nearest"),
        helper.make_node("Shape", ["up"], ["sh_up"], name="shape_up"),
        helper.make_node("Slice", ["sh_up", "zero", "st"], ["nc_up"], name="slice_nc_up"),
        helper.make_node("Concat", ["nc_up", "minus1"], ["target"], name="concat_target", axis=0),
        helper.make_node("Reshape", ["up", "target"], ["y"], name="reshape"),
        helper.make_node("Neg", ["c"], ["dead"], name="dead_neg"),
    ]
    inits = [init("w", rand(rng, 4, 3, 3, 3)), init("st", np.array([2], np.int64)),
             init("en", np.array([4], np.int64)), init("two", np.array([2, 2], np.int64)),
             init("zero", np.array([0], np.int64)), init("minus1", np.array([-1], np.int64)),
             init("unused", rand(rng, 7))]
    return make(nodes, [fin("x", ["N", 3, "H", "W"])], [fin("y", ["N", 4, None])], inits)


def small_convnet(seed: int = 0, h: int = 24, w: int = 32) -> onnx.ModelProto:
    """A small static conv net (conv/bn/relu/depthwise/concat/resize/softmax) for compile tests."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        bn_node("bn1", "c1", "n1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "wd"], ["d1"], name="dw", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Conv", ["d1", "w2", "b2"], ["c2"], name="pw", dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Concat", ["r1", "c2"], ["cat"], name="cat", axis=1),
        helper.make_node("Conv", ["cat", "w3", "b3"], ["c3"], name="head"),
        helper.make_node("Resize", ["c3", "", "scales"], ["up"], name="up", mode="linear"),
        helper.make_node("Softmax", ["up"], ["y"], name="softmax", axis=1),
    ]
    inits = [init("w1", rand(rng, 8, 3, 3, 3)), init("b1", rand(rng, 8)), *bn_inits(rng, "bn1", 8),
             init("wd", rand(rng, 8, 1, 3, 3)), init("w2", rand(rng, 8, 8, 3, 3)), init("b2", rand(rng, 8)),
             init("w3", rand(rng, 4, 16, 1, 1)), init("b3", rand(rng, 4)),
             init("scales", np.array([1, 1, 2, 2], np.float32))]
    return make(nodes, [fin("x", [1, 3, h, w])], [fin("y", [1, 4, h, w])], inits)


def aspp_net(seed: int = 0, h: int = 15, w: int = 20, rates=(6, 12, 18, 24)) -> onnx.ModelProto:
    """DeepLab-style ASPP on an h x w map: 1x1 branch, atrous 3x3 branches, image pooling, concat, 1x1
    projection; plus a second 1x1 conv on the same input (a merge candidate)."""
    rng = np.random.default_rng(seed)
    c, m = 8, 4
    nodes, inits, branch_outs = [], [], []
    nodes.append(helper.make_node("Conv", ["x", "w_1x1", "b_1x1"], ["c_1x1"], name="aspp_1x1"))
    nodes.append(helper.make_node("Relu", ["c_1x1"], ["r_1x1"], name="relu_1x1"))
    inits += [init("w_1x1", rand(rng, m, c, 1, 1)), init("b_1x1", rand(rng, m))]
    branch_outs.append("r_1x1")
    for r in rates:
        nodes.append(helper.make_node("Conv", ["x", f"w_r{r}", f"b_r{r}"], [f"c_r{r}"], name=f"aspp_rate{r}",
                                      dilations=[r, r], pads=[r, r, r, r], kernel_shape=[3, 3]))
        nodes.append(helper.make_node("Relu", [f"c_r{r}"], [f"r_r{r}"], name=f"relu_r{r}"))
        inits += [init(f"w_r{r}", rand(rng, m, c, 3, 3)), init(f"b_r{r}", rand(rng, m))]
        branch_outs.append(f"r_r{r}")
    nodes += [helper.make_node("GlobalAveragePool", ["x"], ["gp"], name="image_pool"),
              helper.make_node("Conv", ["gp", "w_gp"], ["c_gp"], name="pool_conv"),
              helper.make_node("Expand", ["c_gp", "gp_shape"], ["e_gp"], name="pool_broadcast"),
              helper.make_node("Concat", branch_outs + ["e_gp"], ["cat"], name="aspp_concat", axis=1),
              helper.make_node("Conv", ["cat", "w_proj"], ["y"], name="projection"),
              helper.make_node("Conv", ["x", "w_side"], ["side"], name="side_1x1")]
    inits += [init("w_gp", rand(rng, m, c, 1, 1)), init("gp_shape", np.array([1, m, h, w], np.int64)),
              init("w_proj", rand(rng, 6, m * (len(rates) + 2), 1, 1)), init("w_side", rand(rng, 3, c, 1, 1))]
    return make(nodes, [fin("x", [1, c, h, w])], [fin("y", [1, 6, h, w]), fin("side", [1, 3, h, w])], inits)


def prune_net(seed: int = 0) -> onnx.ModelProto:
    """Residual + depthwise chain + concat, for channel pruning:
    conv_a → relu_a ─┬─ conv_b → relu_b → dw (no bias) → conv_c ─ Add ─ relu_r ─┐
                     └──────────────────────────────────────────┘              Concat → conv_e → y
    x → conv_d (with a per-channel Mul) ────────────────────────────────────────┘"""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["ra", "wb", "bb"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["b"], ["rb"], name="relu_b"),
        helper.make_node("Conv", ["rb", "wdw"], ["dw"], name="dw", pads=[1, 1, 1, 1], group=12),
        helper.make_node("Conv", ["dw", "wc", "bc"], ["c"], name="conv_c"),
        helper.make_node("Add", ["c", "ra"], ["res"], name="residual"),
        helper.make_node("Relu", ["res"], ["rr"], name="relu_r"),
        helper.make_node("Conv", ["x", "wd", "bd"], ["d"], name="conv_d", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["d", "gain"], ["dg"], name="channel_gain"),
        helper.make_node("Concat", ["rr", "dg"], ["cat"], name="concat", axis=1),
        helper.make_node("Conv", ["cat", "we", "be"], ["y"], name="conv_e", pads=[1, 1, 1, 1]),
    ]
    inits = [init("wa", rand(rng, 8, 3, 3, 3)), init("ba", rand(rng, 8)), init("wb", rand(rng, 12, 8, 3, 3)),
             init("bb", rand(rng, 12)), init("wdw", rand(rng, 12, 1, 3, 3)), init("wc", rand(rng, 8, 12, 1, 1)),
             init("bc", rand(rng, 8)), init("wd", rand(rng, 6, 3, 3, 3)), init("bd", rand(rng, 6)),
             init("gain", rng.uniform(0.5, 2, (1, 6, 1, 1)).astype(np.float32)),
             init("we", rand(rng, 4, 14, 3, 3)), init("be", rand(rng, 4))]
    return make(nodes, [fin("x", [1, 3, 12, 12])], [fin("y", [1, 4, 12, 12])], inits)


def converter_style_net(seed: int = 0) -> onnx.ModelProto:
    """Shaped like tf2onnx output: NHWC input and Transposes around the convs, explicit Pad nodes,
    Clip(0, 6) and HardSwish activations, PRelu, a Resize with scales, an NHWC output."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Pad", ["x_nchw", "pads"], ["xp"], name="pad", mode="constant"),
        helper.make_node("Conv", ["xp", "w1", "b1"], ["c1"], name="conv1", strides=[2, 2]),
        helper.make_node("Clip", ["c1", "zero", "six"], ["r1"], name="relu6"),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["d1"], name="dw", pads=[1, 1, 1, 1], group=16),
        helper.make_node("HardSwish", ["d1"], ["h1"], name="hswish"),
        helper.make_node("Conv", ["h1", "w2", "b2"], ["c2"], name="project"),
        helper.make_node("PRelu", ["c2", "slope"], ["p2"], name="prelu"),
        helper.make_node("Conv", ["p2", "w3", "b3"], ["c3"], name="expand"),
        helper.make_node("Resize", ["c3", "", "scales"], ["up"], name="upsample", mode="nearest"),
        helper.make_node("Conv", ["up", "w4", "b4"], ["c4"], name="head", pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c4"], ["y"], name="to_nhwc", perm=[0, 2, 3, 1]),
    ]
    inits = [init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), init("w1", rand(rng, 16, 3, 3, 3)),
             init("b1", rand(rng, 16)), init("zero", np.array(0, np.float32)), init("six", np.array(6, np.float32)),
             init("wd", rand(rng, 16, 1, 3, 3)), init("bd", rand(rng, 16)), init("w2", rand(rng, 12, 16, 1, 1)),
             init("b2", rand(rng, 12)), init("slope", rng.uniform(0.05, 0.3, (12, 1, 1)).astype(np.float32)),
             init("w3", rand(rng, 24, 12, 1, 1)), init("b3", rand(rng, 24)),
             init("scales", np.array([1, 1, 2, 2], np.float32)), init("w4", rand(rng, 5, 24, 3, 3)), init("b4", rand(rng, 5))]
    return make(nodes, [fin("x", [1, 32, 32, 3])], [fin("y", [1, 32, 32, 5])], inits)


def host_has_vnni() -> bool:
    """Whether optkit's host builds put int8 convolutions on VNNI (backend/dot_product.py)."""
    import tvm

    from optkit.backend.dot_product import has_dot_product
    from optkit.backend.targets import get_target

    return has_dot_product(tvm.target.Target(get_target("host").tvm_target_dict()))


def channel_spread_net(seed: int = 7, width: int = 36, relu: bool = False, stride: int = 1) -> onnx.ModelProto:
    """1x1 conv → 3x3 depthwise → 1x1 projection, where the first conv's 8 output channels span 0.02 to 4
    in scale and the depthwise weights span the inverse, so each channel matters as much downstream: what a
    grid per channel on the depthwise input is for. Without `relu` the depthwise input is signed, so the
    per-channel zero points differ; with it they are all 0."""
    rng = np.random.default_rng(seed)
    spread = np.geomspace(0.02, 4, 8).astype(np.float32)
    expand = [helper.make_node("Conv", ["x", "w1", "b1"], ["e1"], name="expand"),
              helper.make_node("Relu", ["e1"], ["c1"], name="relu1")] if relu else [
              helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="expand")]
    nodes = [*expand,
             helper.make_node("Conv", ["c1", "wd", "bd"], ["c2"], name="dw", group=8, pads=[1, 1, 1, 1],
                              strides=[stride, stride]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu"),
             helper.make_node("Conv", ["r2", "wp", "bp"], ["y"], name="project")]
    inits = [init("w1", rand(rng, 8, 4, 1, 1) * spread[:, None, None, None]),
             init("b1", (rand(rng, 8) + 0.3) * spread), init("wd", rand(rng, 8, 1, 3, 3) / spread[:, None, None, None]),
             init("bd", rand(rng, 8)), init("wp", rand(rng, 6, 8, 1, 1)), init("bp", rand(rng, 6))]
    out = [(size - 1) // stride + 1 for size in (13, width)]
    return make(nodes, [fin("x", [1, 4, 13, width])], [fin("y", [1, 6, *out])], inits)
