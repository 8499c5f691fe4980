"""The paper's click rules, checked on hand-made label maps."""

import cv2
import numpy as np
import pytest

from ihp_rt.edges import edge_band
from ihp_rt.simulation import (
    background_click,
    central_clicks,
    correction_click,
    correction_clicks,
    farthest_of_candidates,
    near_edge_extra_clicks,
    random_component_clicks,
    random_extra_clicks,
    training_clicks,
)


def boundary_distance(mask: np.ndarray) -> np.ndarray:
    return cv2.distanceTransform(np.pad(mask.astype(np.uint8), 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def scene() -> np.ndarray:
    """Background with a 3-component class 2, a class 5 block touching it and an ignore stripe."""
    labels = np.zeros((60, 80), np.uint8)
    labels[5:25, 5:35] = 2
    labels[40:55, 10:20] = 2
    labels[50:52, 70:72] = 2
    labels[5:25, 35:60] = 5
    labels[:, 78:] = 255
    return labels


def test_farthest_of_candidates_is_in_region_and_beats_the_other_candidates() -> None:
    mask = scene() == 2
    mask[40:55, 10:20] = mask[50:52, 70:72] = False
    dist = boundary_distance(mask)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        x, y = farthest_of_candidates(mask, rng, n_candidates=5)
        assert mask[y, x]
        # Replaying the same draw gives the candidates: the chosen one is farthest among them.
        ys, xs = np.nonzero(mask)
        pick = np.random.default_rng(seed).choice(len(ys), size=5, replace=False)
        assert dist[y, x] == dist[ys[pick], xs[pick]].max()


def test_central_clicks_one_per_component_plus_background() -> None:
    labels = scene()
    clicks = central_clicks(labels, np.random.default_rng(0), ignore=255, d_margin=10)
    parts = [c for c in clicks if c.label != 0]
    assert sorted(c.label for c in parts) == [2, 2, 2, 5]
    for c in parts:
        assert labels[c.y, c.x] == c.label
    (bg,) = [c for c in clicks if c.label == 0]
    assert labels[bg.y, bg.x] == 0
    part_mask = (labels != 0) & (labels != 255)
    assert cv2.distanceTransform((~part_mask).astype(np.uint8), cv2.DIST_L2, 5)[bg.y, bg.x] >= 10
    again = central_clicks(labels, np.random.default_rng(0), ignore=255, d_margin=10)
    assert clicks == again  # seeded: deterministic


def test_background_click_falls_back_to_the_farthest_pixel() -> None:
    labels = np.full((20, 20), 3, np.uint8)
    labels[0, 0] = labels[19, 19] = 0
    click = background_click(labels, np.random.default_rng(0), None, d_margin=10)
    assert click is not None and click.label == 0 and (click.x, click.y) in {(0, 0), (19, 19)}
    assert background_click(np.ones((5, 5), np.uint8), np.random.default_rng(0), None) is None


@pytest.mark.parametrize("seed", range(10))
def test_random_extra_clicks_keep_background_within_3_to_6(seed: int) -> None:
    labels = scene()
    rng = np.random.default_rng(seed)
    for count in (1, 4, 15, 40):
        clicks = random_extra_clicks(labels, rng, count, ignore=255)
        background = sum(c.label == 0 for c in clicks)
        assert 3 <= background <= 6
        assert all(labels[c.y, c.x] == c.label and c.label != 255 for c in clicks)
        assert len({(c.x, c.y) for c in clicks}) == len(clicks)


def test_near_edge_clicks_lie_within_d_margin_of_a_boundary() -> None:
    labels = scene()
    band = edge_band(labels, 3, ignore=255)
    assert band[24, 20] and band[15, 33]  # on the class-2 edge; 2 px from the class 2 / class 5 border
    assert not band[15, 20] and not band[32, 50]  # deep inside class 2; background 8 px from any part
    clicks = near_edge_extra_clicks(labels, np.random.default_rng(1), 20, ignore=255, d_margin=3)
    assert clicks and all(band[c.y, c.x] for c in clicks)
    assert 3 <= sum(c.label == 0 for c in clicks) <= 6


def test_random_only_gives_one_click_per_component() -> None:
    clicks = random_component_clicks(scene(), np.random.default_rng(0), ignore=255)
    assert sorted(c.label for c in clicks) == [0, 2, 2, 2, 5]


@pytest.mark.parametrize("strategy", ["random", "near_edge", "random_only"])
def test_training_clicks_count(strategy: str) -> None:
    labels = scene()
    for seed in range(5):
        clicks = training_clicks(labels, np.random.default_rng(seed), strategy, (1, 15), ignore=255, d_margin=5)
        base = 5  # 4 part components + 1 background
        if strategy == "random_only":
            assert len(clicks) == base
        else:
            assert base + 1 <= len(clicks) <= base + 15 + 6
    with pytest.raises(ValueError, match="strategy"):
        training_clicks(labels, np.random.default_rng(0), "everywhere")


def test_correction_click_targets_the_largest_error_region() -> None:
    truth = scene()
    prediction = truth.copy()
    prediction[5:25, 5:35] = 0  # big miss: the class-2 block
    prediction[40:45, 10:20] = 5  # smaller miss
    prediction[:, 78:] = 9  # wrong only where truth is ignored: never counts
    click = correction_click(prediction, truth, np.random.default_rng(0), ignore=255)
    assert click is not None and click.label == 2
    assert 5 <= click.y < 25 and 5 <= click.x < 35
    truth_masked = truth.copy()
    assert correction_click(truth_masked, truth, np.random.default_rng(0), ignore=255) is None


def test_correction_clicks_take_the_largest_error_regions_in_order() -> None:
    truth = scene()
    prediction = truth.copy()
    prediction[5:25, 5:35] = 0  # largest miss: the class-2 block
    prediction[40:45, 10:20] = 5  # second
    prediction[50:52, 60:62] = 7  # smallest
    prediction[:, 78:] = 9  # wrong only where truth is ignored: never counts
    regions = [(slice(5, 25), slice(5, 35)), (slice(40, 45), slice(10, 20)), (slice(50, 52), slice(60, 62))]
    clicks = correction_clicks(prediction, truth, np.random.default_rng(0), 2, ignore=255)
    assert len(clicks) == 2
    for click, (rows, cols) in zip(clicks, regions, strict=False):
        assert rows.start <= click.y < rows.stop and cols.start <= click.x < cols.stop
        assert click.label == truth[click.y, click.x]
    assert len(correction_clicks(prediction, truth, np.random.default_rng(0), 5, ignore=255)) == 3
    assert correction_clicks(prediction, truth, np.random.default_rng(0), 0, ignore=255) == []
    # The evaluation's one click is the first of these, from the same random state.
    assert correction_click(prediction, truth, np.random.default_rng(0), ignore=255) == clicks[0]
