"""PyTorch click encoder: runs on whatever device the output lives on (CPU, CUDA)."""

from __future__ import annotations

import numpy as np
import torch

from ihp_rt.encoding.reference import DEFAULT_CAP, check_clicks, reach

# Clicks are processed in chunks so the (chunk, H, W) distance tensor stays small on any device.
_CHUNK = 32


def encode_torch(
    clicks: np.ndarray,
    num_classes: int,
    height: int,
    width: int,
    cap: int = DEFAULT_CAP,
    device: torch.device | str = "cpu",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """(num_classes, height, width) float32 maps on ``device`` (or in ``out``)."""
    clicks = check_clicks(clicks, num_classes, height, width, cap)
    if out is None:
        out = torch.empty((num_classes, height, width), dtype=torch.float32, device=device)
    elif tuple(out.shape) != (num_classes, height, width) or out.dtype != torch.float32:
        raise ValueError(f"out must be float32 {(num_classes, height, width)}, got {out.dtype} {tuple(out.shape)}")
    out.fill_(cap)
    if not len(clicks):
        return out
    r = reach(cap)
    k = torch.from_numpy(clicks).to(out.device)
    rows = torch.arange(height, device=out.device, dtype=torch.int32)
    cols = torch.arange(width, device=out.device, dtype=torch.int32)
    for label in np.unique(clicks[:, 2]).tolist():
        group, target = k[k[:, 2] == label], out[label]
        for start in range(0, len(group), _CHUNK):
            chunk = group[start : start + _CHUNK]
            # Clamping the offsets keeps the squares far from int32 overflow on huge frames
            # while leaving every in-reach distance unchanged (a clamped one is > cap anyway).
            dy = (rows[None, :] - chunk[:, 1:2]).clamp_(-r - 1, r + 1)
            dx = (cols[None, :] - chunk[:, 0:1]).clamp_(-r - 1, r + 1)
            d2 = ((dy * dy)[:, :, None] + (dx * dx)[:, None, :]).amin(0)
            torch.minimum(target, d2.float(), out=target)
    return out
