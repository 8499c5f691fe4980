"""The prepared GPU check (scripts/gpu_check.sh, benchmarks/gpu_check.py) on a machine without a GPU:
it must say so, exit 0 and write nothing; its time bounds, its report and the CUDA-graph encoder
are checked here too, so the one run on a lent GPU is not where their bugs are found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ihp_rt.benchmarks import gpu_check
from ihp_rt.benchmarks.cuda_graph import GraphedClickStep, encode_padded
from ihp_rt.encoding import encode_reference

from .conftest import random_clicks

REPO = Path(__file__).resolve().parents[1]


def test_without_a_gpu_the_script_says_so_exits_0_and_writes_nothing(tmp_path) -> None:
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path / "tmp"),
           "IHP_GPU_CHECK_OUT": str(tmp_path / "results"), "OUT": str(tmp_path / "device_out")}
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                            env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gpu_check: no CUDA GPU here (" in result.stdout  # printed by the staged module: staging worked
    assert "nothing was measured and nothing was written" in result.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "device_out").exists()
    assert list((tmp_path / "tmp").iterdir()) == []  # the staging folder is gone...
    assert (REPO / "export" / "to_onnx.py").is_file() and (REPO / "ihp_rt" / "session.py").is_file()  # not its links


def test_staged_package_has_every_mapped_subpackage(tmp_path) -> None:
    """The staging in the script follows pyproject's package-dir, so ihp_rt.export and
    ihp_rt.benchmarks import from it exactly as from an installed copy."""
    script = (REPO / "scripts" / "gpu_check.sh").read_text()
    stage_code = script.split("<<'PY'", 1)[1].split("\nPY\n", 1)[0].split("\n", 1)[1]
    stage = tmp_path / "stage"
    stage.mkdir()
    subprocess.run([sys.executable, "-c", stage_code, str(REPO), str(stage)], check=True, timeout=60)
    probe = ("import ihp_rt.export.to_tensorrt, ihp_rt.benchmarks.gpu_check, ihp_rt.encoding; "
             "print(ihp_rt.benchmarks.gpu_check.__file__)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=stage,
                            env={**os.environ, "PYTHONPATH": str(stage)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(stage / "ihp_rt" / "benchmarks" / "gpu_check.py")


def test_a_section_past_its_time_is_killed_with_its_children(tmp_path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = ("import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    with (tmp_path / "log").open("w") as log:
        started = time.monotonic()
        exit_code, seconds = gpu_check.run_bounded([sys.executable, "-c", code], 2.0, log)
    assert exit_code is None and seconds < 10 and time.monotonic() - started < 10
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")
    time.sleep(0.2)
    # the benchmark worker a section started dies with it (gone, or a zombie nobody has reaped yet)
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_every_section_runs_and_the_summary_is_written_after_each_one() -> None:
    written: list[dict] = []

    def run_one(name: str, seconds: float) -> dict:
        if name == "slow":
            time.sleep(1.2)
            return {"status": "ok"}
        if name == "broken":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return {"status": "timeout", "error": "killed after 9 s"}

    sections = [("broken", 60), ("timed_out", 60), ("slow", 60), ("late", 60)]
    summary = gpu_check.run_all(sections, run_one, gpu_check.MIN_SECTION_S + 1.0,
                                lambda s: written.append(json.loads(json.dumps(s))), progress=lambda _: None)
    statuses = {name: r["status"] for name, r in summary["sections"].items()}
    assert statuses == {"broken": "failed", "timed_out": "timeout", "slow": "ok", "late": "skipped"}
    assert "illegal memory access" in summary["sections"]["broken"]["error"]
    assert "out of time" in summary["sections"]["late"]["reason"]
    assert [len(s["sections"]) for s in written] == [1, 2, 3, 4, 4]  # on disk after every section
    assert summary["ok"] is False


def test_report_compares_with_the_paper_and_tolerates_missing_sections() -> None:
    row = {"backend": "torch-cuda-fp16", "engine": "torch-cuda-fp16", "p50_ms": 5.0, "p95_ms": 6.0, "p99_ms": 7.5,
           "gpu_memory_mb": 449.75, "p50_vs_paper": 0.25, "gpu_mb_vs_paper": 449.75 / 1799}
    summary = {"sections": {
        "environment": {"status": "ok", "gpu": "NVIDIA H200", "gpu_memory_gib": 139.8, "cuda": "13.0", "seconds": 4},
        "gpu_tests": {"status": "ok", "tests": 6, "passed": 6, "failed": 0, "skipped": 0,
                      "files": ["test_encoding_cuda.py"]},
        "parity": {"status": "ok", "inputs": 4, "fp32": {"worst": 1.0, "mean": 1.0},
                   "fp16": {"worst": 0.9951, "mean": 0.998}},
        "bench_paper": {"status": "ok", "rows": [row, {"backend": "torch-cuda", "error": "CUDA out of memory"}]},
        "cuda_graph": {"status": "ok", "max_clicks": 32, "runs": [{"precision": "fp32", "agreement": 1.0, "variants": [
            {"name": "same step, CUDA graph", "p50_ms": 2.0, "p95_ms": 2.5, "p99_ms": 3.0, "speedup": 2.5}]}]},
        "training": {"status": "timeout", "error": "killed after 130 s"}}}
    text = gpu_check.markdown(summary)
    assert "| paper ResNet-101 | torch-cuda-fp16 | 5.00 | 6.00 | 7.50 | 450 | 0.25x | 0.25x |" in text
    assert "| paper ResNet-101 | torch-cuda | failed: CUDA out of memory |" in text
    assert "paper: 20 ms and 1799 MB" in text
    assert "torch-cuda fp16: 99.510 % / 99.800 % (needs >= 95.0 %)" in text
    assert "| fp32 | same step, CUDA graph | 2.00 | 2.50 | 3.00 | 2.50x | 100.000 % |" in text
    assert "| training | timeout | - | killed after 130 s |" in text
    assert gpu_check.markdown({"sections": {}}).startswith("# GPU check")


@pytest.mark.parametrize(("h", "w", "c", "k", "cap"), [(1, 1, 1, 0, 255), (7, 300, 3, 5, 255), (96, 96, 20, 32, 255),
                                                       (300, 517, 7, 20, 1000), (64, 64, 11, 9, 16)])
def test_graph_encoder_matches_the_reference_with_padding(h, w, c, k, cap) -> None:
    clicks = random_clicks(np.random.default_rng(h * w + k), k, c, h, w)
    padded = np.full((32, 3), -1, np.int32)
    padded[:k] = clicks
    padded[k:, :2] = [w - 1, h - 1]  # padding rows that would win if their label were read
    out = torch.full((c, h, w), -5.0)
    encode_padded(torch.from_numpy(padded), c, h, w, cap, out)
    assert np.array_equal(out.numpy(), encode_reference(clicks, c, h, w, cap))


@pytest.mark.gpu
def test_graphed_click_step_matches_the_torch_backend(tiny_checkpoint, rng) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from ihp_rt.backends.torch_backend import TorchBackend

    backend = TorchBackend(tiny_checkpoint, "cuda")
    spec = tiny_checkpoint.spec
    graphed = GraphedClickStep(backend.model, spec.num_classes, spec.input_size, spec.cap, backend.dtype, 16)
    image = rng.standard_normal((3, spec.input_size, spec.input_size)).astype(np.float32)
    backend.set_image(image)
    graphed.set_image(image)
    for k in (1, 7, 16):
        clicks = random_clicks(rng, k, spec.num_classes, spec.input_size, spec.input_size)
        expected = backend.predict(clicks).labels
        assert (graphed.predict(clicks) == expected).mean() >= 0.999
        assert (graphed.predict_eager(clicks) == expected).mean() >= 0.999
    with pytest.raises(ValueError, match="at most 16 clicks"):
        graphed.predict(random_clicks(rng, 17, spec.num_classes, spec.input_size, spec.input_size))
