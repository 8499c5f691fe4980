"""Seconds per training step of recipe variants: ``python -m ihp_rt.benchmarks.train_speed``.

Each variant is configs/ccp_mbv3_v1.yaml (the first shipped recipe) plus a few options, trained
for ``--steps`` steps on the real data in a fresh folder; the first ``--skip`` steps (start-up,
oneDNN kernel choice) are not counted. Variants run one after another in this process, so run it
on an otherwise idle machine: a neighbour on 2 cores slows a step 1.5-8x. Writes train_speed.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import warnings
from pathlib import Path

LITE = {"backbone": "efficientnet_lite0", "pretrained": True, "lr": 0.001, "ce_weighting": "plain"}
VARIANTS: dict[str, dict] = {
    "mbv3 fp32 (first shipped recipe)": {},
    "mbv3 bf16": {"autocast_bf16": True},
    "lite0 fp32": LITE,
    "lite0 bf16": {**LITE, "autocast_bf16": True},
    "lite0 bf16, no SP-loss": {**LITE, "autocast_bf16": True, "sp_lambda": 0.0},
    "lite0 bf16, loader in the main process": {**LITE, "autocast_bf16": True, "workers": 0},
    "lite0 bf16, map branch": {**LITE, "autocast_bf16": True, "map_entry": "branch"},
}


def seconds_per_step(base: Path, overrides: dict, steps: int, skip: int) -> float:
    from ihp_rt.training.config import TrainConfig
    from ihp_rt.training.trainer import train

    out = Path(tempfile.mkdtemp(prefix="ihp-speed-"))
    try:
        values = TrainConfig.from_yaml(base).to_dict()
        values.update(overrides)
        values.update(out=str(out), steps=steps, time_limit_min=None, checkpoint_every=10**6,
                      bn_recalibration_batches=1)
        train(TrainConfig.from_dict(values), progress=False)
        with (out / "log.csv").open() as f:
            seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
        # The log keeps tenths of a second: the mean over the counted steps resolves what one step's
        # difference cannot.
        return (seconds[-1] - seconds[skip]) / (len(seconds) - 1 - skip)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def loader_milliseconds(config: Path, batches: int) -> dict:
    """What the data loader does per batch of ``config``'s recipe, on one thread: decoding the photos
    and label maps (all that a cache of decoded photos could save) and the whole sample (decoding,
    augmentation, training clicks, click maps). Compared with a training step, this says how much a
    photo cache or more loader workers could buy before either is built."""
    import time

    import torch

    from ihp_rt.data.folder import FolderDataset
    from ihp_rt.labels import get_label_mapping
    from ihp_rt.model import default_spec
    from ihp_rt.training.config import TrainConfig
    from ihp_rt.training.dataset import Augment, ClickTrainingSet

    cfg = TrainConfig.from_yaml(config)
    torch.set_num_threads(1)
    folder = FolderDataset(cfg.data, get_label_mapping(cfg.label_mapping) if cfg.label_mapping else None)
    spec = default_spec(folder.label_set, cfg.backbone, input_size=cfg.input_size)
    samples = ClickTrainingSet(folder, spec, Augment(cfg.crop, cfg.scale, cfg.flip), cfg.strategy,
                               cfg.extra_clicks, cfg.d_margin, cfg.seed)
    count = min(batches * cfg.batch_size, len(folder))
    samples[0]  # imports and first-call set-up are not the loader's steady cost

    def per_batch(read) -> float:
        started = time.perf_counter()
        for index in range(count):
            read(index)
        return (time.perf_counter() - started) / count * cfg.batch_size * 1e3

    return {"config": str(config), "photos": count, "batch_size": cfg.batch_size,
            "decode_ms_per_batch": per_batch(folder.__getitem__), "sample_ms_per_batch": per_batch(samples.__getitem__)}


def main(argv: list[str] | None = None) -> int:
    from ihp_rt.benchmarks.latency import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/ccp_mbv3_v1.yaml"))
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--skip", type=int, default=6, help="first steps not counted")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed"))
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all; none: only the loader)")
    parser.add_argument("--loader-config", type=Path, default=Path("configs/default_ccp.yaml"),
                        help="recipe whose data loading is timed per batch (one thread)")
    parser.add_argument("--loader-batches", type=int, default=20, help="batches of photos timed (0: skip)")
    args = parser.parse_args(argv)
    from ihp_rt.training.config import TrainConfig
    from ihp_rt.training.trainer import bf16_autocast

    rows, skipped = [], []
    with warnings.catch_warnings():  # the report names the variants this skips, once
        warnings.simplefilter("ignore", RuntimeWarning)
        native_bf16 = bf16_autocast(TrainConfig(autocast_bf16=True))
    for name, overrides in VARIANTS.items():
        if args.only is not None and name not in args.only:
            continue
        if overrides.get("autocast_bf16") and not native_bf16:
            skipped.append(name)  # the trainer would time float32 under a bfloat16 name
            continue
        s = seconds_per_step(args.config, overrides, args.steps, args.skip)
        rows.append({"variant": name, "options": overrides, "seconds_per_step": s})
        print(f"{name}: {s:.2f} s/step")
    loader = loader_milliseconds(args.loader_config, args.loader_batches) if args.loader_batches else None
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"config": str(args.config), "steps": args.steps, "skip": args.skip, "machine": machine(), "rows": rows,
              "not_run_no_native_bf16": skipped, "loader": loader}
    (args.out / "train_speed.json").write_text(json.dumps(report, indent=1))
    lines = []
    if rows:
        first = rows[0]["seconds_per_step"]
        lines += ["| variant | s/step | vs first row |", "|---|---|---|"]
        lines += [f"| {r['variant']} | {r['seconds_per_step']:.2f} | {first / r['seconds_per_step']:.2f}x |"
                  for r in rows]
    if skipped:
        lines += ["", f"Not run, this CPU has no native bfloat16: {', '.join(skipped)}."]
    if loader:
        lines += ["", f"Data loading per batch of {loader['batch_size']} ({loader['config']}, one thread, "
                  f"{loader['photos']} photos): decoding photos and label maps "
                  f"{loader['decode_ms_per_batch']:.0f} ms; the whole sample (decoding, augmentation, clicks, "
                  f"click maps) {loader['sample_ms_per_batch']:.0f} ms."]
    (args.out / "train_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
