"""The recipe sweep: arms train at equal steps, get evaluated, resume, and refuse a changed recipe."""

import json

import pytest
import yaml

from ihp_rt.benchmarks.recipes import main
from ihp_rt.data.synthetic import write_folder_layout
from ihp_rt.errors import InputError


@pytest.mark.slow
def test_sweep_trains_evaluates_reports_and_refuses_a_changed_arm(tmp_path) -> None:
    data = write_folder_layout(tmp_path / "data", 8, seed=0, height=96, width=72)
    base = {"data": str(data), "label_mapping": None, "val_count": 2, "backbone": "mobilenetv3_large",
            "input_size": 96, "crop": [64, 48], "batch_size": 2, "optimizer": "adamw", "lr": 2e-3, "workers": 0,
            "bn_recalibration_batches": 1}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {"base": str(tmp_path / "base.yaml"), "baseline": "a", "corrections": 2,
             "arms": [{"name": "a", "note": "balanced", "steps": 2, "set": {}},
                      {"name": "b", "note": "plain", "steps": 2, "set": {"ce_weighting": "plain"}},
                      {"name": "c", "note": "timed", "minutes": 0.001, "set": {}}]}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    args = [str(tmp_path / "sweep.yaml"), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "recipes.json").read_text())
    assert [r["name"] for r in report["arms"]] == ["a", "b", "c"]
    assert all(len(r["miou"]) == 3 and r["images"] == 2 for r in report["arms"])
    assert [r["steps"] for r in report["arms"][:2]] == [2, 2]
    # A timed arm stops at its wall budget (a few steps at most here), and is still finished.
    assert 1 <= report["arms"][2]["steps"] < 10
    table = (tmp_path / "out" / "recipes.md").read_text()
    assert "| b | plain | 2 |" in table and "| c | timed |" in table and "points against `a`" in table
    assert (tmp_path / "out" / "recipes.png").stat().st_size > 1000
    # A finished arm is reused, not retrained: its evaluation file stays untouched.
    stamp = (tmp_path / "runs" / "a" / "eval.json").stat().st_mtime_ns
    assert main([*args, "--arms", "a"]) == 0
    assert (tmp_path / "runs" / "a" / "eval.json").stat().st_mtime_ns == stamp
    # An arm whose definition changed must not be reported from the old run.
    sweep["arms"][0]["set"] = {"ce_weighting": "sqrt_balanced"}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    with pytest.raises(InputError, match="another recipe"):
        main([*args, "--arms", "a"])


def test_a_run_saved_before_an_option_existed_keeps_its_recipe() -> None:
    from ihp_rt.benchmarks.recipes import _recipe
    from ihp_rt.training.config import TrainConfig

    saved = TrainConfig().to_dict()
    del saved["init_from"]  # written before init_from existed: it trained from scratch, the default
    assert _recipe(saved) == _recipe(TrainConfig().to_dict())
    assert _recipe(saved) != _recipe(TrainConfig(init_from="runs/x/last.pt").to_dict())
