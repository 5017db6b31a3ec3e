import os
import sys
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import graphs  # noqa: E402


@pytest.fixture
def save(tmp_path):
    """Save a model into tmp_path and return its path."""

    def _save(model: onnx.ModelProto, name: str = "model.onnx") -> Path:
        path = tmp_path / name
        path.write_bytes(model.SerializeToString())
        return path

    return _save


@pytest.fixture
def small_model(save):
    return save(graphs.small_convnet(), "small.onnx")


def emulation_required() -> bool:
    """In CI (CI=true) or with OPTKIT_REQUIRE_EMULATION=1 a missing sysroot fails the emulation tests."""
    return os.environ.get("OPTKIT_REQUIRE_EMULATION") == "1" or bool(os.environ.get("CI"))


@pytest.fixture
def sysroot_ready():
    """Skips an emulation test without the AArch64 sysroot (fails it where emulation is required)."""
    from optkit.backend.runtime.emulation import sysroot_path

    if not (sysroot_path() / ".complete").exists():
        if emulation_required():
            pytest.fail(f"OPTKIT_REQUIRE_EMULATION=1 but no sysroot at {sysroot_path()} (optkit emulator setup)")
        pytest.skip(f"no AArch64 sysroot at {sysroot_path()}; run `optkit emulator setup`")


EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "optkit-example-plugin"


@pytest.fixture(scope="session")
def example_plugin_env(tmp_path_factory) -> dict[str, str]:
    """examples/optkit-example-plugin installed the way a user installs it (a real wheel build with its entry
    points, offline) into a private folder; the environment that puts it on the path."""
    import subprocess

    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(EXAMPLE_PLUGIN)], check=True, timeout=300,
                   cwd=tmp_path_factory.mktemp("build"))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}
