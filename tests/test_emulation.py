"""An AArch64 artifact runs under qemu user-mode emulation and matches onnxruntime."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from graphs import small_convnet

from optkit.backend.compiler import compile_model
from optkit.backend.runtime.runner import run_artifact
from optkit.backend.targets import get_target
from optkit.cli import main
from optkit.graph.numerics import make_inputs, run_ort

pytestmark = pytest.mark.emulation


def test_rk3399_artifact_matches_onnxruntime_under_emulation(small_model, tmp_path, sysroot_ready):
    built = compile_model(small_model, get_target("rk3399"), tmp_path / "rk", validate="emulate")
    assert built.manifest["validation"]["how"] == "exported library under qemu-aarch64 user-mode emulation"
    feeds = make_inputs(small_convnet(), seed=7)
    result = run_artifact(tmp_path / "rk", feeds, emulate=True, compare_reference=True)
    assert result.how.startswith("emulated")
    assert not result.mismatches
    np.testing.assert_allclose(result.outputs["y"], run_ort(small_convnet(), feeds)["y"], rtol=1e-4, atol=1e-5)
    # and through the command line, as a user would
    np.save(tmp_path / "x.npy", feeds["x"])
    cli = CliRunner().invoke(main, ["run", str(tmp_path / "rk"), "--input", str(tmp_path / "x.npy"), "--emulate"])
    assert cli.exit_code == 0 and "(match)" in cli.output, cli.output


def test_reference_model_with_every_rule_matches_under_emulation(tmp_path, sysroot_ready):
    """face exercises the conv (dense, 1x1, depthwise), matmul and reduction rules on AArch64."""
    from optkit.reference_models.catalog import get_task

    task = get_task("face")
    result = compile_model(task.onnx_path, get_target("rk3399"), tmp_path / "rk")
    rules = result.manifest["schedules"]["functions"]
    assert rules["conv"] and rules["matmul"] and rules["unscheduled"] == 0, rules
    feeds = make_inputs(onnx.load(task.onnx_path), seed=3)
    run = run_artifact(tmp_path / "rk", feeds, emulate=True, compare_reference=True)
    assert run.how.startswith("emulated") and not run.mismatches


def test_neon_row_tiles_and_depthwise_padding_match_onnxruntime_under_emulation(tmp_path, save, sysroot_ready):
    """The NEON-only schedule choices, run as AArch64 code: rows no SIMD multiple divides (14, 7, a prime 23:
    two registers, the last tile predicated), depthwise planes wide enough that their padding copy is
    written in 16-element vectors with a remainder (39 padded columns), and depthwise rows in blocks."""
    from graphs import fin, init, make, rand, side_by_side
    from onnx import helper

    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="pw14"),                     # 1x1 on a 14-wide row
             helper.make_node("Conv", ["a", "wd"], ["b"], name="dw", group=8, pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["b", "w2"], ["y"], name="pw7")]                       # 7-wide row
    model = make(nodes, [fin("x", [1, 6, 14, 14])], [fin("y", [1, 5, 7, 7])],
                 [init("w1", rand(rng, 8, 6, 1, 1)), init("wd", rand(rng, 8, 1, 3, 3)), init("w2", rand(rng, 5, 8, 1, 1))])
    wide = make([helper.make_node("Conv", ["x", "wd"], ["y"], name="dw", group=8, pads=[1, 1, 1, 1])],
                [fin("x", [1, 8, 5, 37])], [fin("y", [1, 8, 5, 37])], [init("wd", rand(rng, 8, 1, 3, 3))])
    prime = make([helper.make_node("Conv", ["x", "w"], ["y"], name="pw23")],
                 [fin("x", [1, 4, 3, 23])], [fin("y", [1, 6, 3, 23])], [init("w", rand(rng, 6, 4, 1, 1))])
    # Depthwise rows computed in blocks of 4 (3x3 with its sums started from the bias, and 5x5, 8-wide rows)
    # and 2 strided (5x5, stride 2), with a clip; a dilated 3x3 too.
    blocks = make([helper.make_node("Conv", ["x", "k3", "bias"], ["a"], name="dw3", group=4, pads=[1, 1, 1, 1]),
                   helper.make_node("Conv", ["a", "k5"], ["b"], name="dw5", group=4, pads=[2, 2, 2, 2]),
                   helper.make_node("Clip", ["b", "lo", "hi"], ["b6"], name="relu6"),
                   helper.make_node("Conv", ["b6", "k5s2"], ["c"], name="dw5s2", group=4, pads=[2, 2, 2, 2],
                                    strides=[2, 2]),
                   helper.make_node("Conv", ["c", "k3"], ["y"], name="dw3d2", group=4, pads=[2, 2, 2, 2],
                                    dilations=[2, 2])],
                  [fin("x", [1, 4, 16, 8])], [fin("y", [1, 4, 8, 4])],
                  [init("k3", rand(rng, 4, 1, 3, 3)), init("bias", rand(rng, 4)), init("k5", rand(rng, 4, 1, 5, 5)),
                   init("k5s2", rand(rng, 4, 1, 5, 5)),
                   init("lo", np.array(-0.5, np.float32)), init("hi", np.array(0.5, np.float32))])
    # A 2-group strided conv whose sums start from its bias, on rows padded from 6 to 8 columns and cropped.
    grouped = make([helper.make_node("Conv", ["x", "wg", "bg"], ["y"], name="g2", group=2, pads=[1, 1, 1, 1],
                                     strides=[2, 2])],
                   [fin("x", [1, 8, 9, 11])], [fin("y", [1, 6, 5, 6])],
                   [init("wg", rand(rng, 6, 4, 3, 3)), init("bg", rand(rng, 6))])
    # Padding filled first, then the rows copied in as vectors (rows a multiple of 4 wide): unequal pads on
    # every side, and a 5x5 kernel.
    edges = make([helper.make_node("Conv", ["x", "k3"], ["a"], name="dw3", group=4, pads=[0, 2, 2, 1]),
                  helper.make_node("Conv", ["a", "k5"], ["y"], name="dw5", group=4, pads=[2, 2, 2, 2])],
                 [fin("x", [1, 4, 9, 16])], [fin("y", [1, 4, 9, 17])],
                 [init("k3", rand(rng, 4, 1, 3, 3)), init("k5", rand(rng, 4, 1, 5, 5))])
    # The six graphs side by side in one library: one build, one emulator run.
    merged = side_by_side([model, wide, prime, blocks, grouped, edges])
    built = compile_model(save(merged, "merged.onnx"), get_target("rk3399"), tmp_path / "a", validate="emulate")
    # compile refuses a build whose AArch64 library, run under qemu, disagrees with onnxruntime
    assert built.manifest["validation"]["how"] == "exported library under qemu-aarch64 user-mode emulation"
    assert len(built.manifest["validation"]["outputs"]) == 6
    assert max(o["max_abs_diff"] for o in built.manifest["validation"]["outputs"].values()) < 1e-4
    assert built.manifest["bias_initialized_convolutions"] == 2          # blocks' 3x3 and the grouped conv
    # as many functions on the conv rule as the six graphs built one by one (a failed fill-then-copy, for one,
    # would fall back to the generic rule)
    assert built.manifest["schedules"]["functions"]["conv"] == 8


def test_padded_rows_and_hwio_weights_match_onnxruntime_under_emulation(tmp_path, save, sysroot_ready):
    """The NEON dense-convolution path, run as AArch64 code: rows padded to whole vectors then cropped (14-,
    7- and 10-wide outputs, a stride-2 3x3 and a dilated 3x3 among them), HWIO weights, the 12-channel tile,
    the weights held in registers (6 to 40 input channels) and the input-channel loop unrolled by two (even and
    odd channel counts), with a residual add and a clip in the epilogue, and a bias the sums start from."""
    from graphs import fin, init, make, rand
    from onnx import helper

    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="pw14_36"),                 # 6 -> 36, 12-tile
             helper.make_node("Clip", ["a", "lo", "hi"], ["a6"], name="relu6"),
             helper.make_node("Conv", ["a6", "w2"], ["b"], name="pw14_24"),                     # 36 -> 24: registers
             helper.make_node("Conv", ["x", "w3"], ["c"], name="d3x3", pads=[2, 2, 2, 2], dilations=[2, 2]),
             helper.make_node("Add", ["b", "c"], ["r"], name="residual"),
             helper.make_node("Conv", ["r", "w4"], ["s"], name="s2", pads=[1, 1, 1, 1], strides=[2, 2]),  # 7 wide
             helper.make_node("Conv", ["s", "w5"], ["y"], name="pw7_odd")]                      # 33 -> 5 channels
    model = make(nodes, [fin("x", [1, 6, 14, 14])], [fin("y", [1, 5, 7, 7])],
                 [init("w1", rand(rng, 36, 6, 1, 1)), init("b1", rand(rng, 36)),
                  init("lo", np.array(0, np.float32)), init("hi", np.array(6, np.float32)),
                  init("w2", rand(rng, 24, 36, 1, 1)), init("w3", rand(rng, 24, 6, 3, 3)),
                  init("w4", rand(rng, 33, 24, 3, 3)), init("w5", rand(rng, 5, 33, 1, 1))])
    ten = make([helper.make_node("Conv", ["x", "w"], ["y"], name="pw10", pads=[0, 0, 0, 0])],
               [fin("x", [1, 40, 3, 10])], [fin("y", [1, 12, 3, 10])], [init("w", rand(rng, 12, 40, 1, 1))])
    for name, m, padded in (("net", model, 5), ("ten", ten, 1)):
        built = compile_model(save(m, f"{name}.onnx"), get_target("rk3399"), tmp_path / name, validate="emulate")
        assert built.manifest["validation"]["how"] == "exported library under qemu-aarch64 user-mode emulation"
        assert max(o["max_abs_diff"] for o in built.manifest["validation"]["outputs"].values()) < 1e-4
        assert built.manifest["padded_row_convolutions"] == padded
        assert built.manifest["hwio_convolutions"] == padded
        assert built.manifest["bias_initialized_convolutions"] == (name == "net")    # pw14_36, cropped after
