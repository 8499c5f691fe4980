"""The per-click stem patch equals the full first convolution (float64 reference) on random
images, weights and clicks, for the shapes the backbones use and odd ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ihp_rt.backends.stem import StemConv, patch_stem
from ihp_rt.encoding import encode_reference


def conv_reference(x: np.ndarray, weight: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Plain float64 convolution with zero padding: out[o, i, j] = sum w[o, c, u, v] x[c, i*s+u-p, j*s+v-p]."""
    channels, height, width = x.shape
    k = weight.shape[-1]
    padded = np.zeros((channels, height + 2 * pad, width + 2 * pad))
    padded[:, pad:pad + height, pad:pad + width] = x
    rows, cols = (height + 2 * pad - k) // stride + 1, (width + 2 * pad - k) // stride + 1
    out = np.zeros((weight.shape[0], rows, cols))
    for u in range(k):
        for v in range(k):
            tap = padded[:, u:u + stride * (rows - 1) + 1:stride, v:v + stride * (cols - 1) + 1:stride]
            out += np.einsum("oc,cij->oij", weight[:, :, u, v].astype(np.float64), tap)
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.tuples(st.integers(20, 70), st.integers(20, 70)),
       shape=st.sampled_from([(7, 2, 3), (3, 1, 1), (3, 2, 1), (5, 2, 2), (4, 4, 0), (2, 5, 0)]),
       clicks=st.integers(0, 12), cap=st.sampled_from([255, 100, 4, 1]))
def test_patched_stem_equals_the_full_convolution(seed, size, shape, clicks, cap) -> None:
    rng = np.random.default_rng(seed)
    (height, width), (k, stride, pad), classes = size, shape, 4
    weight = rng.normal(size=(6, 3 + classes, k, k)).astype(np.float32)
    rgb = rng.normal(size=(3, height, width))
    points = np.stack([rng.integers(0, width, clicks), rng.integers(0, height, clicks),
                       rng.integers(0, classes, clicks)], axis=1).astype(np.int32)
    maps = encode_reference(points, classes, height, width, cap)

    full = conv_reference(np.concatenate([rgb, maps]), weight, stride, pad)
    base = conv_reference(np.concatenate([rgb, np.full_like(maps, cap)]), weight, stride, pad).astype(np.float32)
    out = np.empty_like(base)
    patch_stem(StemConv(weight[:, 3:], stride, pad), base, maps.astype(np.float32), points, cap, out)
    # errors relative to the size of the terms summed (up to 255 x |w| x k*k*C in float32)
    assert np.abs(out - full).max() <= 1e-5 * cap * np.abs(weight).max() * k * k * classes


def test_no_clicks_is_the_base_and_windows_stay_local() -> None:
    rng = np.random.default_rng(0)
    stem = StemConv(rng.normal(size=(2, 3, 7, 7)).astype(np.float32), 2, 3)
    base = rng.normal(size=(2, 50, 50)).astype(np.float32)
    maps = np.full((3, 100, 100), 255, np.float32)
    out = np.empty_like(base)
    patch_stem(stem, base, maps, np.zeros((0, 3), np.int32), 255, out)
    assert np.array_equal(out, base)
    point = np.array([[60, 40, 1]], np.int32)
    maps[1] = encode_reference(point, 3, 100, 100)[1]
    patch_stem(stem, base, maps, point, 255, out)
    changed = np.argwhere((out != base).any(axis=0))
    # input reach 15 px + kernel radius 3, at stride 2: within 9 output px of (20, 30)
    assert changed.size and np.abs(changed - [20, 30]).max() <= 9


@pytest.mark.parametrize(("centre", "size"), [(0, 473), (472, 473), (236, 473), (5, 20)])
def test_span_covers_exactly_the_reached_outputs(centre, size) -> None:
    stem = StemConv(np.zeros((1, 1, 7, 7), np.float32), 2, 3)
    lo, hi = stem.span(centre, 15, size)
    reached = [o for o in range(stem.out_size(size))
               if max(o * 2 - 3, centre - 15) <= min(o * 2 - 3 + 6, centre + 15)]
    assert (lo, hi) == (reached[0], reached[-1] + 1)
