"""A lossy pass that costs more than allowed is reported loudly, and `--strict` refuses it before anything
is written; quantize-int8 keeps in float nodes whose names hold any character (tf2onnx names hold ';')."""

import numpy as np
import onnx
from click.testing import CliRunner
from graphs import small_convnet
from optkit.passes.quantize_int8 import QuantizeInt8

from optkit.cli import main
from optkit.pass_infra.calibration import from_python
from optkit.pass_infra.contract import PassContext


def _calibration(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).standard_normal((8, 3, 24, 32)).astype(np.float32))
    return tmp_path / "c.npz"


def test_warning_then_strict_refusal(tmp_path, save):
    path, data = save(small_convnet(), "m.onnx"), _calibration(tmp_path)
    args = ["--passes", "mobile,quantize-int8", "--calibration-data", str(data), "--min-sqnr", "60"]
    warned = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "q.onnx"), *args])
    assert warned.exit_code == 0 and (tmp_path / "q.onnx").exists()
    assert "optkit: WARNING: pass 'quantize-int8' costs more than allowed: worst output SQNR" in warned.output
    assert "; try quantize-int8{rounding=gptq,calibrator=mse,mixed_sqnr_db=30,depthwise_channel_grids=true}" \
        in warned.output   # and the fix
    refused = CliRunner().invoke(main, ["compile", str(path), "-t", "host", "-o", str(tmp_path / "a"), *args,
                                        "--strict"])
    assert refused.exit_code == 3 and not (tmp_path / "a").exists()
    assert refused.output.startswith("optkit: error: pass 'quantize-int8': worst output SQNR") and "(--strict)" in refused.output
    quiet = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "q2.onnx"), *args[:4]])
    assert quiet.exit_code == 0 and "WARNING" not in quiet.output          # 20 dB default: this graph is within it


def test_exclude_names_with_any_character(tmp_path):
    model = small_convnet()
    for node in model.graph.node:
        node.name = f"net/{node.name};0"                                   # tf2onnx style
    ctx = PassContext(calibration=from_python([np.zeros((1, 3, 24, 32), np.float32) + i for i in range(4)]))
    head = "net/head;0"
    (tmp_path / "keep.txt").write_text(f"{head}\n\nnet/pw;0\n")
    for options in ({"exclude": [head, "net/pw;0"]}, {"exclude_file": str(tmp_path / "keep.txt")}):
        quantized = QuantizeInt8(**options).run(onnx.ModelProto.FromString(model.SerializeToString()), ctx)
        assert quantized.stats["float_nodes_kept"] == 2
        conv_inputs = {n.name: n.input for n in quantized.model.graph.node if n.op_type == "Conv"}
        dequantized = {o for n in quantized.model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        assert conv_inputs[head][1] == "w3"                              # float weights: kept out of int8
        assert conv_inputs["net/conv1;0"][1] in dequantized


def test_pruning_that_cannot_reach_its_target_says_so(tmp_path, save):
    """Every group of this graph reaches a graph output, so nothing can be pruned: the pass records the
    shortfall and why, optimize warns, and --strict refuses."""
    from graphs import fin, init, make, rand
    from onnx import helper

    rng = np.random.default_rng(0)
    model = make([helper.make_node("Conv", ["x", "w"], ["y"], name="only", pads=[1, 1, 1, 1])],
                 [fin("x", [1, 3, 8, 8])], [fin("y", [1, 8, 8, 8])], [init("w", rand(rng, 8, 3, 3, 3))])
    path = save(model, "one.onnx")
    spec = ["--passes", "prune-channels{flops=0.3,reconstruct=false}"]
    warned = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "p.onnx"), *spec])
    assert warned.exit_code == 0, warned.output
    assert "fell short: removed 0.0% of FLOPs, asked for 30% of FLOPs: 0 of 1 channel groups prunable" in warned.output
    refused = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "p2.onnx"), *spec, "--strict"])
    assert refused.exit_code == 3 and "(--strict)" in refused.output and not (tmp_path / "p2.onnx").exists()


def test_a_costly_prune_suggests_the_measured_criterion(tmp_path, save):
    from graphs import prune_net

    path = save(prune_net(), "p.onnx")
    args = ["--passes", "prune-channels{ratio=0.5,reconstruct=false,min-sqnr=-1000}", "--min-sqnr", "60"]
    warned = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "pruned.onnx"), *args])
    assert warned.exit_code == 0, warned.output
    assert "pass 'prune-channels{" in warned.output and "costs more than allowed" in warned.output
    assert "; try prune-channels{criterion=impact,mode=global}" in warned.output
