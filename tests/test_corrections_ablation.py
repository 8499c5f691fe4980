"""The ablation's own pieces (benchmarks/corrections_ablation.py) against plain references."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ihp_rt.benchmarks.corrections_ablation import (
    cone_maps,
    one_hot,
    progressive_merge,
    widen_first_layer,
)


def test_cone_maps_match_a_float64_reference(rng) -> None:
    clicks = np.array([[5, 7, 1], [60, 40, 1], [30, 30, 2], [0, 79, 0]], np.int32)
    got = cone_maps(clicks, 3, 80, 70, reach=20.0)
    rows, cols = np.mgrid[0:80, 0:70].astype(np.float64)
    expected = np.zeros((3, 80, 70))
    for x, y, label in clicks:
        expected[label] = np.maximum(expected[label], np.clip(1 - np.hypot(rows - y, cols - x) / 20.0, 0, None))
    assert np.allclose(got, expected, atol=1e-6)


def test_one_hot_of_no_prediction_is_all_zero() -> None:
    assert not one_hot(None, 4, 5, 6).any()
    labels = np.array([[0, 3], [2, 2]], np.uint8)
    assert np.array_equal(one_hot(labels, 4, 2, 2).argmax(0), labels) and one_hot(labels, 4, 2, 2).sum() == 4


def test_a_widened_network_starts_as_the_network_it_came_from(tiny_checkpoint) -> None:
    """Compared in float64: in float32 the first layer sums inputs of hundreds in an order that
    depends on the channel count and the CPU's kernels, so equal networks differ by ~1e-4."""
    spec = tiny_checkpoint.spec
    narrow = copy.deepcopy(tiny_checkpoint.model).double().eval()
    wide = widen_first_layer(narrow, spec.num_classes).eval()
    x = torch.randn(1, spec.in_channels, spec.input_size, spec.input_size, dtype=torch.float64)
    x[:, 3:] *= 255
    extra = torch.rand(1, spec.num_classes, spec.input_size, spec.input_size, dtype=torch.float64)
    with torch.inference_mode():
        assert torch.allclose(wide(torch.cat([x, extra], 1)), narrow(x), rtol=0, atol=1e-9)


def flood(changed: np.ndarray, y: int, x: int) -> np.ndarray:
    """The 8-connected region of ``changed`` holding (y, x), by a plain breadth-first search."""
    region = np.zeros_like(changed, bool)
    queue = [(y, x)] if changed[y, x] else []
    for r, c in queue:
        if 0 <= r < changed.shape[0] and 0 <= c < changed.shape[1] and changed[r, c] and not region[r, c]:
            region[r, c] = True
            queue += [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    return region


def test_progressive_merge_writes_only_the_changed_region_under_the_click(rng) -> None:
    for _ in range(20):
        previous = rng.integers(0, 3, size=(30, 30)).astype(np.uint8)
        proposed = np.where(rng.random((30, 30)) < 0.3, rng.integers(0, 3, size=(30, 30)), previous).astype(np.uint8)
        x, y = rng.integers(0, 30, size=2)
        expected = previous.copy()
        keep = flood(proposed != previous, y, x)
        expected[keep] = proposed[keep]
        assert np.array_equal(progressive_merge(previous, proposed, np.array([x, y, 1])), expected)
