"""Every built-in pass on hand-built graphs, numbers checked against onnxruntime."""

import numpy as np
import onnx
import pytest
from graphs import conv_bn_net, fin, init, make, rand, resize_shape_chain_net
from onnx import helper

from optkit.graph.numerics import input_specs, make_inputs, run_ort
from optkit.pass_infra.contract import PassContext
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes


def run_spec(model, spec):
    return PassManager(build_passes(spec)).run(model, PassContext(seed=3))


def assert_same_outputs(before, after, shape_feeds_from=None, atol=1e-4):
    feeds = make_inputs(shape_feeds_from or after, seed=11)
    ref, got = run_ort(before, feeds), run_ort(after, feeds)
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=atol)


def ops(model):
    return [n.op_type for n in model.graph.node]


def test_fold_bn_folds_conv_without_bias_grouped_convtranspose_and_gemm():
    model = conv_bn_net()
    out, records = run_spec(model, "specialize-input{shape=x:2x3x16x16},fold-bn")
    assert records[1].stats == {"folded": 4, "refused": 0}
    assert "BatchNormalization" not in ops(out)
    # The bias-less conv gained a bias; the BN output that fed Relu and Sigmoid still feeds both.
    conv = next(n for n in out.graph.node if n.name == "conv_nobias")
    assert len(conv.input) == 3 and conv.output[0] == "b1"
    assert sum("b1" in n.input for n in out.graph.node) == 2
    assert_same_outputs(model, out)
    assert records[1].max_abs_diff is not None and records[1].max_abs_diff < 1e-4


def test_fold_bn_refuses_when_conv_output_has_another_reader():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn"),
             helper.make_node("Relu", ["c"], ["z"], name="other_reader")]
    inits = [init("w", rand(rng, 4, 3, 1, 1)), init("g", np.ones(4, np.float32) * 2), init("b", rand(rng, 4)),
             init("m", rand(rng, 4)), init("v", np.ones(4, np.float32))]
    model = make(nodes, [fin("x", [1, 3, 4, 4])], [fin("y", [1, 4, 4, 4]), fin("z", [1, 4, 4, 4])], inits)
    out, records = run_spec(model, "fold-bn")
    assert records[0].stats == {"folded": 0, "refused": 1}
    assert not records[0].changed and ops(out) == ops(model)


def test_fold_bn_refuses_non_constant_weight_and_keeps_shared_weight_intact():
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], name="conv_a"),
             helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["y1"], name="bn_a"),
             helper.make_node("Conv", ["x", "w"], ["y2"], name="conv_shares_w"),
             helper.make_node("Conv", ["x", "wx"], ["c3"], name="conv_runtime_weight"),
             helper.make_node("BatchNormalization", ["c3", "g", "b", "m", "v"], ["y3"], name="bn_b")]
    inits = [init("w", rand(rng, 4, 3, 1, 1)), init("g", rng.uniform(1, 2, 4).astype(np.float32)),
             init("b", rand(rng, 4)), init("m", rand(rng, 4)), init("v", np.ones(4, np.float32))]
    model = make(nodes, [fin("x", [1, 3, 4, 4]), fin("wx", [4, 3, 1, 1])],
                 [fin("y1", [1, 4, 4, 4]), fin("y2", [1, 4, 4, 4]), fin("y3", [1, 4, 4, 4])], inits)
    out, records = run_spec(model, "fold-bn")
    assert records[0].stats == {"folded": 1, "refused": 1}
    assert ops(out).count("BatchNormalization") == 1
    shared = next(n for n in out.graph.node if n.name == "conv_shares_w")
    assert shared.input[1] == "w"  # the other conv still reads the original weight
    assert_same_outputs(model, out)


def test_specialize_input_folds_shape_chains_into_constant_resize_and_reshape():
    model = resize_shape_chain_net()
    out, records = run_spec(model, "specialize-input{shape=x:1x3x10x12},eliminate-dead")
    assert ops(out) == ["Conv", "Resize", "Reshape"]
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in out.graph.initializer}
    resize = next(n for n in out.graph.node if n.op_type == "Resize")
    reshape = next(n for n in out.graph.node if n.op_type == "Reshape")
    np.testing.assert_array_equal(consts[resize.input[3]], [1, 4, 20, 24])
    np.testing.assert_array_equal(consts[reshape.input[1]], [1, 4, -1])
    assert input_specs(out)[0].shape == (1, 3, 10, 12)
    out_dims = [d.dim_value for d in out.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [1, 4, 480]
    assert "unused" not in consts  # dead initializer removed
    assert_same_outputs(model, out)
    assert records[0].stats["nodes_folded"] == 8 and records[0].stats["dims_fixed"] == 3


def test_specialize_input_fixes_only_dynamic_batch():
    model = conv_bn_net(dynamic_batch=True)
    out, _ = run_spec(model, "specialize-input{shape=x:4x3x16x16}")
    assert input_specs(out)[0].shape == (4, 3, 16, 16)
    assert [d.dim_value for d in out.graph.output[1].type.tensor_type.shape.dim] == [4, 5]
    assert_same_outputs(model, out)


def test_eliminate_dead_removes_unreachable_nodes_and_initializers():
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="live"),
             helper.make_node("Mul", ["x", "k"], ["d1"], name="dead1"),
             helper.make_node("Neg", ["d1"], ["d2"], name="dead2")]
    model = make(nodes, [fin("x", [2, 3])], [fin("y", [2, 3])], [init("k", rand(rng, 2, 3)), init("u", rand(rng, 1))])
    out, records = run_spec(model, "eliminate-dead")
    assert ops(out) == ["Relu"] and not out.graph.initializer
    assert records[0].stats == {"nodes_removed": 2, "initializers_removed": 2}


def test_simplify_folds_constant_subgraph():
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Add", ["a", "b"], ["ab"], name="const_add"),
             helper.make_node("Identity", ["ab"], ["ab2"], name="ident"),
             helper.make_node("Mul", ["x", "ab2"], ["y"], name="mul")]
    model = make(nodes, [fin("x", [2, 3])], [fin("y", [2, 3])], [init("a", rand(rng, 2, 3)), init("b", rand(rng, 2, 3))])
    out, records = run_spec(model, "simplify")
    assert ops(out) == ["Mul"]
    assert records[0].stats["nodes_removed"] == 2
    assert_same_outputs(model, out)


def test_mobile_pipeline_on_small_convnet_keeps_numbers():
    from graphs import small_convnet

    model = small_convnet()
    out, records = run_spec(model, "mobile")
    assert [r.name for r in records] == ["fold-bn", "simplify", "eliminate-dead"]
    assert "BatchNormalization" not in ops(out)
    assert_same_outputs(model, out)
    assert records[0].after.params < records[0].before.params
    assert records[0].after.flops == records[0].before.flops > 0


@pytest.mark.parametrize("spec", ["fold-bn", "simplify", "eliminate-dead", "specialize-input{shape=x:1x3x16x16}"])
def test_passes_never_modify_their_input(spec):
    model = conv_bn_net()
    before = model.SerializeToString(deterministic=True)
    run_spec(model, spec)
    assert model.SerializeToString(deterministic=True) == before
