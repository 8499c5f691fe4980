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


def main(argv: list[str] | None = None) -> int:
    from ihp_rt.benchmarks.latency import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/ccp_mbv3_v1.yaml"))
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--skip", type=int, default=6, help="first steps not counted")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed"))
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args(argv)
    rows = []
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        s = seconds_per_step(args.config, overrides, args.steps, args.skip)
        rows.append({"variant": name, "options": overrides, "seconds_per_step": s})
        print(f"{name}: {s:.2f} s/step")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"config": str(args.config), "steps": args.steps, "skip": args.skip, "machine": machine(), "rows": rows}
    (args.out / "train_speed.json").write_text(json.dumps(report, indent=1))
    first = rows[0]["seconds_per_step"]
    lines = ["| variant | s/step | vs first row |", "|---|---|---|"]
    lines += [f"| {r['variant']} | {r['seconds_per_step']:.2f} | {first / r['seconds_per_step']:.2f}x |" for r in rows]
    (args.out / "train_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
