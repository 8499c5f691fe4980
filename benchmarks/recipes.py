"""Training recipes measured against each other: ``python -m ihp_rt.benchmarks.recipes configs/recipes.yaml``.

Each arm is the base training config plus a few changed options, trained for the same number
of steps (``steps``) or the same wall time (``minutes``: then the learning rate decays over the
minutes, and ``steps`` is only a cap; see the sweep file for how arms shared the machine), then
evaluated with the
paper's protocol on the run's own held-out validation photos (torch backend, central clicks then
``corrections`` correction clicks). Runs live in ``runs/recipes/<arm>``: an interrupted sweep
resumes where it stopped (training resumes from its checkpoint, finished evaluations are kept),
and ``--arms`` restricts it to some arms (two shells can share out the arms of one sweep).
Writes recipes.json, recipes.md and recipes.png to ``--out``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
from pathlib import Path

import yaml

from ihp_rt.errors import InputError

RESULT_KS = (0, 5, 10)


def load_sweep(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or "arms" not in doc or "base" not in doc:
        raise InputError(f"{path}: a recipe sweep needs 'base' (a training config) and 'arms'")
    names = [a["name"] for a in doc["arms"]]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: arm names must be unique")
    return doc


def _recipe(config: dict) -> dict:
    """What decides an arm's result: its training options, less where it runs and on how many threads.
    Options added since a run was saved count at their defaults, which is how that run trained."""
    from ihp_rt.training.config import TrainConfig

    full = TrainConfig.from_dict(config).to_dict()
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in full.items() if k not in ("out", "threads")}


def arm_config(sweep: dict, arm: dict, runs: Path):
    from ihp_rt.training.config import TrainConfig

    values = TrainConfig.from_yaml(sweep["base"]).to_dict()
    values.update(sweep.get("common", {}))
    values.update(arm.get("set", {}))
    if "minutes" in arm:
        values.update(steps=arm.get("steps", 10**6), time_limit_min=arm["minutes"])
    else:
        values.update(steps=arm["steps"], time_limit_min=None)
    values.update(out=str(runs / arm["name"]))
    return TrainConfig.from_dict(values)


def finished(cfg, training: dict) -> bool:
    """Whether a checkpoint's run used up its step or time budget (a resumed run trains no further)."""
    out_of_time = cfg.time_limit_min is not None and training.get("seconds", 0) >= cfg.time_limit_min * 60
    return training.get("step") == cfg.steps or out_of_time


def run_arm(sweep: dict, arm: dict, runs: Path, threads: int | None) -> dict:
    """Train (or resume) and evaluate one arm; returns its row of the table."""
    import torch

    from ihp_rt.data.folder import FolderDataset
    from ihp_rt.evaluation import evaluate
    from ihp_rt.labels import get_label_mapping
    from ihp_rt.model import load_checkpoint
    from ihp_rt.session import Session
    from ihp_rt.training.trainer import train

    cfg = arm_config(sweep, arm, runs)
    if threads:
        cfg.threads = threads
        torch.set_num_threads(threads)
    result_path = Path(cfg.out) / "eval.json"
    last = Path(cfg.out) / "last.pt"
    done = False
    if last.is_file():
        saved = load_checkpoint(last).training
        if _recipe(saved.get("config", {})) != _recipe(cfg.to_dict()):
            raise InputError(f"{cfg.out} was trained with another recipe than arm {arm['name']!r} now defines; "
                             "rename the arm or move the folder away")
        done = finished(cfg, saved)
    if not (done and result_path.is_file()):
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        with (Path(cfg.out) / ".lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # two sweeps must not train one folder at once
            except BlockingIOError:
                raise InputError(f"{cfg.out} is being trained by another process") from None
            if not done:
                train(cfg)
            checkpoint = load_checkpoint(last)
            folder = FolderDataset(cfg.data, get_label_mapping(cfg.label_mapping) if cfg.label_mapping else None)
            val = folder.subset(checkpoint.training["val_names"])
            session = Session.open(checkpoint, backend="torch", device="cpu", click_radius=0)
            result = evaluate(session, val, sweep.get("corrections", 10), standards=(85.0, 50.0), desc=arm["name"])
            result_path.write_text(json.dumps({**result, "seconds": checkpoint.training["seconds"],
                                               "steps": checkpoint.training["step"]}, indent=1))
    result = json.loads(result_path.read_text())
    return {"name": arm["name"], "note": arm.get("note", ""), "steps": result.get("steps", cfg.steps),
            "train_minutes": result["seconds"] / 60, "miou": result["miou"],
            "avg85": result["by_standard"]["85"]["avg"], "avg50": result["by_standard"]["50"]["avg"],
            "images": result["images"], "ms_per_predict": result["ms_per_predict"]}


def markdown(rows: list[dict], baseline: str | None) -> str:
    ks = [k for k in RESULT_KS if all(k < len(r["miou"]) for r in rows)]
    base = next((r for r in rows if r["name"] == baseline), None)
    head = ("| arm | what changes | steps | minutes | s/step | " + " | ".join(f"mIoU @{k}" for k in ks)
            + " | Avg.@85 | Avg.@50 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = []
        for k in ks:
            delta = f" ({(r['miou'][k] - base['miou'][k]) * 100:+.1f})" if base and r is not base else ""
            cells.append(f"{r['miou'][k] * 100:.1f}{delta}")
        seconds = r["train_minutes"] * 60
        lines.append(f"| {r['name']} | {r['note']} | {r['steps']} | {r['train_minutes']:.0f} | "
                     f"{seconds / r['steps']:.2f} | " + " | ".join(cells)
                     + f" | {r['avg85']:.2f} | {r['avg50']:.2f} |")
    if base:
        lines.append(f"\nIn brackets: points against `{baseline}`.")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, budget: str) -> None:
    from ihp_rt.evaluation.runner import plot as plot_curves

    curves = [{"label": r["name"], "miou": r["miou"], "standard": 85.0, "images": r["images"]} for r in rows]
    plot_curves(curves, path, f"Training recipes at equal {budget} ({rows[0]['images']} held-out photos)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="YAML: base config, common options, arms")
    parser.add_argument("--runs", type=Path, default=Path("runs/recipes"), help="where arms train (resumable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recipes"))
    parser.add_argument("--arms", nargs="*", help="only these arms (default: all)")
    parser.add_argument("--threads", type=int, help="torch threads per arm")
    parser.add_argument("--report-only", action="store_true", help="tabulate the finished arms, train nothing")
    args = parser.parse_args(argv)
    sweep = load_sweep(args.sweep)
    arms = [a for a in sweep["arms"] if not args.arms or a["name"] in args.arms]
    rows = []
    for arm in arms:
        if args.report_only:
            if (args.runs / arm["name"] / "eval.json").is_file():
                rows.append(run_arm(sweep, arm, args.runs, args.threads))
            continue
        rows.append(run_arm(sweep, arm, args.runs, args.threads))
    if not rows:
        print("no finished arm to report")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recipes.json").write_text(json.dumps({"sweep": str(args.sweep), "arms": rows}, indent=1))
    (args.out / "recipes.md").write_text(markdown(rows, sweep.get("baseline")))
    plot(rows, args.out / "recipes.png", "wall time" if all("minutes" in a for a in arms) else "steps")
    print(markdown(rows, sweep.get("baseline")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
