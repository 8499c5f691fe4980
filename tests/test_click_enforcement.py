"""Click enforcement: checked against a brute-force float64 reference, and through a real Session."""

import numpy as np
import pytest

from ihp_rt.click_enforcement import DEFAULT_CLICK_RADIUS, enforce_clicks
from ihp_rt.errors import InputError
from ihp_rt.session import Session


def enforce_reference(labels: np.ndarray, clicks: np.ndarray, radius: int) -> np.ndarray:
    """Every pixel against every click in float64: the nearest click within ``radius`` wins, ties to the later."""
    out = labels.copy()
    if radius == 0 or len(clicks) == 0:
        return out
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]].astype(np.float64)
    d = np.stack([(xx - x) ** 2 + (yy - y) ** 2 for x, y, _ in clicks])  # (K, H, W)
    latest_nearest = len(clicks) - 1 - np.argmin(d[::-1], axis=0)
    near = d.min(axis=0) <= float(radius) ** 2
    out[near] = clicks[latest_nearest[near], 2]
    return out


@pytest.mark.parametrize("radius", [0, 1, 4, 9])
def test_matches_the_reference_on_random_clicks(rng, radius) -> None:
    for _ in range(20):
        h, w = rng.integers(8, 60, 2)
        labels = rng.integers(0, 15, (h, w), dtype=np.uint8)
        k = int(rng.integers(1, 12))
        clicks = np.stack([rng.integers(0, w, k), rng.integers(0, h, k), rng.integers(0, 15, k)], 1).astype(np.int32)
        clicks[-1, :2] = clicks[0, :2]  # the same pixel clicked twice: the later label must win
        before = labels.copy()
        got = enforce_clicks(labels, clicks, radius)
        assert np.array_equal(labels, before), "the engine's output must not be modified"
        assert np.array_equal(got, enforce_reference(labels, clicks, radius))
        if radius:
            latest = {(x, y): lab for x, y, lab in clicks.tolist()}  # the last click at each pixel
            assert all(got[y, x] == lab for (x, y), lab in latest.items())


def test_no_clicks_and_disk_shape() -> None:
    labels = np.zeros((21, 21), np.uint8)
    assert np.array_equal(enforce_clicks(labels, np.zeros((0, 3), np.int32), 4), labels)
    disk = enforce_clicks(labels, np.array([[10, 10, 3]], np.int32), 4)
    assert (disk == 3).sum() == 49  # lattice points with x^2 + y^2 <= 16
    assert disk[10, 14] == 3 and disk[13, 13] == 0


def test_session_honours_every_click_and_radius_zero_is_the_network(tiny_checkpoint, rng) -> None:
    photo = rng.integers(0, 256, (150, 90, 3), dtype=np.uint8)
    enforced, alone = Session.open(tiny_checkpoint), Session.open(tiny_checkpoint, click_radius=0)
    assert enforced.click_radius == DEFAULT_CLICK_RADIUS > 0
    clicks = [(5, 7, 2), (60, 100, 5), (89, 149, 13), (30, 30, 0), (31, 30, 9)]
    for session in (enforced, alone):
        session.set_image(photo)
        for x, y, label in clicks:
            session.add_click(x, y, label)
    net, painted = alone.predict().labels, enforced.predict().labels
    assert all(painted[y, x] == label for x, y, label in clicks)  # every clicked pixel, in image pixels
    assert any(net[y, x] != label for x, y, label in clicks), "the untrained network should ignore some clicks"
    changed = painted != net
    assert changed.any() and changed.mean() < 0.1  # small disks, the rest is the network's
    with pytest.raises(InputError, match="radius"):
        Session.open(tiny_checkpoint, click_radius=-1)
    with pytest.raises(InputError, match="radius"):
        enforced.click_radius = 2.5
