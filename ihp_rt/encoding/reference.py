"""The reference click encoder: the paper's Eq. 1 written as plainly as possible."""

from __future__ import annotations

import math

import numpy as np

from ihp_rt.errors import InputError

DEFAULT_CAP = 255


def reach(cap: int) -> int:
    """Largest |dx| (or |dy|) at which a click can still lower a map below ``cap``."""
    return math.isqrt(cap)


def check_clicks(clicks: np.ndarray, num_classes: int, height: int, width: int, cap: int) -> np.ndarray:
    """Validate encoder arguments once, so every implementation refuses the same inputs."""
    clicks = np.asarray(clicks)
    if clicks.ndim != 2 or clicks.shape[1] != 3 or not np.issubdtype(clicks.dtype, np.integer):
        raise InputError(f"clicks must be a (K, 3) integer array of (x, y, label), got {clicks.dtype} {clicks.shape}")
    if num_classes < 1 or height < 1 or width < 1:
        raise InputError(f"bad map size: {num_classes} classes, {height}x{width}")
    if not 0 < cap < 2**24:  # float32 holds every integer distance up to 2**24 exactly
        raise InputError(f"cap must be in 1..2**24-1, got {cap}")
    if len(clicks):
        x, y, label = clicks[:, 0], clicks[:, 1], clicks[:, 2]
        if x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height:
            raise InputError(f"a click lies outside the {width}x{height} frame")
        if label.min() < 0 or label.max() >= num_classes:
            raise InputError(f"a click label is outside 0..{num_classes - 1}")
    return clicks.astype(np.int32, copy=False)


def encode_reference(
    clicks: np.ndarray, num_classes: int, height: int, width: int, cap: int = DEFAULT_CAP
) -> np.ndarray:
    """(num_classes, height, width) float32 maps, computed in float64 over the full image."""
    clicks = check_clicks(clicks, num_classes, height, width, cap)
    rows = np.arange(height, dtype=np.float64)[:, None]
    cols = np.arange(width, dtype=np.float64)[None, :]
    maps = np.full((num_classes, height, width), float(cap), dtype=np.float64)
    for x, y, label in clicks:
        d2 = (rows - y) ** 2 + (cols - x) ** 2
        maps[label] = np.minimum(maps[label], d2)
    return maps.astype(np.float32)
