"""Per-click latency and memory of every backend, each measured in its own process.

``ihp-rt bench`` (or ``python -m ihp_rt.benchmarks.latency``) times the per-click step -- encode
the clicks, run the network, arg-max, copy the mask back, map it to the photo -- over a
realistic click sequence: the example's labelled clicks, then correction-like clicks, starting
a new image every ``clicks_per_image`` clicks (that once-per-image cost is timed separately and
never lands in a per-click figure). A click is a network click (a part named for the first time),
a correction (ihp_rt.correction: no network pass) or neither (its pixel already showed its label);
the first two are summarised apart as well as together. Each backend runs in a fresh
process so its peak memory is its own. Absolute times on shared CPUs are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ihp_rt.benchmarks.encoding import cpu_name

BENCH_BACKENDS = {
    # name: (session backend, device, half, which model file)
    "torch": ("torch", "cpu", False, "pt"),
    "onnxruntime": ("onnxruntime", "cpu", False, "onnx"),
    "onnxruntime-int8": ("onnxruntime", "cpu", False, "onnx-int8"),
    "torch-cuda": ("torch", "cuda", False, "pt"),
    "torch-cuda-fp16": ("torch", "cuda", True, "pt"),
    "onnxruntime-cuda": ("onnxruntime", "cuda", False, "onnx"),
    "tensorrt": ("tensorrt", None, False, "onnx-fp16"),
}


def unavailable(name: str) -> str | None:
    """Why a benchmark backend cannot run here (None when it can)."""
    import importlib.util

    if name.startswith("torch-cuda"):
        import torch

        return None if torch.cuda.is_available() else "PyTorch has no CUDA device here"
    if name == "onnxruntime-cuda":
        import onnxruntime

        ok = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        return None if ok else "onnxruntime has no CUDAExecutionProvider here"
    if name == "tensorrt":
        from ihp_rt.backends import _tensorrt_usable

        return _tensorrt_usable()
    return None if importlib.util.find_spec("torch") else "torch is not installed"


def click_sequence(image: np.ndarray, first: list[tuple[int, int, int]], count: int,
                   seed: int = 0) -> list[tuple[int, int, int]]:
    """The given clicks, then clicks anywhere labelled with the classes those named (as corrections
    land anywhere, and correct the parts already named or the background)."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    labels = sorted({label for _, _, label in first})
    extra = [(int(rng.integers(w)), int(rng.integers(h)), int(rng.choice(labels))) for _ in range(count)]
    return (first + extra)[:count]


def peak_rss_mb() -> float:
    """Peak resident memory of this process. /proc's VmHWM belongs to the process image itself;
    getrusage's ru_maxrss survives execve, so a worker would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gpu_memory_mb(backend_name: str) -> float | None:
    """Device memory the process holds: the framework's own counter where it has one."""
    if backend_name.startswith("torch-cuda"):
        import torch

        return torch.cuda.max_memory_reserved() / 2**20
    if backend_name == "tensorrt":
        import cupy as cp

        free, total = cp.cuda.runtime.memGetInfo()
        return (total - free) / 2**20  # whole device in use, as nvidia-smi reports it
    return None


def measure(name: str, model: str, image: np.ndarray, clicks: list[tuple[int, int, int]], warmup: int,
            clicks_per_image: int, threads: int | None) -> dict:
    """Run one backend in this process; every per-click figure, raw (see :func:`summarise`)."""
    from ihp_rt.session import Session

    backend, device, half, _ = BENCH_BACKENDS[name]
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    session = Session.open(model, backend=backend, device=device, threads=threads, half=half)
    open_ms = (time.perf_counter() - t0) * 1e3
    set_image_ms, totals, stages = [], [], {"encode_ms": [], "network_ms": [], "download_ms": [], "map_back_ms": []}
    kinds = []  # per timed click: "network", "correction" or "unchanged" (neither was needed)

    def timed_set_image() -> float:
        t0 = time.perf_counter()
        session.set_image(image)
        return (time.perf_counter() - t0) * 1e3

    for i, (x, y, label) in enumerate(clicks):
        if i % clicks_per_image == 0:
            load_ms = timed_set_image()
            if i >= warmup:  # the first load of a fresh process is cold, like its first clicks
                set_image_ms.append(load_ms)
        session.add_click(x, y, label)
        pred = session.predict()
        if i < warmup:
            continue
        totals.append(pred.latency_ms)
        kinds.append("network" if pred.network_passes else "correction" if pred.corrections_run else "unchanged")
        if pred.network_passes:  # the stages of the network pass; a correction has none of them
            timings = session.backend.timings
            for key in ("encode_ms", "network_ms", "download_ms"):
                stages[key].append(timings[key])
            stages["map_back_ms"].append(pred.latency_ms - sum(timings.values()))
    if not set_image_ms:  # too few clicks for an image change after the warm-up: time one now, warm
        set_image_ms.append(timed_set_image())
    return {
        "backend": name, "engine": session.backend.name, "totals_ms": totals, "kinds": kinds, "stages_ms": stages,
        "set_image_ms": set_image_ms, "open_ms": open_ms, "peak_rss_mb": peak_rss_mb(),
        "rss_before_open_mb": rss_before, "gpu_memory_mb": gpu_memory_mb(name),
    }


def summarise(rounds: list[dict]) -> dict:
    """One backend's figures over all its rounds (each a separate process): percentiles of every
    timed click together, stage medians, the largest memory peak."""
    totals = [t for r in rounds for t in r["totals_ms"]]
    q = np.percentile(totals, [50, 95, 99])
    first = rounds[0]
    by_kind = {}
    for kind in ("network", "correction"):
        times = [t for r in rounds for t, k in zip(r["totals_ms"], r["kinds"], strict=True) if k == kind]
        by_kind[kind] = {"clicks": len(times), **({"p50_ms": float(np.percentile(times, 50)),
                                                   "p95_ms": float(np.percentile(times, 95))} if times else {})}
    return {
        "backend": first["backend"], "engine": first["engine"], "rounds": len(rounds), "clicks_timed": len(totals),
        "p50_ms": q[0], "p95_ms": q[1], "p99_ms": q[2], "mean_ms": float(np.mean(totals)), "by_kind": by_kind,
        "round_p50_ms": [float(np.median(r["totals_ms"])) for r in rounds],
        "stages_median_ms": {k: _median([v for r in rounds for v in r["stages_ms"][k]]) for k in first["stages_ms"]},
        "set_image_median_ms": statistics.median(v for r in rounds for v in r["set_image_ms"]),
        "open_ms": statistics.median(r["open_ms"] for r in rounds),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "rss_before_open_mb": max(r["rss_before_open_mb"] for r in rounds),
        "gpu_memory_mb": max((r["gpu_memory_mb"] for r in rounds if r["gpu_memory_mb"] is not None), default=None),
    }


def _median(values: list[float]) -> float:
    """The median, NaN when no timed click ran the network (only corrections were timed)."""
    return statistics.median(values) if values else float("nan")


def machine() -> dict:
    """CPU, cores, GPU and library versions: a figure means nothing without them."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count(),
            "cpu": cpu_name()}
    for module in ("torch", "onnxruntime", "numpy", "cv2", "cupy", "tensorrt"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    try:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info


def run_in_subprocess(name: str, model: str, image_path: str, clicks: list, warmup: int, clicks_per_image: int,
                      threads: int | None, timeout: float = 1800) -> dict:
    job = {"name": name, "model": model, "image": image_path, "clicks": clicks, "warmup": warmup,
           "clicks_per_image": clicks_per_image, "threads": threads}
    result = subprocess.run([sys.executable, "-m", "ihp_rt.benchmarks.latency", json.dumps(job)],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        return {"backend": name, "error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _worker(job: dict) -> None:
    from ihp_rt.images import read_image

    figures = measure(job["name"], job["model"], read_image(job["image"]), [tuple(c) for c in job["clicks"]],
                      job["warmup"], job["clicks_per_image"], job["threads"])
    print(json.dumps(figures, default=float))


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
