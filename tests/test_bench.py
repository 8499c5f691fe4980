"""The benchmark harness keeps working: run it on a tiny model for a few clicks and check the
report's structure and sanity (never its times)."""

import json

import numpy as np
import pytest
from PIL import Image

from ihp_rt.benchmarks.run import run_benchmark
from ihp_rt.data import Sample

from .conftest import EXAMPLES


def test_bench_reports_every_backend(tiny_checkpoint, tmp_path) -> None:
    labels = np.zeros((96, 64), np.uint8)
    labels[10:40, 10:50] = 2
    labels[40:90, 5:60] = 5
    calibration = [Sample("c", np.full((96, 64, 3), 120, np.uint8), labels)]
    names = ["torch", "onnxruntime", "onnxruntime-int8", "tensorrt"]
    run_benchmark(tiny_checkpoint, "tiny", names, tmp_path, EXAMPLES / "astronaut.jpg", clicks=4, warmup=1,
                           clicks_per_image=3, calibration=calibration, calibration_method="minmax",
                           progress=lambda _: None)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["model"] == "tiny" and saved["machine"]["cores"] >= 1 and saved["machine"]["torch"]
    ran = {r["backend"]: r for r in saved["results"]}
    assert set(ran) | set(saved["skipped"]) == set(names)
    for name in ("torch", "onnxruntime", "onnxruntime-int8"):
        r = ran[name]
        assert "error" not in r, r
        assert r["clicks_timed"] == 4 and r["rounds"] == 3 and len(r["round_p50_ms"]) == 3
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        stages = r["stages_median_ms"]
        assert all(v >= 0 for v in stages.values())
        assert stages["network_ms"] < 1.5 * r["p95_ms"]
        assert r["peak_rss_mb"] >= r["rss_before_open_mb"] > 0
        assert r["set_image_median_ms"] > 0
    assert ran["onnxruntime-int8"]["engine"].startswith("onnxruntime-cpu")
    if "tensorrt" in saved["skipped"]:
        assert saved["skipped"]["tensorrt"]  # says why
    md = (tmp_path / "bench.md").read_text()
    assert "| onnxruntime-int8 |" in md and "20 ms per image" in md
    with Image.open(tmp_path / "bench.png") as im:
        assert im.size[0] > 300


def test_bench_compares_models_side_by_side_in_one_run(tiny_checkpoint, tmp_path) -> None:
    """Several models take turns round by round; each row names its model and the table gives
    each model's p50 against the first model's on the same backend."""
    from ihp_rt.errors import InputError
    from ihp_rt.model import Checkpoint, build_model, default_spec

    spec = default_spec(tiny_checkpoint.spec.labels, "efficientnet_lite0", input_size=tiny_checkpoint.spec.input_size)
    other = Checkpoint(build_model(spec, seed=0).eval(), spec)
    order = []
    run_benchmark(tiny_checkpoint, "old", ["onnxruntime"], tmp_path, EXAMPLES / "astronaut.jpg", clicks=2,
                  warmup=1, clicks_per_image=2, rounds=2, progress=order.append, also=[(other, "new")])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["models"] == ["old", "new"]
    assert [(r["model"], r["backend"]) for r in saved["results"]] == [("old", "onnxruntime"), ("new", "onnxruntime")]
    assert all(r["clicks_timed"] == 2 and r["rounds"] == 2 for r in saved["results"])
    assert [line.split(" round")[0] for line in order] == ["old: onnxruntime", "new: onnxruntime"] * 2  # turns
    md = (tmp_path / "bench.md").read_text()
    new_row = next(line for line in md.splitlines() if line.startswith("| new | onnxruntime |"))
    ratio = saved["results"][1]["p50_ms"] / saved["results"][0]["p50_ms"]
    assert new_row.rstrip(" |").endswith(f"{ratio:.2f}x")
    with pytest.raises(InputError, match="distinct labels"):
        run_benchmark(tiny_checkpoint, "same", ["onnxruntime"], tmp_path, EXAMPLES / "astronaut.jpg", clicks=3,
                      also=[(other, "same")])


def test_bench_times_network_clicks_and_corrections_apart(tmp_path) -> None:
    """With a correction head, the report gives network clicks and corrections their own p50/p95
    (and their ratio), counted from what each click really ran."""
    import torch

    from ihp_rt.labels import get_label_set
    from ihp_rt.model import Checkpoint, build_model
    from ihp_rt.spec import ModelSpec

    spec = ModelSpec(labels=get_label_set("lip"), backbone="mobilenetv3_large", input_size=96, correction_head=True)
    model = build_model(spec, seed=0).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.correction.out.weight, std=0.05)
    run_benchmark(Checkpoint(model, spec), "head", ["onnxruntime"], tmp_path, EXAMPLES / "astronaut.jpg", clicks=14,
                  warmup=1, clicks_per_image=15, rounds=1, progress=lambda _: None)
    result = json.loads((tmp_path / "bench.json").read_text())["results"][0]
    kinds = result["by_kind"]
    assert kinds["network"]["clicks"] >= 1 and kinds["correction"]["clicks"] >= 1
    assert kinds["network"]["clicks"] + kinds["correction"]["clicks"] <= result["clicks_timed"] == 14
    for figures in kinds.values():
        assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    row = next(line for line in (tmp_path / "bench.md").read_text().splitlines()
               if line.startswith("| onnxruntime | ") and line.count("|") == 9)
    assert row.rstrip(" |").endswith(f"{kinds['correction']['p50_ms'] / kinds['network']['p50_ms']:.2f}")
