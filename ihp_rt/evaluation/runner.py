"""Evaluate sessions over a data set: mIoU vs. clicks, Add., Avg., per-class and near-edge figures.

Conventions (also written into eval.json):
* data-set mIoU after k correction clicks accumulates one confusion matrix over all images
  (the paper's); the mean of per-image mIoUs is reported beside it;
* an image reaches the standard at the first k whose per-image mIoU >= standard; one that never
  does counts as ``max_corrections`` and is listed in ``failures``;
* a correction is honoured when the clicked pixel has the click's label in the prediction
  right after it (the network alone leaves many wrong; ``Session.click_radius`` > 0 honours all);
* Add. = mean correction clicks per image to reach the standard;
  Avg. = sum over images of (initial + correction clicks to reach) / sum of part classes
  present (background excluded, as the initial clicks are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ihp_rt.data.folder import ParsingDataset
from ihp_rt.errors import InputError
from ihp_rt.evaluation.metrics import (
    boundary_counts,
    boundary_f,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    near_edge_band,
)
from ihp_rt.evaluation.protocol import interactive_run
from ihp_rt.session import Session


@dataclass
class Totals:
    """Running sums for one evaluated configuration."""

    num_classes: int
    steps: int
    conf: np.ndarray = field(init=False)
    edge_conf: np.ndarray = field(init=False)
    boundary: np.ndarray = field(init=False)
    names: list[str] = field(default_factory=list)
    per_image_miou: list[list[float]] = field(default_factory=list)
    initial_clicks: list[int] = field(default_factory=list)
    parts: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    corrections: int = 0
    honoured: int = 0  # corrections whose clicked pixel has their label in the prediction right after

    def __post_init__(self) -> None:
        c = self.num_classes
        self.conf = np.zeros((self.steps, c, c), np.int64)
        self.edge_conf = np.zeros((2, c, c), np.int64)  # after initialisation, after the last click
        self.boundary = np.zeros((2, 4), np.int64)


def evaluate(session: Session, dataset: ParsingDataset, max_corrections: int = 20,
             standards: float | tuple[float, ...] = 85.0, seed: int = 0, initial: str = "central",
             progress: bool = True, desc: str = "eval", on_image=None) -> dict:
    """Run the protocol on every image; returns the JSON-ready figures of this configuration.

    ``standards``: the mIoU (%) an image must reach; the first is the headline one (``add``,
    ``avg``, ``failures``), all of them are in ``by_standard``.
    """
    standards = (standards,) if isinstance(standards, (int, float)) else tuple(standards)
    ignore = dataset.ignore_index
    num_classes = session.spec.num_classes
    totals = Totals(num_classes, max_corrections + 1)
    for index in tqdm(range(len(dataset)), disable=not progress, desc=desc, unit="img"):
        sample = dataset[index]
        labelled = sample.labels if ignore is None else sample.labels[sample.labels != ignore]
        if labelled.size and labelled.max() >= num_classes:
            raise InputError(f"{sample.name}: label {labelled.max()} is outside the model's {num_classes} classes")
        run = interactive_run(session, sample, max_corrections, np.random.default_rng([seed, index]), ignore, initial)
        confs = [confusion_matrix(p, sample.labels, num_classes, ignore) for p in run.predictions]
        totals.conf += np.stack(confs)
        mious = [mean_iou(c) for c in confs]
        totals.per_image_miou.append(mious)
        band = near_edge_band(sample.labels, ignore=ignore)
        for slot, pred in enumerate((run.predictions[0], run.predictions[-1])):
            totals.edge_conf[slot] += confusion_matrix(pred, sample.labels, num_classes, ignore, where=band)
            totals.boundary[slot] += boundary_counts(pred, sample.labels, ignore=ignore)
        totals.names.append(sample.name)
        totals.initial_clicks.append(run.initial_clicks)
        present = np.unique(sample.labels)
        totals.parts.append(int(sum(1 for v in present if v != 0 and v != ignore)))
        totals.latency_ms.extend(run.latency_ms)
        for k, click in enumerate(run.clicks[run.initial_clicks:], start=1):  # rounds end once perfect
            totals.honoured += int(run.predictions[k][click.y, click.x] == click.label)
            totals.corrections += 1
        if on_image is not None:
            on_image(index, sample, run)
    return summarize(totals, session, standards, initial)


def clicks_to_standard(t: Totals, standard: float) -> dict:
    """Add., Avg. and the images that never reach ``standard`` (counted at the cap)."""
    cap = t.steps - 1
    reach, failures = [], []
    for name, mious in zip(t.names, t.per_image_miou, strict=True):
        k = next((k for k, m in enumerate(mious) if m * 100 >= standard), None)
        if k is None:
            failures.append(name)
        reach.append(cap if k is None else k)
    total_clicks = sum(reach) + sum(t.initial_clicks)
    return {"add": float(np.mean(reach)) if reach else float("nan"),
            "avg": float(total_clicks / max(1, sum(t.parts))), "failures": failures}


def summarize(t: Totals, session: Session, standards: tuple[float, ...], initial: str) -> dict:
    names = session.labels.names
    first, last = iou_per_class(t.conf[0]), iou_per_class(t.conf[-1])
    by_standard = {f"{s:g}": clicks_to_standard(t, s) for s in standards}
    headline = by_standard[f"{standards[0]:g}"]
    return {
        "backend": session.backend.name,
        "initial": initial,
        "images": len(t.names),
        "standard": standards[0],
        "miou": [mean_iou(c) for c in t.conf],
        "miou_per_image_mean": np.nanmean(np.array(t.per_image_miou), axis=0).tolist() if t.names else [],
        **headline,
        "by_standard": by_standard,
        "per_class_iou": {names[i]: [_num(first[i]), _num(last[i])] for i in range(len(names))},
        "near_edge_miou": [mean_iou(t.edge_conf[0]), mean_iou(t.edge_conf[1])],
        "boundary_f": [boundary_f(t.boundary[0]), boundary_f(t.boundary[1])],
        "ms_per_predict": float(np.mean(t.latency_ms)) if t.latency_ms else float("nan"),
        "corrections_honoured": t.honoured / max(1, t.corrections),
        "corrections": t.corrections,
    }


def _num(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def markdown(results: list[dict], ks: tuple[int, ...] = (0, 1, 3, 5, 10, 20)) -> str:
    """The paper's table form: mIoU after k correction clicks, Add. and Avg. to the standard."""
    steps = len(results[0]["miou"])
    ks = tuple(k for k in ks if k < steps)
    standards = list(results[0]["by_standard"])
    columns = [f"mIoU@{k}" for k in ks]
    for s in standards:
        columns += [f"Add.@{s}", f"Avg.@{s}", f"not reached @{s}"]
    lines = ["| run | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for r in results:
        cells = [f"{100 * r['miou'][k]:.1f}" for k in ks]
        for s in standards:
            fig = r["by_standard"][s]
            cells += [f"{fig['add']:.2f}", f"{fig['avg']:.2f}", f"{len(fig['failures'])}/{r['images']}"]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += ["", "| run | near-edge mIoU (init -> last) | boundary F (init -> last) | corrections honoured | "
              "ms per predict |", "|---|---:|---:|---:|---:|"]
    for r in results:
        ne, bf = r["near_edge_miou"], r["boundary_f"]
        lines.append(f"| {r['label']} | {100 * ne[0]:.1f} -> {100 * ne[1]:.1f} | {100 * bf[0]:.1f} -> "
                     f"{100 * bf[1]:.1f} | {100 * r['corrections_honoured']:.0f} % of {r['corrections']} | "
                     f"{r['ms_per_predict']:.0f} |")
    first = results[0]
    lines += ["", f"Per-class IoU of `{first['label']}` (after initialisation -> after {steps - 1} corrections):", "",
              "| class | IoU init | IoU last |", "|---|---:|---:|"]
    for name, (a, b) in first["per_class_iou"].items():
        if a is not None or b is not None:
            lines.append(f"| {name} | {_pct(a)} | {_pct(b)} |")
    return "\n".join(lines) + "\n"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def plot(results: list[dict], path: Path, title: str | None = None) -> Path:
    """mIoU vs. correction clicks, one curve per run (the paper's Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        ax.plot(range(len(r["miou"])), [100 * v for v in r["miou"]], marker="o", markersize=3, label=r["label"])
    ax.axhline(results[0]["standard"], color="grey", linestyle="--", linewidth=1, label="standard")
    ax.set_xlabel("correction clicks")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title or f"mIoU vs. clicks ({results[0]['images']} images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
