"""Input shapes: `1,3,224,224` or `1x3x224x224`, bare for a one-input model; dynamic inputs checked before
any pass runs; a dynamic batch dim fixed to 1 with a notice; never a made-up 1x1 size."""

import json

import onnx
import pytest
from click.testing import CliRunner
from graphs import small_convnet

from optkit.backend.compiler import compile_model
from optkit.backend.targets import get_target
from optkit.cli import main
from optkit.core.errors import OptionError
from optkit.graph.shapes import parse_shape_spec, resolve_input_shapes, static_input_plan


def dynamic(batch=True, spatial=False) -> onnx.ModelProto:
    model = small_convnet()
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if batch:
            dims[0].dim_param = "N"
        if spatial:
            dims[2].dim_param, dims[3].dim_param = "height", "width"
    return model


def test_commas_and_x_and_bare_shapes():
    assert parse_shape_spec("x:1,3,24,32") == parse_shape_spec("x:1x3x24x32") == {"x": (1, 3, 24, 32)}
    assert resolve_input_shapes("1,3,24,32", small_convnet()) == {"x": (1, 3, 24, 32)}
    two = small_convnet()
    two.graph.input.append(onnx.helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, [1, 1, 24, 32]))
    with pytest.raises(OptionError, match="name the input.*inputs are x, mask"):
        resolve_input_shapes("1x3x24x32", two)


def test_dynamic_batch_becomes_one_with_a_notice_and_other_dims_ask_for_a_size():
    planned, notices = static_input_plan(dynamic(), {}, "m.onnx")
    assert planned == {"x": (1, 3, 24, 32)} and "dynamic batch dim (N); built for batch 1" in notices[0]
    with pytest.raises(OptionError) as err:
        static_input_plan(dynamic(spatial=True), {}, "m.onnx")
    message = str(err.value)
    assert "input 'x' [N, 3, height, width] has N, height, width dynamic" in message
    assert "--input-shape x:1x3x<height>x<width>" in message and "1x1" not in message


def test_compile_checks_shapes_before_any_pass(save, tmp_path):
    """quantize-int8 without calibration would fail too, but only after the passes before it: the shape
    error comes first, in one line, and nothing is written."""
    path = save(dynamic(spatial=True), "dyn.onnx")
    result = CliRunner().invoke(main, ["compile", str(path), "-t", "host", "-o", str(tmp_path / "out"),
                                       "--passes", "mobile,quantize-int8"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "TVM builds one fixed input size" in lines[0], result.output
    assert not (tmp_path / "out").exists()


def test_compile_fixes_a_dynamic_batch_and_says_so(save, tmp_path):
    path = save(dynamic(), "dynb.onnx")
    built = compile_model(path, get_target("host"), tmp_path / "out", passes="mobile", validate="off")
    assert built.notices and built.manifest["notices"] == built.notices
    assert built.manifest["inputs"][0]["shape"] == [1, 3, 24, 32]
    result = CliRunner().invoke(main, ["compile", str(path), "-t", "host", "-o", str(tmp_path / "out2"),
                                       "--input-shape", "1,3,24,32", "--validate", "off"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out2" / "manifest.json").read_text())
    assert "notices" not in manifest and manifest["inputs"][0]["shape"] == [1, 3, 24, 32]


def test_a_pipelines_own_specialize_input_counts_as_given(save, tmp_path):
    path = save(dynamic(spatial=True), "dyn.onnx")
    built = compile_model(path, get_target("host"), tmp_path / "out",
                          passes="specialize-input{shape=x:1x3x24x32},simplify", validate="off")
    assert built.manifest["inputs"][0]["shape"] == [1, 3, 24, 32] and not built.notices
