"""The training-speed benchmark's loader measurement: it times the recipe's own samples."""

import json

import yaml

from ihp_rt.benchmarks.train_speed import main
from ihp_rt.data.synthetic import write_folder_layout


def test_loader_costs_are_measured_per_batch_of_the_recipe(tmp_path) -> None:
    data = write_folder_layout(tmp_path / "data", 6, seed=0, height=96, width=72)
    recipe = {"data": str(data), "label_mapping": None, "backbone": "efficientnet_lite0", "input_size": 96,
              "crop": [64, 48], "batch_size": 2}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    args = ["--only", "--loader-config", str(tmp_path / "recipe.yaml"), "--loader-batches", "4", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "train_speed.json").read_text())
    loader = report["loader"]
    assert report["rows"] == [] and loader["batch_size"] == 2
    assert loader["photos"] == 6  # 4 batches of 2 asked, the data set has only 6 photos
    # A sample is decoded and then augmented, clicked and encoded: it must cost more than decoding.
    assert 0 < loader["decode_ms_per_batch"] < loader["sample_ms_per_batch"]
    assert "Data loading per batch of 2" in (out / "train_speed.md").read_text()


def test_bfloat16_variants_are_not_timed_where_the_trainer_would_run_float32(tmp_path, monkeypatch) -> None:
    """Without native bfloat16 the trainer falls back to float32: a 'bf16' row would time float32."""
    monkeypatch.setattr("ihp_rt.training.trainer.bf16_autocast", lambda cfg: False)
    out = tmp_path / "out"
    assert main(["--only", "mbv3 bf16", "lite0 bf16", "--loader-batches", "0", "--out", str(out)]) == 0
    report = json.loads((out / "train_speed.json").read_text())
    assert report["rows"] == [] and report["not_run_no_native_bf16"] == ["mbv3 bf16", "lite0 bf16"]
    assert "Not run, this CPU has no native bfloat16: mbv3 bf16, lite0 bf16." in (out / "train_speed.md").read_text()
