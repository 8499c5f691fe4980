"""The benchmark harness keeps working: run it on a tiny model for a few clicks and check the
report's structure and sanity (never its times)."""

import json

import numpy as np
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
