"""CuPy wrapper of the CUDA click-encoding kernel in ``click_maps.cu``.

Imports cupy, so it is only imported by GPU code paths. The kernel writes into any
C-contiguous float32 (C, H, W) CuPy array, including a view into a network's input buffer.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import cupy as cp
import numpy as np

from ihp_rt.encoding.reference import DEFAULT_CAP, check_clicks, encode_reference, reach

_BLOCK = (32, 8, 1)


@cache
def _kernel() -> cp.RawKernel:
    source = resources.files("ihp_rt.encoding").joinpath("click_maps.cu").read_text()
    return cp.RawModule(code=source, options=("--std=c++14",)).get_function("ihp_click_maps")


def encode_cuda(
    clicks: np.ndarray,
    num_classes: int,
    height: int,
    width: int,
    cap: int = DEFAULT_CAP,
    out: cp.ndarray | None = None,
    stream: cp.cuda.Stream | None = None,
) -> cp.ndarray:
    """(num_classes, height, width) float32 maps on the current device (or in ``out``)."""
    clicks = check_clicks(clicks, num_classes, height, width, cap)
    if out is None:
        out = cp.empty((num_classes, height, width), dtype=cp.float32)
    elif out.shape != (num_classes, height, width) or out.dtype != cp.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 {(num_classes, height, width)}")
    stream = stream or cp.cuda.get_current_stream()
    with stream:
        device_clicks = cp.asarray(np.ascontiguousarray(clicks, dtype=np.int32))
        grid = ((width + _BLOCK[0] - 1) // _BLOCK[0], (height + _BLOCK[1] - 1) // _BLOCK[1], num_classes)
        _kernel()(
            grid,
            _BLOCK,
            (out, device_clicks, np.int32(len(clicks)), np.int32(num_classes), np.int32(height),
             np.int32(width), np.int32(cap), np.int32(reach(cap))),
        )
    return out


def check_kernel() -> None:
    """Compile the kernel and run it once on the current device, against the reference.

    CuPy imports and sees the GPU without NVRTC (the CUDA toolkit's runtime compiler): the kernel
    is compiled only at its first launch. A backend calls this when it opens, so a missing NVRTC
    or toolkit fails there (and ``auto`` moves on) instead of at a user's first click. Raises what
    CuPy raises, or RuntimeError when the kernel computes something else than the reference."""
    clicks = np.array([[1, 2, 0], [6, 5, 1], [3, 7, 1]], dtype=np.int32)
    got = cp.asnumpy(encode_cuda(clicks, 2, 9, 8, cap=16))
    if not np.array_equal(got, encode_reference(clicks, 2, 9, 8, 16)):
        raise RuntimeError("the CUDA click-map kernel computes other maps than the reference encoder")
