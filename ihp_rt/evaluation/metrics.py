"""Confusion-matrix metrics. Data-set figures accumulate one matrix over all images (the
paper's convention); per-image means are computed from per-image matrices."""

from __future__ import annotations

import numpy as np


def confusion_matrix(prediction: np.ndarray, truth: np.ndarray, num_classes: int,
                     ignore: int | None = None) -> np.ndarray:
    """(C, C) int64 counts, rows = ground truth, columns = prediction; ignore pixels skipped."""
    valid = truth < num_classes if ignore is None else (truth != ignore) & (truth < num_classes)
    index = truth[valid].astype(np.int64) * num_classes + prediction[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of each class; NaN for classes absent from both truth and prediction."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over the classes that occur (in truth or prediction)."""
    ious = iou_per_class(conf)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")
