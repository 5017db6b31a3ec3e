"""fuse-aspp: dead taps of dilated kernels are dropped and parallel convs merged, with identical outputs."""

import numpy as np
import pytest
from graphs import aspp_net
from optkit.passes.fuse_aspp import live_taps

from optkit.graph.index import attr
from optkit.graph.numerics import make_inputs, run_ort
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes


def test_live_taps_by_hand():
    # 15 rows, rate 18, pad 18: the outer rows read rows -18..-4 and 18..32: padding only
    assert live_taps(15, 3, 1, 18, 18, 15) == [1]
    # 20 columns, rate 18: the outer columns reach 0..1 and 18..19 from the far edges
    assert live_taps(20, 3, 1, 18, 18, 20) == [0, 1, 2]
    assert live_taps(15, 3, 1, 6, 6, 15) == [0, 1, 2]
    # stride 2 over 15 rows, 8 outputs: rate 12 reaches rows 0, 2 and 12, 14; rate 16 only padding
    assert live_taps(15, 3, 2, 12, 12, 8) == [0, 1, 2]
    assert live_taps(15, 3, 2, 16, 16, 8) == [1]


def test_fuse_aspp_is_exact_and_cheaper():
    model = aspp_net()
    out, records = PassManager(build_passes("fuse-aspp")).run(model)
    rec = records[0]
    assert rec.stats["convs_shrunk"] == 2            # rate 18 → 1x3, rate 24 → 1x1
    assert rec.stats["convs_merged"] == 3             # 1x1 branch, shrunk rate-24 branch and side conv
    assert rec.after.flops < rec.before.flops
    assert rec.max_abs_diff is not None and rec.max_abs_diff < 1e-4
    convs = {n.name: n for n in out.graph.node if n.op_type == "Conv"}
    assert list(attr(convs["aspp_rate18"], "kernel_shape")) == [1, 3]
    assert list(attr(convs["aspp_rate18"], "pads")) == [0, 18, 0, 18]
    assert "aspp_rate24" not in convs and "aspp_1x1" not in convs  # merged away
    merged = [n for n in out.graph.node if n.name.endswith("_merged")]
    assert len(merged) == 1 and any(n.op_type == "Split" for n in out.graph.node)
    # the image-pooling branch no longer broadcasts: its projection slice runs on the 1x1 map
    assert rec.stats["pooling_branches_folded"] == 1
    assert not any(n.op_type == "Expand" for n in out.graph.node)
    cat = next(n for n in out.graph.node if n.op_type == "Concat")
    assert "e_gp" not in cat.input
    feeds = make_inputs(model, seed=9)
    ref, got = run_ort(model, feeds), run_ort(out, feeds)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-5)


def test_fuse_aspp_leaves_dynamic_graphs_alone():
    from graphs import conv_bn_net

    out, records = PassManager(build_passes("fuse-aspp")).run(conv_bn_net(dynamic_batch=True))
    assert records[0].stats["convs_shrunk"] == 0


@pytest.mark.parametrize("h,w,shrunk,merged", [(33, 41, 0, 2), (8, 8, 3, 5)])
def test_fuse_aspp_on_other_map_sizes(h, w, shrunk, merged):
    """What was fused, not only that nothing broke: on 33x41 no tap reads only padding (nothing shrinks, the
    1x1 convs merge); on 8x8 every dilated branch shrinks to 1x1 and all five merge."""
    model = aspp_net(h=h, w=w)
    out, records = PassManager(build_passes("fuse-aspp")).run(model)
    stats = records[0].stats
    assert (stats["convs_shrunk"], stats["convs_merged"], stats["pooling_branches_folded"]) == (shrunk, merged, 1)
    assert records[0].changed and records[0].max_abs_diff is not None and records[0].max_abs_diff < 1e-4
    assert records[0].after.flops < records[0].before.flops
