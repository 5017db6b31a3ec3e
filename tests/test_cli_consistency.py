"""One spelling for scripts and CI: -t/--target repeatable, --json [PATH] (stdout without PATH), exit codes
1/2/3, `passes show`."""

import json

from click.testing import CliRunner

from optkit.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_json_goes_to_stdout_alone_or_to_a_file(tmp_path):
    code, text = invoke("passes", "list", "--json")
    assert code == 0 and "quantize-int8" in {p["name"] for p in json.loads(text)["passes"]}
    code, text = invoke("targets", "list", "--json", "-")
    assert code == 0 and {t["name"] for t in json.loads(text)} >= {"host", "rk3399"}
    code, text = invoke("models", "list", "--json", tmp_path / "m.json")
    assert code == 0 and len(json.loads((tmp_path / "m.json").read_text())) == 6


def test_passes_show_lists_options_defaults_and_help():
    code, text = invoke("passes", "show", "prune-channels")
    assert code == 0 and "flops" in text and "lossy" in text
    code, text = invoke("passes", "show", "quantize-int8", "--json")
    info = json.loads(text)
    assert info["options"]["calibrator"] == {"default": "minmax", "help": "minmax | percentile | entropy | mse (per tensor, "
                                                                   "the range of least quantization error)"}
    assert not info["exact"] and "QDQ" in info["doc"]
    code, text = invoke("passes", "show", "nosuch")
    assert code == 2 and text.startswith("optkit: error: unknown pass 'nosuch'")


def test_target_option_is_repeatable_and_takes_lists():
    from optkit.cli import _targets

    assert _targets(("rk3399", "host,snapdragon845"), None) == ["rk3399", "host", "snapdragon845"]
    assert _targets((), "rk3399,host") == ["rk3399", "host"]          # the old --targets spelling still works
    assert _targets((), None) is None
    code, text = invoke("estimate", "--models", "face", "-t", "rk3399", "-t", "snapdragon845")
    assert code == 0 and "rk3399 est." in text and "snapdragon845 est." in text and "ios-arm64 est." not in text


def test_exit_codes_tell_usage_from_tool_errors(tmp_path):
    code, text = invoke("compile", tmp_path / "missing.onnx", "-t", "host", "-o", tmp_path / "o")
    assert code == 3 and "no such file" in text                       # the tool could not do it
    code, text = invoke("compile", tmp_path / "missing.onnx", "-t", "rk3388", "-o", tmp_path / "o")
    assert code == 2 and "unknown target 'rk3388'" in text            # the command line is wrong
    code, text = invoke("compile", "--bogus")
    assert code == 2
