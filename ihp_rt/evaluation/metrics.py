"""Confusion-matrix and boundary metrics.

Data-set mIoU accumulates one confusion matrix over all images (the paper's convention);
per-image figures (used for "clicks to reach the standard") come from per-image matrices.
"""

from __future__ import annotations

import numpy as np

from ihp_rt.edges import edge_band, label_edges, within

EDGE_TOLERANCE = 5


def confusion_matrix(prediction: np.ndarray, truth: np.ndarray, num_classes: int, ignore: int | None = None,
                     where: np.ndarray | None = None) -> np.ndarray:
    """(C, C) int64 counts, rows = ground truth, columns = prediction; ignore pixels skipped.

    ``where`` restricts the count to a mask (e.g. the band near part edges).
    """
    valid = truth < num_classes if ignore is None else (truth != ignore) & (truth < num_classes)
    if where is not None:
        valid &= where
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


def near_edge_band(truth: np.ndarray, width: int = EDGE_TOLERANCE, ignore: int | None = None) -> np.ndarray:
    """Pixels within ``width`` px of a ground-truth part boundary (where near-edge mIoU is measured)."""
    return edge_band(truth, width, ignore)


def boundary_counts(prediction: np.ndarray, truth: np.ndarray, tolerance: int = EDGE_TOLERANCE,
                    ignore: int | None = None) -> np.ndarray:
    """[matched predicted edge px, predicted edge px, matched true edge px, true edge px].

    An edge pixel is matched when the other map has an edge within ``tolerance`` px. Counts
    add over images; :func:`boundary_f` turns them into the boundary F-measure.
    """
    if ignore is not None:  # unlabelled pixels carry no boundary in either map
        prediction = np.where(truth == ignore, ignore, prediction)
    pred_edge = label_edges(prediction, ignore)
    true_edge = label_edges(truth, ignore)
    return np.array([(pred_edge & within(true_edge, tolerance)).sum(), pred_edge.sum(),
                     (true_edge & within(pred_edge, tolerance)).sum(), true_edge.sum()], dtype=np.int64)


def boundary_f(counts: np.ndarray) -> float:
    """Boundary F-measure from :func:`boundary_counts` (1.0 when neither map has an edge)."""
    matched_p, n_p, matched_t, n_t = (float(v) for v in counts)
    if n_p == 0 and n_t == 0:
        return 1.0
    precision = matched_p / n_p if n_p else 0.0
    recall = matched_t / n_t if n_t else 0.0
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
