"""The manager's instruments, pass specs, the registry and its entry-point path."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from graphs import conv_bn_net, small_convnet
from onnx import numpy_helper

from optkit.core.errors import OptionError, PassFailedError, UnknownNameError
from optkit.pass_infra.contract import Pass, PassContext, PassResult
from optkit.pass_infra.instruments import IRDump, default_instruments
from optkit.pass_infra.manager import PassManager
from optkit.pass_infra.registry import available_passes, get_pass_class
from optkit.pass_infra.spec import build_passes, parse_pass_spec


class PerturbHead(Pass):
    """Claims to be exact but scales the weight of node 'head' (a broken pass)."""

    name = "test-perturb"
    exact = True

    def run(self, model, ctx):
        for t in model.graph.initializer:
            if t.name == "w3":
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.1, "w3"))
        return PassResult(model, True)


class BreakGraph(Pass):
    """Produces an invalid model: a node reads a tensor nobody produces."""

    name = "test-break"

    def run(self, model, ctx):
        model.graph.node[0].input[0] = "no_such_tensor"
        return PassResult(model, True)


class Crash(Pass):
    name = "test-crash"

    def run(self, model, ctx):
        raise ZeroDivisionError("boom")


def test_exact_pass_that_changes_numbers_is_stopped_and_the_node_named():
    with pytest.raises(PassFailedError) as err:
        PassManager([PerturbHead()]).run(small_convnet())
    msg = str(err.value)
    assert "pass 'test-perturb'" in msg and "output 'y' differs" in msg
    assert "Conv node 'head'" in msg  # the first node whose output diverges


def test_pass_that_breaks_validity_is_stopped():
    with pytest.raises(PassFailedError, match=r"pass 'test-break': produced an invalid model.*no_such_tensor"):
        PassManager([BreakGraph()]).run(small_convnet())


def test_pass_that_raises_is_reported_with_its_name():
    with pytest.raises(PassFailedError, match=r"pass 'test-crash': raised ZeroDivisionError: boom"):
        PassManager([Crash()]).run(small_convnet())


def test_records_carry_stats_and_deterministic_dicts(tmp_path):
    model = conv_bn_net(dynamic_batch=False)
    passes = build_passes("fold-bn,eliminate-dead")
    _, recs1 = PassManager(passes, default_instruments(tmp_path / "ir")).run(model, PassContext(seed=5))
    _, recs2 = PassManager(build_passes("fold-bn,eliminate-dead")).run(model, PassContext(seed=5))
    assert [r.as_dict() for r in recs1] == [r.as_dict() for r in recs2]
    assert recs1[0].before.nodes == 13 and recs1[0].after.nodes == 9
    assert recs1[0].seconds > 0 and "seconds" not in recs1[0].as_dict()
    dumped = sorted(p.name for p in (tmp_path / "ir").iterdir())
    assert dumped == ["00-fold-bn.onnx", "01-eliminate-dead.onnx"]
    onnx.checker.check_model(onnx.load(tmp_path / "ir" / dumped[0]))
    assert isinstance(IRDump(tmp_path), IRDump)


def test_pass_spec_parsing_options_and_pipelines():
    assert parse_pass_spec("specialize-input{shape=x:1x3x8x8;m:1x1x8x8},fold-bn") == [
        ("specialize-input", {"shape": "x:1x3x8x8;m:1x1x8x8"}), ("fold-bn", {})]
    assert [n for n, _ in parse_pass_spec("mobile")] == ["fold-bn", "simplify", "eliminate-dead"]
    assert build_passes("simplify{fuse-bn=true}")[0].config == {"fuse-bn": True}


@pytest.mark.parametrize("spec,match", [
    ("fold-bm", r"unknown pass 'fold-bm'; valid passes: .*fold-bn"),
    ("fold-bn{ratio=2}", r"pass 'fold-bn': unknown option\(s\) ratio"),
    ("simplify{fuse-bn}", r"option 'fuse-bn' is not key=value"),
    ("simplify{fuse-bn=1", r"unbalanced"),
    ("simplify,,fold-bn", r"empty entry"),
    ("mobile{x=1}", r"pipeline 'mobile' takes no options"),
])
def test_bad_pass_specs_are_named(spec, match):
    with pytest.raises(OptionError, match=match):
        build_passes(spec)


def test_unknown_pass_lists_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        get_pass_class("nope")
    assert {"fold-bn", "simplify", "eliminate-dead", "specialize-input"} <= set(err.value.valid)


PLUGIN = textwrap.dedent('''
    import numpy as np
    from onnx import numpy_helper
    from optkit.pass_infra.contract import Pass, PassOption, PassResult

    class DoubleThenHalve(Pass):
        """A real (if silly) exact pass: rewrites every float initializer as x*f/f and notes it in the graph."""
        name = "demo-identity"
        exact = True
        summary = "demo plugin pass"
        options = {"factor": PassOption(float, 2.0, "scale")}

        def run(self, model, ctx):
            f = self.config["factor"]
            for t in model.graph.initializer:
                a = numpy_helper.to_array(t)
                if a.dtype == np.float32:
                    t.CopyFrom(numpy_helper.from_array((a * f / f).astype(np.float32), t.name))
            model.graph.doc_string = f"initializers scaled by {f} and back"
            return PassResult(model, True, {"factor": f})
''')


@pytest.fixture
def plugin_dist(tmp_path):
    """A plugin distribution on sys.path: a module plus a .dist-info with an optkit.passes entry point,
    which is exactly what `pip install` of a plugin package leaves behind."""
    (tmp_path / "optkit_demo_plugin.py").write_text(PLUGIN)
    info = tmp_path / "optkit_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: optkit-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[optkit.passes]\ndemo-identity = optkit_demo_plugin:DoubleThenHalve\n")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("optkit_demo_plugin", None)


def test_third_party_pass_registers_through_entry_points(plugin_dist):
    assert available_passes()["demo-identity"] == "optkit_demo_plugin:DoubleThenHalve"
    model = small_convnet()
    out, records = PassManager(build_passes("demo-identity{factor=4},fold-bn")).run(model)
    assert records[0].stats == {"factor": 4.0} and records[0].max_abs_diff is not None
    env = {**os.environ, "PYTHONPATH": f"{plugin_dist}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "optkit.cli", "passes", "list", "--json"], env=env,
                          capture_output=True, text=True, check=True)
    listed = {p["name"]: p for p in json.loads(proc.stdout)["passes"]}
    assert listed["demo-identity"]["origin"] == "optkit_demo_plugin:DoubleThenHalve"
    assert listed["demo-identity"]["options"]["factor"]["default"] == 2.0
    assert listed["fold-bn"]["exact"] is True


def test_manager_output_differs_from_input_object():
    model = small_convnet()
    out, _ = PassManager(build_passes("fold-bn")).run(model)
    assert out is not model
    assert any(n.op_type == "BatchNormalization" for n in model.graph.node)
    np.testing.assert_equal(len(out.graph.node), len(model.graph.node) - 1)
