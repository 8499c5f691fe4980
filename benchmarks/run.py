"""``ihp-rt bench``: export what each backend needs, time every available backend, report."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ihp_rt.benchmarks.latency import (
    BENCH_BACKENDS,
    click_sequence,
    machine,
    run_in_subprocess,
    summarise,
    unavailable,
)
from ihp_rt.benchmarks.report import chart, markdown
from ihp_rt.errors import InputError
from ihp_rt.model import Checkpoint, save_checkpoint

# Where a person clicks first on the example photo: hair, face, suit, suit, glove, background x2.
EXAMPLE_POINTS = [(225, 40), (225, 125), (90, 330), (320, 300), (135, 497), (40, 150), (470, 230)]


def first_clicks(num_classes: int) -> list[tuple[int, int, int]]:
    """The example points with labels valid for any label set (parts first, background last)."""
    parts = len(EXAMPLE_POINTS) - 2
    return [(x, y, 1 + i % (num_classes - 1) if i < parts else 0) for i, (x, y) in enumerate(EXAMPLE_POINTS)]


def model_files(checkpoint: Checkpoint, names: list[str], models: Path, calibration: list | None,
                calibration_method: str = "percentile") -> dict[str, Path]:
    """The model in every form the chosen backends open, in ``models``: .pt, .onnx, INT8 .onnx, FP16 .onnx."""
    from ihp_rt.export import export_onnx

    files = {"pt": save_checkpoint(models / "model.pt", checkpoint.model, checkpoint.spec)}
    kinds = {BENCH_BACKENDS[n][3] for n in names}
    if kinds & {"onnx", "onnx-int8"}:
        files["onnx"] = export_onnx(checkpoint, models / "model.onnx")
    if "onnx-fp16" in kinds:
        files["onnx-fp16"] = export_onnx(checkpoint, models / "model_fp16.onnx", precision="fp16")
    if "onnx-int8" in kinds:
        from ihp_rt.export.quantize import calibration_inputs, quantize_int8

        if not calibration:
            raise InputError("onnxruntime-int8 needs calibration samples (--calibration DATA)")
        files["onnx-int8"] = quantize_int8(files["onnx"], models / "model_int8.onnx",
                                           calibration_inputs(calibration, checkpoint.spec), calibration_method)
    return files


def run_benchmark(checkpoint: Checkpoint, model_label: str, names: list[str], out: Path, image_path: Path,
                  clicks: int = 60, warmup: int = 5, clicks_per_image: int = 20, threads: int | None = None,
                  calibration: list | None = None, rounds: int = 3, calibration_method: str = "percentile",
                  progress=print, also: list[tuple[Checkpoint, str]] = ()) -> dict:
    """Time every backend in ``names`` on the same click sequence, for the model and those in ``also``.

    The timed clicks are split into ``rounds`` and the (model, backend) pairs take turns, round by
    round, each round in a fresh process: on a shared machine the load drifts over minutes, and
    taking turns spreads that drift over all of them instead of charging it to whichever ran
    during it. That is also why models are compared in one run rather than in two.
    """
    if rounds < 1 or clicks < rounds:
        raise InputError(f"need at least one timed click per round (clicks {clicks}, rounds {rounds})")
    unknown = [n for n in names if n not in BENCH_BACKENDS]
    if unknown:
        raise InputError(f"unknown benchmark backend(s) {', '.join(unknown)}; known: {', '.join(BENCH_BACKENDS)}")
    models = [(checkpoint, model_label), *also]
    if len({label for _, label in models}) != len(models):
        raise InputError("compared models need distinct labels")
    skipped = {n: why for n in names if (why := unavailable(n))}
    runnable = [n for n in names if n not in skipped]
    out.mkdir(parents=True, exist_ok=True)
    files = [model_files(ckpt, runnable, out / "models" / (f"model_{i}" if i else ""), calibration, calibration_method)
             for i, (ckpt, _) in enumerate(models)]
    from ihp_rt.images import read_image

    image = read_image(image_path)
    sequences = [click_sequence(image, first_clicks(ckpt.spec.num_classes), clicks + warmup) for ckpt, _ in models]
    pairs = [(i, name) for i in range(len(models)) for name in runnable]
    raw: dict[tuple[int, str], list[dict]] = {pair: [] for pair in pairs}
    errors: dict[tuple[int, str], str] = {}
    offset = warmup
    for round_index in range(rounds):
        timed = clicks // rounds + (round_index < clicks % rounds)
        for i, name in pairs:
            if (i, name) in errors:
                continue
            # each round: the warm-up clicks, then its own slice of the timed clicks
            clicks_of_round = sequences[i][:warmup] + sequences[i][offset:offset + timed]
            started = time.perf_counter()
            result = run_in_subprocess(name, str(files[i][BENCH_BACKENDS[name][3]]), str(image_path),
                                       clicks_of_round, warmup, clicks_per_image, threads)
            who = f"{models[i][1]}: {name}" if also else name
            if "error" in result:
                errors[(i, name)] = result["error"]
                progress(f"{who}: {result['error']}")
                continue
            raw[(i, name)].append(result)
            progress(f"{who} round {round_index + 1}/{rounds}: p50 {np.median(result['totals_ms']):.1f} ms "
                     f"({time.perf_counter() - started:.0f} s)")
        offset += timed
    results = [{"model": models[i][1], **({"backend": name, "error": errors[(i, name)]} if (i, name) in errors
                                          else summarise(raw[(i, name)]))} for i, name in pairs]
    report = {"model": model_label, "models": [label for _, label in models], "size": checkpoint.spec.input_size,
              "backbone": checkpoint.spec.backbone, "clicks_timed": clicks, "warmup": warmup,
              "clicks_per_image": clicks_per_image, "rounds": rounds, "machine": machine(), "results": results,
              "skipped": skipped}
    (out / "bench.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "bench.md").write_text(markdown(report))
    chart(report, out / "bench.png")
    return report
