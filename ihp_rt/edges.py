"""Part boundaries: used by Near-Edge-Sampling (training) and the near-edge metrics (evaluation)."""

from __future__ import annotations

import cv2
import numpy as np


def label_edges(labels: np.ndarray, ignore: int | None = None) -> np.ndarray:
    """Pixels with a 4-neighbour of another label (both sides of each boundary); boundaries with
    ``ignore`` pixels are not boundaries between parts and are left out."""
    edge = np.zeros(labels.shape, bool)
    for a, b, sa, sb in ((labels[:, 1:], labels[:, :-1], np.s_[:, 1:], np.s_[:, :-1]),
                         (labels[1:], labels[:-1], np.s_[1:], np.s_[:-1])):
        diff = a != b
        if ignore is not None:
            diff &= (a != ignore) & (b != ignore)
        edge[sa] |= diff
        edge[sb] |= diff
    return edge


def within(mask: np.ndarray, distance: float) -> np.ndarray:
    """Pixels at most ``distance`` px (Euclidean) from a pixel of ``mask``."""
    if not mask.any():
        return np.zeros(mask.shape, bool)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= distance


def edge_band(labels: np.ndarray, width: float, ignore: int | None = None) -> np.ndarray:
    """Labelled pixels within ``width`` px of a boundary between two parts."""
    band = within(label_edges(labels, ignore), width)
    return band if ignore is None else band & (labels != ignore)
