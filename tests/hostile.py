"""A seeded corpus of hostile model files: what a user, a broken exporter or a bad disk hands optkit.

Every case is (name, files): the model's bytes under `model.onnx` plus any files beside it (external data).
`corpus()` makes the same cases every time. tests/test_hostile.py runs a fast subset; the whole campaign
(every case x optimize / compile host / compile rk3399, each in its own process) is bench/hostile_campaign.py.
"""

from __future__ import annotations

import numpy as np
import onnx
from graphs import fin, init, small_convnet
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, inputs, outputs, inits=(), opset=OPSET, check=False) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    return model


def _bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def _relu(shape=(1, 3, 8, 8), elem=TensorProto.FLOAT) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem, list(shape))
    y = helper.make_tensor_value_info("y", elem, list(shape))
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y])


def truncations(count: int, seed: int) -> list[tuple[str, dict]]:
    data = _bytes(small_convnet())
    offsets = np.random.default_rng(seed).choice(np.arange(1, len(data)), count, replace=False)
    return [(f"truncated-at-{o}", {"model.onnx": data[:o]}) for o in sorted(offsets.tolist())]


def bit_flips(count: int, seed: int) -> list[tuple[str, dict]]:
    data = _bytes(small_convnet())
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(count):
        flipped = bytearray(data)
        for _ in range(1 + k % 4):
            pos = int(rng.integers(len(flipped)))
            flipped[pos] ^= 1 << int(rng.integers(8))
        cases.append((f"bit-flips-{k}", {"model.onnx": bytes(flipped)}))
    return cases


def external_data() -> list[tuple[str, dict]]:
    weights = np.ones((4, 3, 1, 1), np.float32)

    def with_reference(location: str, offset: int = 0, length: int | None = None):
        w = numpy_helper.from_array(weights, "w")
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        entries = {"location": location, "offset": str(offset), "length": str(weights.nbytes if length is None else length)}
        for key, value in entries.items():
            w.external_data.add(key=key, value=value)
        model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                       [fin("x", [1, 3, 4, 4])], [fin("y", [1, 4, 4, 4])], [w])
        return _bytes(model)

    good = weights.tobytes()
    return [
        ("external-missing-file", {"model.onnx": with_reference("nope.bin")}),
        ("external-outside-folder", {"model.onnx": with_reference("../../../etc/passwd")}),
        ("external-absolute-path", {"model.onnx": with_reference("/etc/hostname")}),
        ("external-past-end", {"model.onnx": with_reference("w.bin", offset=8), "w.bin": good}),
        ("external-short-file", {"model.onnx": with_reference("w.bin"), "w.bin": good[:10]}),
        ("external-bad-offset", {"model.onnx": with_reference("w.bin", offset=-5), "w.bin": good}),
        ("external-directory", {"model.onnx": with_reference("."), "w.bin": good}),
    ]


def bad_shapes_and_types() -> list[tuple[str, dict]]:
    cases = []
    for dims in ([1, 3, 1 << 40, 8], [1, 3, 100000, 100000], [0, 3, 8, 8], [1, 3, 0, 0], [-1, 3, 8, 8]):
        cases.append((f"dims-{'x'.join(map(str, dims))}", {"model.onnx": _bytes(_relu(dims))}))
    for elem in (0, 99, 1000, TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.BFLOAT16):
        cases.append((f"elem-type-{elem}", {"model.onnx": _bytes(_relu(elem=elem))}))
    no_shape = _relu()
    no_shape.graph.input[0].type.tensor_type.ClearField("shape")
    cases.append(("input-without-shape", {"model.onnx": _bytes(no_shape)}))
    seq = _relu()
    seq.graph.input[0].type.CopyFrom(helper.make_sequence_type_proto(helper.make_tensor_type_proto(1, [2])))
    cases.append(("sequence-input", {"model.onnx": _bytes(seq)}))
    return cases


def bad_graphs() -> list[tuple[str, dict]]:
    cases = []
    cycle = _model([helper.make_node("Add", ["x", "b"], ["a"], name="a"), helper.make_node("Relu", ["a"], ["b"], name="b")],
                   [fin("x", [1, 4])], [fin("b", [1, 4])])
    cases.append(("cycle", {"model.onnx": _bytes(cycle)}))
    cases.append(("empty-graph", {"model.onnx": _bytes(_model([], [], []))}))
    cases.append(("no-outputs", {"model.onnx": _bytes(_model([helper.make_node("Relu", ["x"], ["y"])], [fin("x", [1, 4])], []))}))
    dup = _model([helper.make_node("Relu", ["x"], ["y"], name="r"), helper.make_node("Neg", ["x"], ["y"], name="n")],
                 [fin("x", [1, 4])], [fin("y", [1, 4])])
    cases.append(("duplicate-output-name", {"model.onnx": _bytes(dup)}))
    undefined = _model([helper.make_node("Add", ["x", "ghost"], ["y"])], [fin("x", [1, 4])], [fin("y", [1, 4])])
    cases.append(("undefined-input", {"model.onnx": _bytes(undefined)}))
    unknown_op = _model([helper.make_node("NoSuchOp", ["x"], ["y"])], [fin("x", [1, 4])], [fin("y", [1, 4])])
    cases.append(("unknown-op", {"model.onnx": _bytes(unknown_op)}))
    custom = _model([helper.make_node("Gelu", ["x"], ["y"], domain="com.example")], [fin("x", [1, 4])], [fin("y", [1, 4])])
    cases.append(("custom-domain-op", {"model.onnx": _bytes(custom)}))
    future = _relu()
    future.opset_import[0].version = 99
    cases.append(("opset-99", {"model.onnx": _bytes(future)}))
    old_ir = _relu()
    old_ir.ir_version = 1
    cases.append(("ir-version-1", {"model.onnx": _bytes(old_ir)}))
    bad_attr = _model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[5, 5], strides=[0, 0])],
                      [fin("x", [1, 3, 4, 4])], [fin("y", [1, 2, 4, 4])], [init("w", np.ones((2, 3, 5, 5), np.float32))])
    cases.append(("conv-stride-0", {"model.onnx": _bytes(bad_attr)}))
    wrong_w = _model([helper.make_node("Conv", ["x", "w"], ["y"])], [fin("x", [1, 3, 4, 4])], [fin("y", [1, 2, 4, 4])],
                     [init("w", np.ones((2, 5, 1, 1), np.float32))])
    cases.append(("conv-channel-mismatch", {"model.onnx": _bytes(wrong_w)}))
    return cases


def control_flow() -> list[tuple[str, dict]]:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Relu", ["v_in"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), fin("v_in", [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), fin("v_out", [1, 4])])
    cases = []
    for trips in (3, 1 << 20, 1 << 62):
        loop = _model([helper.make_node("Loop", ["M", "c", "x"], ["y"], body=body, name="loop")], [fin("x", [1, 4])],
                      [fin("y", [1, 4])], [init("M", np.array(trips, np.int64)), init("c", np.array(True))])
        cases.append((f"loop-{trips}", {"model.onnx": _bytes(loop)}))
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [fin("t", [1, 4])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [fin("e", [1, 4])])
    branch = _model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], [fin("x", [1, 4])],
                    [fin("y", [1, 4])], [init("c", np.array(True))])
    cases.append(("if-constant-condition", {"model.onnx": _bytes(branch)}))
    return cases


def deep_and_wide() -> list[tuple[str, dict]]:
    cases = []
    for depth in (500, 3000):
        nodes = [helper.make_node("Relu", [f"t{k}" if k else "x"], [f"t{k + 1}" if k < depth - 1 else "y"], name=f"r{k}")
                 for k in range(depth)]
        cases.append((f"chain-{depth}", {"model.onnx": _bytes(_model(nodes, [fin("x", [1, 4])], [fin("y", [1, 4])]))}))
    for width, op in ((3000, "Sum"), (1000, "Max"), (2000, "Concat")):
        kw = {"axis": 1} if op == "Concat" else {}
        nodes = [helper.make_node("Relu", ["x"], [f"b{k}"], name=f"b{k}") for k in range(width)]
        nodes.append(helper.make_node(op, [f"b{k}" for k in range(width)], ["y"], name="wide", **kw))
        out = [1, 4 * width] if op == "Concat" else [1, 4]
        cases.append((f"wide-{op.lower()}-{width}", {"model.onnx": _bytes(_model(nodes, [fin("x", [1, 4])], [fin("y", out)]))}))
    return cases


def memory_bombs() -> list[tuple[str, dict]]:
    big = _model([helper.make_node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor("v", 1, [1], [1.0])),
                  helper.make_node("Add", ["x", "c"], ["y"])],
                 [fin("x", [1, 3, 10000, 10000])], [fin("y", [1, 3, 10000, 10000])],
                 [init("s", np.array([1, 3, 10000, 10000], np.int64))])
    expand = _model([helper.make_node("Expand", ["x", "s"], ["y"])], [fin("x", [1, 1])], [fin("y", [60000, 60000])],
                    [init("s", np.array([60000, 60000], np.int64))])
    return [("constantofshape-1x3x10000x10000", {"model.onnx": _bytes(big)}),
            ("expand-60000x60000", {"model.onnx": _bytes(expand)})]


def corpus(seed: int = 0) -> list[tuple[str, dict]]:
    """Every hostile case, in a fixed order (over 300)."""
    return (truncations(180, seed) + bit_flips(90, seed + 1) + external_data() + bad_shapes_and_types()
            + bad_graphs() + control_flow() + deep_and_wide() + memory_bombs())


def fast_subset(seed: int = 0) -> list[tuple[str, dict]]:
    """A few of each kind, for the default test run."""
    # bit-flips-79 makes a Resize onnxruntime refuses at load: its error log once came as a second line
    return (truncations(6, seed) + bit_flips(6, seed + 1) + bit_flips(90, seed + 1)[79:80] + external_data()
            + bad_shapes_and_types()
            + bad_graphs() + control_flow() + deep_and_wide()[1:] + memory_bombs())
