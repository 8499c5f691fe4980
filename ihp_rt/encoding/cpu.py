"""Windowed NumPy click encoder: the fast CPU path (about 0.1 ms for 20 clicks at 473x473)."""

from __future__ import annotations

import numpy as np

from ihp_rt.encoding.reference import DEFAULT_CAP, check_clicks, reach


def encode_cpu(
    clicks: np.ndarray,
    num_classes: int,
    height: int,
    width: int,
    cap: int = DEFAULT_CAP,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Encode into ``out`` (or a new array): fill with ``cap``, then min-in one window per click.

    Writing into a caller-owned ``out`` lets a backend encode straight into its input buffer
    (e.g. channels 3.. of the network input) without a copy.
    """
    clicks = check_clicks(clicks, num_classes, height, width, cap)
    if out is None:
        out = np.empty((num_classes, height, width), dtype=np.float32)
    elif out.shape != (num_classes, height, width) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(num_classes, height, width)}, got {out.dtype} {out.shape}")
    out.fill(cap)
    r = reach(cap)
    offsets = np.arange(-r, r + 1, dtype=np.int32) ** 2
    window = np.minimum(offsets[:, None] + offsets[None, :], cap).astype(np.float32)
    for x, y, label in clicks:
        y0, y1 = max(y - r, 0), min(y + r + 1, height)
        x0, x1 = max(x - r, 0), min(x + r + 1, width)
        patch = window[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)]
        target = out[label, y0:y1, x0:x1]
        np.minimum(target, patch, out=target)
    return out
