"""Simulated clicks (paper III-D and IV-A), shared by training and evaluation.

Every function takes a label map (uint8 class ids, ``ignore`` marking unlabelled pixels) and a
NumPy Generator, so a seed fixes every click. The one rule both training and evaluation use --
"of N_c random pixels of a region, keep the one farthest from the region's boundary" (Eq. 4) --
is :func:`farthest_of_candidates`; the image border counts as boundary.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from ihp_rt.clicks import Click
from ihp_rt.edges import edge_band

N_CANDIDATES = 5
D_MARGIN = 10
BACKGROUND_EXTRA = (3, 6)
STRATEGIES = ("random", "near_edge", "random_only")


def farthest_of_candidates(mask: np.ndarray, rng: np.random.Generator, n_candidates: int = N_CANDIDATES
                           ) -> tuple[int, int]:
    """(x, y) of the pixel, among ``n_candidates`` random pixels of ``mask``, farthest from its boundary."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        raise ValueError("empty region")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box = np.pad(mask[y0:y1, x0:x1].astype(np.uint8), 1)  # zero border: the image edge is a boundary
    dist = cv2.distanceTransform(box, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    pick = rng.choice(len(ys), size=min(n_candidates, len(ys)), replace=False)
    best = pick[np.argmax(dist[ys[pick] - y0 + 1, xs[pick] - x0 + 1])]
    return int(xs[best]), int(ys[best])


def part_components(labels: np.ndarray, ignore: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(class id, component mask) for every 8-connected component of every part (background excluded)."""
    for label in np.unique(labels).tolist():
        if label == 0 or label == ignore:
            continue
        count, comp = cv2.connectedComponents((labels == label).astype(np.uint8), connectivity=8)
        for k in range(1, count):
            yield label, comp == k


def background_click(labels: np.ndarray, rng: np.random.Generator, ignore: int | None,
                     d_margin: int = D_MARGIN) -> Click | None:
    """A background pixel at least ``d_margin`` px from every part (the farthest one if none is)."""
    background = labels == 0
    if not background.any():
        return None
    parts = ~background if ignore is None else ~background & (labels != ignore)
    dist = cv2.distanceTransform((~parts).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    far = background & (dist >= d_margin)
    if far.any():
        ys, xs = np.nonzero(far)
        i = rng.integers(len(ys))
        return Click(int(xs[i]), int(ys[i]), 0)
    y, x = np.unravel_index(np.argmax(np.where(background, dist, -1)), dist.shape)
    return Click(int(x), int(y), 0)


def central_clicks(labels: np.ndarray, rng: np.random.Generator, ignore: int | None = None,
                   d_margin: int = D_MARGIN, with_background: bool = True) -> list[Click]:
    """One central click per component of every part, plus one background click (paper III-D)."""
    clicks = [Click(*farthest_of_candidates(mask, rng), label) for label, mask in part_components(labels, ignore)]
    if with_background and (bg := background_click(labels, rng, ignore, d_margin)) is not None:
        clicks.append(bg)
    return clicks


def random_component_clicks(labels: np.ndarray, rng: np.random.Generator, ignore: int | None = None,
                            d_margin: int = D_MARGIN) -> list[Click]:
    """Ablation "Random-Clicks-Only": a random pixel per component instead of a central one."""
    clicks = []
    for label, mask in part_components(labels, ignore):
        x, y = farthest_of_candidates(mask, rng, n_candidates=1)
        clicks.append(Click(x, y, label))
    if (bg := background_click(labels, rng, ignore, d_margin)) is not None:
        clicks.append(bg)
    return clicks


def _sample_extra(labels: np.ndarray, allowed: np.ndarray, count: int, rng: np.random.Generator,
                  background_range: tuple[int, int]) -> list[Click]:
    """``count`` pixels drawn uniformly from ``allowed``, then the background ones clamped into
    ``background_range`` (dropping surplus or drawing more background pixels from ``allowed``)."""
    ys, xs = np.nonzero(allowed)
    if not len(ys):
        return []
    pick = rng.choice(len(ys), size=min(count, len(ys)), replace=False)
    is_bg = labels[ys[pick], xs[pick]] == 0
    parts, bgs = pick[~is_bg], pick[is_bg]
    lo, hi = background_range
    bg_pool = np.flatnonzero(labels[ys, xs] == 0)
    if len(bgs) > hi:
        bgs = bgs[:hi]
    elif len(bgs) < lo and len(bg_pool):
        fresh = np.setdiff1d(bg_pool, bgs)
        bgs = np.concatenate([bgs, rng.choice(fresh, size=min(lo - len(bgs), len(fresh)), replace=False)])
    chosen = np.concatenate([parts, bgs]).astype(np.int64)
    return [Click(int(xs[i]), int(ys[i]), int(labels[ys[i], xs[i]])) for i in chosen]


def random_extra_clicks(labels: np.ndarray, rng: np.random.Generator, count: int, ignore: int | None = None,
                        background_range: tuple[int, int] = BACKGROUND_EXTRA) -> list[Click]:
    """Random-Sampling: extra clicks anywhere, labelled by the ground truth (paper's best)."""
    allowed = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    return _sample_extra(labels, allowed, count, rng, background_range)


def near_edge_extra_clicks(labels: np.ndarray, rng: np.random.Generator, count: int, ignore: int | None = None,
                           d_margin: int = D_MARGIN, background_range: tuple[int, int] = BACKGROUND_EXTRA
                           ) -> list[Click]:
    """Near-Edge-Sampling: extra clicks within ``d_margin`` px of part boundaries."""
    return _sample_extra(labels, edge_band(labels, d_margin, ignore), count, rng, background_range)


def training_clicks(labels: np.ndarray, rng: np.random.Generator, strategy: str = "random",
                    extra_range: tuple[int, int] = (1, 15), ignore: int | None = None,
                    d_margin: int = D_MARGIN) -> list[Click]:
    """A full simulated click set for one training sample: initial clicks, then extra clicks."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    count = int(rng.integers(extra_range[0], extra_range[1] + 1))
    if strategy == "random_only":
        return random_component_clicks(labels, rng, ignore, d_margin)
    clicks = central_clicks(labels, rng, ignore, d_margin)
    if strategy == "near_edge":
        return clicks + near_edge_extra_clicks(labels, rng, count, ignore, d_margin)
    return clicks + random_extra_clicks(labels, rng, count, ignore)


def correction_clicks(prediction: np.ndarray, truth: np.ndarray, rng: np.random.Generator, count: int,
                      ignore: int | None = None) -> list[Click]:
    """Clicks at the centres of the ``count`` largest wrongly labelled regions (largest first),
    each labelled with the ground truth there: fewer where fewer regions are wrong."""
    if count <= 0:
        return []
    comp, largest = wrong_regions(prediction, truth, ignore)
    clicks = []
    for region in largest[:count].tolist():
        x, y = farthest_of_candidates(comp == region, rng)
        clicks.append(Click(x, y, int(truth[y, x])))
    return clicks


def wrong_regions(prediction: np.ndarray, truth: np.ndarray, ignore: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(component id per pixel, the ids of the wrongly labelled 8-connected regions, largest first);
    no ids when nothing is wrong."""
    wrong = prediction != truth
    if ignore is not None:
        wrong &= truth != ignore
    if not wrong.any():
        return np.zeros(wrong.shape, np.int32), np.zeros(0, np.int64)
    _, comp, stats, _ = cv2.connectedComponentsWithStats(wrong.astype(np.uint8), connectivity=8)
    # Stable: among equal areas the first component wins, as np.argmax would pick it.
    return comp, 1 + np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable")


def correction_click(prediction: np.ndarray, truth: np.ndarray, rng: np.random.Generator,
                     ignore: int | None = None) -> Click | None:
    """The evaluation user's next click (paper IV-A): at the centre of the largest wrongly
    labelled region, labelled with the ground truth there; None when nothing is wrong."""
    clicks = correction_clicks(prediction, truth, rng, 1, ignore)
    return clicks[0] if clicks else None
