"""Side-by-side pictures for looking at results: photo with clicks | prediction | truth | errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ihp_rt.clicks import Click
from ihp_rt.images import colorize, overlay, write_rgb_png
from ihp_rt.labels import LabelSet

ERROR_COLOUR = (230, 30, 30)
IGNORE_COLOUR = (90, 90, 90)


def error_map(prediction: np.ndarray, truth: np.ndarray, ignore: int | None) -> np.ndarray:
    """White where right, red where wrong, grey where the truth is unlabelled."""
    out = np.full((*truth.shape, 3), 255, np.uint8)
    out[prediction != truth] = ERROR_COLOUR
    if ignore is not None:
        out[truth == ignore] = IGNORE_COLOUR
    return out


def side_by_side(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray, clicks: list[Click],
                 labels: LabelSet, ignore: int | None, title: str = "") -> np.ndarray:
    shown_truth = np.where(truth == ignore, 0, truth) if ignore is not None else truth
    panels = [overlay(image, prediction, labels, clicks), colorize(prediction, labels),
              colorize(shown_truth, labels), error_map(prediction, truth, ignore)]
    strip = np.concatenate([np.pad(p, ((0, 0), (0, 4), (0, 0)), constant_values=255) for p in panels], axis=1)
    if title:
        strip = np.pad(strip, ((28, 0), (0, 0), (0, 0)), constant_values=255)
        cv2.putText(strip, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def save_example(path: Path, image: np.ndarray, prediction: np.ndarray, truth: np.ndarray, clicks: list[Click],
                 labels: LabelSet, ignore: int | None, title: str = "") -> Path:
    return write_rgb_png(path, side_by_side(image, prediction, truth, clicks, labels, ignore, title))
