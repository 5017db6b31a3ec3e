"""Every pass on a graph shaped like converter output (tf2onnx NHWC with Transposes, Pad, Clip,
HardSwish, PRelu, Resize), checked by running the result."""

import numpy as np
import pytest
from graphs import converter_style_net

from optkit.graph.channel_deps import analyze
from optkit.graph.numerics import make_inputs, run_ort, sqnr_db
from optkit.pass_infra.contract import PassContext
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.spec import build_passes


@pytest.fixture
def ctx():
    model = converter_style_net()
    return PassContext(calibration=lambda: [make_inputs(model, seed=20 + i) for i in range(8)])


@pytest.mark.parametrize("spec", ["specialize-input{shape=x:1x32x32x3},mobile,fuse-aspp", "cleanup"])
def test_exact_passes(spec):
    model = converter_style_net()
    out, records = PassManager(build_passes(spec)).run(model)   # the manager checks numbers after each
    feeds = make_inputs(model, seed=1)
    np.testing.assert_allclose(run_ort(out, feeds)["y"], run_ort(model, feeds)["y"], rtol=1e-4, atol=1e-4)


def test_pruning_handles_pad_clip_hardswish_prelu_resize(ctx):
    model = converter_style_net()
    deps = analyze(model)
    refused = {tuple(g.producers): g.refused for g in deps.groups.values()}
    assert refused[("conv1",)] == ""                      # through Clip, depthwise, HardSwish
    assert refused[("project",)] == ""                    # through PRelu (sliced slope)
    assert refused[("expand",)] == ""                     # through Resize
    assert "through Transpose" in refused[("head",)]      # the NHWC output transpose leads to the graph output
    out, records = PassManager(build_passes("prune-channels{ratio=0.25}")).run(model, ctx)
    assert records[0].stats["groups_pruned"] == 3 and records[0].after.flops < records[0].before.flops
    plain, _ = PassManager(build_passes("prune-channels{ratio=0.25,reconstruct=false}")).run(model, ctx)
    feeds = make_inputs(model, seed=99)
    ref = run_ort(model, feeds)["y"]
    # random weights carry no redundancy, so the loss is real; reconstruction must still win clearly
    assert sqnr_db(ref, run_ort(out, feeds)["y"]) > sqnr_db(ref, run_ort(plain, feeds)["y"]) + 2


def test_quantization_on_converter_graph(ctx):
    model = converter_style_net()
    out, records = PassManager(build_passes("mobile,quantize-int8")).run(model, ctx)
    assert records[-1].output_sqnr_db > 15
