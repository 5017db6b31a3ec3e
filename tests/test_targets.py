import json

import pytest
from click.testing import CliRunner

from optkit.backend.targets import get_target, list_targets
from optkit.cli import main
from optkit.core.errors import OptionError

EXPECTED = {"host", "snapdragon625", "snapdragon845", "rk3399", "ios-arm64"}


def test_every_device_is_a_file_with_sourced_peaks():
    targets = {t.name: t for t in list_targets()}
    assert EXPECTED <= set(targets)
    for t in targets.values():
        assert t.peak.source
        assert t.tvm["kind"] == "llvm"
        if not t.is_host:
            assert t.peak.fp32_gflops > 0 and t.peak.int8_gops >= t.peak.fp32_gflops and t.peak.bandwidth_gbs > 0
            assert t.rpc_key and t.threads > 0 and t.clock_ghz > 0
    assert targets["snapdragon845"].tvm["mattr"] == ["+neon", "+dotprod"]
    assert get_target("host").tvm_target_dict()["mcpu"] != "native"


def test_a_new_device_is_a_new_file(tmp_path, monkeypatch):
    text = get_target("rk3399").path
    data = open(text).read().replace('name = "rk3399"', 'name = "jetson-nano-cpu"')
    (tmp_path / "jetson-nano-cpu.toml").write_text(data)
    monkeypatch.setenv("OPTKIT_TARGET_PATH", str(tmp_path))
    result = CliRunner().invoke(main, ["targets", "list", "--json"])
    assert result.exit_code == 0
    names = [t["name"] for t in json.loads(result.output)]
    assert "jetson-nano-cpu" in names and EXPECTED <= set(names)


def test_malformed_target_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken.toml").write_text('name = "broken"\n')
    monkeypatch.setenv("OPTKIT_TARGET_PATH", str(tmp_path))
    with pytest.raises(OptionError, match=r"broken.toml: missing key\(s\) description"):
        get_target("broken")
