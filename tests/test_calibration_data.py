"""Calibration data the way users hold it: .npz in the input's own shape, .npy, folders of .npy/.npz files or
of images, Python iterables and CalibrationDataReaders; every mismatch one line naming the input."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from graphs import small_convnet
from PIL import Image

from optkit import api
from optkit.cli import main
from optkit.core.errors import OptionError
from optkit.pass_infra.calibration import ImagePreprocess, calibration_set, from_path, from_python

SHAPE = (1, 3, 24, 32)


def _samples(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *SHAPE[1:])).astype(np.float32)


def test_npz_with_samples_on_axis_0_in_the_inputs_own_shape(tmp_path):
    """(N, 3, H, W) for an input (1, 3, H, W): the sample axis is the batch axis; the older (N, 1, 3, H, W)
    layout still works and gives the same samples."""
    model = small_convnet()
    data = _samples(6)
    np.savez(tmp_path / "flat.npz", x=data)
    np.savez(tmp_path / "nested.npz", x=data[:, None])
    flat = calibration_set(from_path(tmp_path / "flat.npz"), model)
    nested = calibration_set(from_path(tmp_path / "nested.npz"), model)
    assert len(flat.samples) == 6 and flat.samples[0]["x"].shape == SHAPE
    assert flat.sha256 == nested.sha256
    np.testing.assert_array_equal(flat.samples[5]["x"][0], data[5])


def test_sample_count_is_honoured_and_changes_the_fingerprint(tmp_path):
    model = small_convnet()
    np.savez(tmp_path / "c.npz", x=_samples(10))
    four = calibration_set(from_path(tmp_path / "c.npz", samples=4), model)
    again = calibration_set(from_path(tmp_path / "c.npz", samples=4), model)
    ten = calibration_set(from_path(tmp_path / "c.npz"), model)
    assert (len(four.samples), len(ten.samples)) == (4, 10)
    assert four.sha256 == again.sha256 != ten.sha256


def test_npy_file_and_folders_of_npy_and_npz(tmp_path):
    model = small_convnet()
    data = _samples(3, seed=1)
    np.save(tmp_path / "all.npy", data)
    (tmp_path / "npy").mkdir()
    (tmp_path / "npz").mkdir()
    for i, sample in enumerate(data):
        np.save(tmp_path / "npy" / f"{i:03d}.npy", sample if i % 2 else sample[None])   # with or without batch
        np.savez(tmp_path / "npz" / f"{i:03d}.npz", x=sample[None])
    sets = [calibration_set(from_path(tmp_path / p), model) for p in ("all.npy", "npy", "npz")]
    assert len({s.sha256 for s in sets}) == 1 and len(sets[0].samples) == 3


def test_image_folder_is_resized_scaled_and_laid_out(tmp_path):
    model = small_convnet()
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    Image.fromarray(np.full((10, 10, 3), 255, np.uint8)).save(folder / "white.jpg")
    result = calibration_set(from_path(folder, preprocess=ImagePreprocess(mean=(0.5,), std=(0.25,))), model)
    assert len(result.samples) == 4 and result.samples[0]["x"].shape == SHAPE
    white = result.samples[3]["x"]                          # sorted by name: img0..2, white
    np.testing.assert_allclose(white, (1.0 - 0.5) / 0.25, rtol=1e-6)


def test_python_iterables_and_data_readers():
    model = small_convnet()
    data = _samples(3, seed=3)

    class Reader:                                           # onnxruntime's CalibrationDataReader protocol
        def __init__(self):
            self.left = [{"x": d[None]} for d in data]

        def get_next(self):
            return self.left.pop(0) if self.left else None

    from_reader = calibration_set(api.calibration(data=Reader()), model)
    from_list = calibration_set(api.calibration(data=list(data)), model)
    from_dicts = calibration_set(from_python({"x": d} for d in data), model)
    assert from_reader.sha256 == from_list.sha256 == from_dicts.sha256


@pytest.mark.parametrize("make, message", [
    (lambda p: np.savez(p / "c.npz", x=np.zeros((4, 3, 24), np.float32)),
     "input 'x' expects shape 1x3x24x32 (float32); sample 0 has shape 3x24"),
    (lambda p: np.savez(p / "c.npz", image=np.zeros((4, 3, 24, 32), np.float32), x=np.zeros((4, 3, 24, 32))),
     "no input named image (the model's inputs: x)"),
    (lambda p: np.savez(p / "c.npz", x=np.zeros((4, 3, 24, 32), np.complex64)),
     "input 'x' is float32; sample 0 is complex64"),
])
def test_mismatches_name_the_input_and_both_shapes(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        calibration_set(from_path(tmp_path / "c.npz"), small_convnet())


def test_folder_errors(tmp_path):
    (tmp_path / "mixed").mkdir()
    np.save(tmp_path / "mixed" / "a.npy", np.zeros(SHAPE, np.float32))
    (tmp_path / "mixed" / "notes.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OptionError, match="one kind of sample.*found notes.txt"):
        from_path(tmp_path / "mixed")
    with pytest.raises(OptionError, match="the folder is empty"):
        from_path(tmp_path / "empty")
    with pytest.raises(OptionError, match="no such file or folder"):
        from_path(tmp_path / "missing.npz")


def test_cli_quantizes_from_a_folder_of_pngs_and_records_the_data(tmp_path, save):
    path = save(small_convnet(), "m.onnx")
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    result = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "q.onnx"), "--passes",
                                       "quantize-int8", "--calibration-data", str(folder), "--calibration-samples",
                                       "3", "--calibration-mean", "0.5", "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "r.json").read_text())[0]["stats"]
    assert stats["calibration_samples"] == 3 and len(stats["calibration_sha256"]) == 64
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(tmp_path / "q.onnx").graph.node)


def test_cli_error_is_one_line(tmp_path, save):
    path = save(small_convnet(), "m.onnx")
    np.save(tmp_path / "bad.npy", np.zeros((2, 5), np.float32))
    result = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "q.onnx"), "--passes",
                                       "quantize-int8", "--calibration-data", str(tmp_path / "bad.npy")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "input 'x' expects shape 1x3x24x32" in lines[0] and "bad.npy" in lines[0]


def test_image_options_are_checked(tmp_path, save):
    path = save(small_convnet(), "m.onnx")
    result = CliRunner().invoke(main, ["optimize", str(path), "-o", str(tmp_path / "q.onnx"),
                                       "--calibration-scale", "abc"])
    assert result.exit_code == 2 and "--calibration-scale: 'abc' is not a number" in result.output
