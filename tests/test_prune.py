"""prune-channels: dependency groups, index bookkeeping across residuals, depthwise chains and concat
offsets (checked by running the pruned graph), reconstruction, refusals, FLOP targets."""

import numpy as np
import onnx
import pytest
from graphs import fin, init, make, prune_net, rand
from onnx import helper, numpy_helper
from optkit.passes.prune_channels import PruneChannels, apply, select

from optkit.graph.channel_deps import analyze, channel_importance
from optkit.graph.numerics import make_inputs, run_ort, sqnr_db
from optkit.pass_infra.contract import PassContext
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes


def calib(model, n=6):
    return lambda: [make_inputs(model, seed=50 + i) for i in range(n)]


def test_dependency_groups():
    deps = analyze(prune_net())
    by_producer = {tuple(sorted(g.producers)): g for g in deps.groups.values()}
    assert ("conv_a", "conv_c") in by_producer          # the residual couples them
    assert "dw" in by_producer[("conv_b",)].followers   # the depthwise conv follows conv_b's channels
    assert by_producer[("conv_e",)].refused == "reaches graph output 'y'"
    cat = deps.channels["cat"]
    assert len(cat) == 14 and cat[8][1] == 0 and cat[7][1] == 7   # offsets: 8 channels, then conv_d's 6
    assert deps.depthwise == {"dw"}


def zeroed_reference(model, removed: dict[str, list[int]]) -> onnx.ModelProto:
    """The original model with the removed filters (and biases) of each producer set to zero."""
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    inits = {t.name: t for t in ref.graph.initializer}
    for node in ref.graph.node:
        if node.name in removed:
            for k in (1, 2):
                if len(node.input) > k:
                    v = numpy_helper.to_array(inits[node.input[k]]).copy()
                    v[removed[node.name]] = 0
                    inits[node.input[k]].CopyFrom(numpy_helper.from_array(v, node.input[k]))
    return ref


def test_plain_removal_equals_zeroing_the_same_channels():
    """Removing channels must compute exactly what the original computes with those filters zeroed:
    checks the index bookkeeping through the residual, the depthwise chain and the concat offsets."""
    model = prune_net()
    deps = analyze(model)
    keep = select(deps, channel_importance(model, deps), ratio=0.5, mode="uniform", min_keep=1)
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    apply(pruned, deps, keep)
    onnx.checker.check_model(pruned, full_check=True)
    shapes = {n.name: numpy_helper.to_array(next(t for t in pruned.graph.initializer if t.name == n.input[1])).shape
              for n in pruned.graph.node if n.op_type == "Conv"}
    assert shapes["conv_a"][0] == shapes["conv_c"][0] == 4 and shapes["conv_b"][0] == 6 and shapes["dw"] == (6, 1, 3, 3)
    assert shapes["conv_e"] == (4, 4 + 3, 3, 3)          # concat offsets honoured
    removed = {p: sorted(set(range(g.size)) - set(keep[g.gid].tolist()))
               for g in deps.groups.values() if g.gid in keep for p in g.producers}
    assert set(removed) == {"conv_a", "conv_c", "conv_b", "conv_d"}
    feeds = make_inputs(model, seed=3)
    np.testing.assert_allclose(run_ort(pruned, feeds)["y"], run_ort(zeroed_reference(model, removed), feeds)["y"],
                               rtol=1e-4, atol=1e-4)


def test_reconstruction_beats_plain_removal():
    model = prune_net()
    ctx = PassContext(calibration=calib(model))
    # plain removal of half of every group falls below 0 dB here: lift its floor to compare the two
    plain, _ = PassManager([PruneChannels(ratio=0.5, reconstruct=False, **{"min-sqnr": float("-inf")})]).run(model, ctx)
    rebuilt, records = PassManager([PruneChannels(ratio=0.5)]).run(model, ctx)
    assert "reconstruction_rel_error_max" in records[0].stats
    feeds = make_inputs(model, seed=99)           # held out from calibration
    ref = run_ort(model, feeds)["y"]
    assert sqnr_db(ref, run_ort(rebuilt, feeds)["y"]) > sqnr_db(ref, run_ort(plain, feeds)["y"]) + 1.5


def test_unmodelled_structures_are_refused_with_the_node_named():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
             helper.make_node("Reshape", ["c1", "shape"], ["r"], name="flatten_like"),
             helper.make_node("Reshape", ["r", "shape2"], ["c2"], name="unflatten"),
             helper.make_node("Conv", ["c2", "w2"], ["y"], name="conv2")]
    model = make(nodes, [fin("x", [1, 3, 4, 4])], [fin("y", [1, 2, 4, 4])],
                 [init("w1", rand(rng, 8, 3, 1, 1)), init("w2", rand(rng, 2, 8, 1, 1)),
                  init("shape", np.array([1, 8, 16], np.int64)), init("shape2", np.array([1, 8, 4, 4], np.int64))])
    deps = analyze(model)
    assert not deps.prunable()
    assert any("op Reshape of node 'flatten_like'" in g.refused for g in deps.groups.values())
    out, records = PassManager([PruneChannels(ratio=0.5, reconstruct=False)]).run(model)
    assert not records[0].changed and records[0].stats["groups_pruned"] == 0


def test_flop_target_is_met():
    model = prune_net()
    _, records = PassManager(build_passes("prune-channels{flops=0.3,reconstruct=false}")).run(model)
    r = records[0]
    assert 1 - r.after.flops / r.before.flops >= 0.3


def test_needs_calibration_to_reconstruct():
    from optkit.core.errors import OptionError

    with pytest.raises(OptionError, match="reconstructs from calibration data"):
        PassManager(build_passes("prune-channels{ratio=0.5}")).run(prune_net())


def test_bn_scale_criterion_ranks_by_gamma():
    from graphs import conv_bn_net

    model = conv_bn_net(dynamic_batch=False)
    deps = analyze(model)
    gid = next(g.gid for g in deps.groups.values() if g.producers == ["conv_nobias"])
    gamma = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "bn1_g")).astype(np.float64)
    var = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "bn1_v")).astype(np.float64)
    expected = np.abs(gamma) / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(channel_importance(model, deps, "bn")[gid], expected / expected.mean(), rtol=1e-6)
    l1 = channel_importance(model, deps, "l1")[gid]
    assert not np.allclose(l1, expected / expected.mean())


def padded_residual_net(seed: int = 0) -> onnx.ModelProto:
    """BlazePalm's stage change: a stream of 8 channels, max-pooled and padded with 8 zero channels, added to
    a 16-channel branch. Channels 6, 7 (stream and branch) and 14, 15 (branch, against zeros) are dead:
    zero filters and biases, so removing them is exact."""
    rng = np.random.default_rng(seed)
    w1, wp1, wd2, wp2 = rand(rng, 8, 3, 3, 3), rand(rng, 8, 8, 1, 1), rand(rng, 8, 1, 3, 3), rand(rng, 16, 8, 1, 1)
    b1, bp1, bp2 = rand(rng, 8), rand(rng, 8), rand(rng, 16)
    for w, b, dead in ((w1, b1, [6, 7]), (wp1, bp1, [6, 7]), (wp2, bp2, [6, 7, 14, 15])):
        w[dead], b[dead] = 0, 0
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c1", "slope"], ["s1"], name="prelu1"),
        helper.make_node("Conv", ["s1", "wd1"], ["d1"], name="dw1", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Conv", ["d1", "wp1", "bp1"], ["p1"], name="pw1"),
        helper.make_node("Add", ["p1", "s1"], ["a1"], name="add1"),
        helper.make_node("Relu", ["a1"], ["s2"], name="relu1"),
        helper.make_node("MaxPool", ["s2"], ["m2"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Pad", ["m2", "channel_pads"], ["z2"], name="channel_padding"),
        helper.make_node("Conv", ["s2", "wd2"], ["d2"], name="dw2", pads=[1, 1, 1, 1], strides=[2, 2], group=8),
        helper.make_node("Conv", ["d2", "wp2", "bp2"], ["p2"], name="pw2"),
        helper.make_node("Add", ["p2", "z2"], ["a2"], name="add2"),
        helper.make_node("Relu", ["a2"], ["s3"], name="relu2"),
        helper.make_node("Conv", ["s3", "wh"], ["y"], name="head"),
    ]
    inits = [init("w1", w1), init("b1", b1), init("slope", np.full((8, 1, 1), 0.1, np.float32)),
             init("wd1", rand(rng, 8, 1, 3, 3)), init("wp1", wp1), init("bp1", bp1), init("wd2", wd2),
             init("wp2", wp2), init("bp2", bp2), init("channel_pads", np.array([0, 0, 0, 0, 0, 8, 0, 0], np.int64)),
             init("wh", rand(rng, 4, 16, 1, 1))]
    return make(nodes, [fin("x", [1, 3, 16, 16])], [fin("y", [1, 4, 8, 8])], inits)


def test_channel_padding_couples_the_stream_with_half_the_branch_and_shrinks_with_it():
    model = padded_residual_net()
    deps = analyze(model)
    prunable = {tuple(sorted(g.producers)): g for g in deps.prunable()}
    # The branch's first 8 channels are the stream's (conv1, pw1); its last 8 meet only padding zeros.
    assert sorted(g.size for g in prunable.values()) == [8, 8]
    assert ("conv1", "pw1", "pw2") in prunable and ("pw2",) in prunable
    assert deps.channel_pads == {"channel_padding"}
    pruned, records = PassManager(build_passes("prune-channels{ratio=0.25,reconstruct=false,min-channels=2}")).run(
        model, PassContext())
    assert records[0].stats["channels_removed"] == 4
    pads = next(numpy_helper.to_array(t) for t in pruned.graph.initializer
                if t.name == next(n for n in pruned.graph.node if n.op_type == "Pad").input[1])
    assert pads[5] == 6                                   # two of the eight zero channels went with their partners
    x = make_inputs(model, seed=3)
    np.testing.assert_allclose(run_ort(pruned, x)["y"], run_ort(model, x)["y"], rtol=1e-5, atol=1e-5)


def test_impact_is_measured_exactly_and_finds_the_channel_filter_norms_keep():
    """criterion=impact: the masked probe computes exactly what removing the masked channels computes, and
    a channel with the largest filter that the network after it ignores (its depthwise filter is zero) is
    what impact prunes first, where L1 keeps it."""
    from optkit.graph.channel_impact import channel_impact, masked_probe

    model = prune_net()
    weights = {t.name: t for t in model.graph.initializer}
    wb, wdw = (numpy_helper.to_array(weights[n]).copy() for n in ("wb", "wdw"))
    wb[0] *= 8                                    # conv_b's channel 0: the largest filter by far
    wdw[0] = 0                                    # ... and the depthwise layer after it drops it
    for name, value in (("wb", wb), ("wdw", wdw)):
        weights[name].CopyFrom(numpy_helper.from_array(value, name))
    deps = analyze(model)
    probe, masks = masked_probe(model, deps)
    onnx.checker.check_model(probe, full_check=True)
    rng = np.random.default_rng(3)
    removed = {g.gid: rng.choice(g.size, g.size // 2, replace=False) for g in deps.prunable()}
    feeds = make_inputs(model, seed=7)
    mask_feeds = {masks[g.gid]: np.ones(g.size, np.float32) for g in deps.prunable()}
    for gid, channels in removed.items():
        mask_feeds[masks[gid]][channels] = 0
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    apply(pruned, deps, {gid: np.setdiff1d(np.arange(deps.groups[gid].size), ch) for gid, ch in removed.items()})
    np.testing.assert_allclose(run_ort(probe, {**feeds, **mask_feeds}, ["y"])["y"], run_ort(pruned, feeds)["y"],
                               rtol=1e-5, atol=1e-5)

    group = next(g for g in deps.prunable() if g.producers == ["conv_b"])
    impact = channel_impact(model, deps, calib(model, 3)())
    assert impact[group.gid][0] == 0 and (np.delete(impact[group.gid], 0) > 1e-4).all()
    assert channel_importance(model, deps)[group.gid].argmax() == 0
    ctx = PassContext(calibration=calib(model))
    kept = {}
    for criterion in ("l1", "impact"):
        out, records = PassManager([PruneChannels(ratio=0.1, criterion=criterion, reconstruct=False,
                                            **{"min-channels": 1})]).run(model, ctx)
        kept[criterion] = numpy_helper.to_array(next(t for t in out.graph.initializer if t.name.startswith("wdw")))
        assert records[0].stats.get("impact_samples") == (4 if criterion == "impact" else None)
    assert len(kept["l1"]) == len(kept["impact"]) == 11
    assert not np.any(kept["l1"][0]) and np.all(np.abs(kept["impact"]).sum(axis=(1, 2, 3)) > 0)


def test_impact_needs_calibration_data():
    from optkit.core.errors import OptionError

    with pytest.raises(OptionError, match="measures criterion=impact on calibration data"):
        PassManager(build_passes("prune-channels{criterion=impact,reconstruct=false}")).run(prune_net())
