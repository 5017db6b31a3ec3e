"""budgets.toml: the built-in file is complete and valid; a bad file is named with the key at fault."""

import pytest
from optkit.reference_models.catalog import TASKS

from optkit.core.errors import OptionError
from optkit.harness.budgets import load_budgets


def test_builtin_budgets_cover_every_reference_model_with_seed_numbers():
    budgets, tolerance = load_budgets()
    assert set(budgets) == set(TASKS)
    assert budgets["parsing"].latency_ms_max["snapdragon625"] == 40.0
    assert budgets["gesture"].latency_ms_max["ios-arm64"] == 17.0
    assert budgets["pose"].latency_ms_max == {"snapdragon845": 11.0, "rk3399": 66.0, "host": 55.0}
    assert budgets["parsing"].size_mb_max == 0.5 and budgets["pose"].size_mb_max == 2.5
    assert all("host" in b.latency_ms_max for b in budgets.values())
    assert tolerance.metric > 0 and tolerance.latency > 0


@pytest.mark.parametrize("text, message", [
    ('[nosuch]\npipeline = "mobile"\n', r"\[nosuch\]: not a reference model"),
    ('[face]\nmetric_max = 0.1\n', r"\[face\]: missing 'pipeline'"),
    ('[face]\npipeline = "mobile"\nmetric_min = 0.1\n', r"NME is lower-is-better; use metric_max"),
    ('[face]\npipeline = "mobile"\n[face.latency_ms_max]\nmars = 3\n', r"unknown target\(s\) mars"),
    ('[face]\npipeline = "mobile"\nlatncy = 3\n', r"unknown key\(s\) latncy"),
    ('[face\n', r"budgets file .*bad.toml"),
])
def test_bad_budget_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(OptionError, match=message):
        load_budgets(path)
