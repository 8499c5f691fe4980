"""Corrections without the network, and the rule that makes a mask a function of the clicks.

The whole network runs only on the clicks up to the last one that names a part for the first time,
the clicks of that part right after it, and the first click after those (:func:`network_clicks`);
every later click -- a second click on a part, or any background click -- is a correction. A
correction rewrites the stride-4 logits the last pass left in a window around its click
(:func:`correct`): a model with a correction head runs its head there
(ihp_rt/model/correction_head.py), every other model raises the clicked class's logits around the
click (:class:`Boost`). Of the model pixels whose labels that changes, only those connected to the
click take the new labels (Progressive Merge). A later click on a pixel that already shows its label
changes nothing (the next network pass reads it, as it reads every click). So a mask depends on the
click list alone, never on the order requests arrived in: undo gives back the previous mask exactly,
and a worker that never saw a session replays its clicks to the same mask (:class:`PassCache` keeps
recent passes so that replaying is rare).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np

STRIDE = 4  # model pixels per cell of the decoder's features and of the coarse logits
WINDOW = 48  # cells (x STRIDE model pixels) of the square a correction rewrites around its click
BOOST_MARGIN = 1.0  # logits by which a Boost correction's class wins its clicked pixel
BOOST_SIGMA = 16.0  # model pixels over which a Boost correction falls off (a Gaussian's sigma)


@dataclass(frozen=True, eq=False)  # arrays: compare their fields, never two passes
class Pass:
    """What a pass of the network or a correction leaves: the labels in the model frame, the stride-4
    logits the next correction reads (None from an export that lacks them) and, for models with a
    correction head, its projected features. Arrays are never written after the pass is made
    (passes are cached and shared)."""

    labels: np.ndarray  # (S, S) uint8
    coarse: np.ndarray | None = None  # (C, S/4, S/4) float32 logits
    features: np.ndarray | None = None  # (P, S/4, S/4) float32, the head's projection of the decoder's


class Corrector(Protocol):
    """What answers a correction on some engine: window inputs in, the window's new logits out."""

    def __call__(self, features: np.ndarray | None, coarse: np.ndarray, clicks: np.ndarray,
                 origin: np.ndarray) -> np.ndarray:
        """(1, P, h, w) or None, (1, C, h, w), (1, K, 3) and (1, 2) float32 -> (1, C, h, w) float32."""


class Boost:
    """The correction of every model without a correction head: the clicked class's logits are
    raised by a Gaussian of ``sigma`` model pixels around the click, just high enough that the
    class wins the clicked pixel by ``margin`` after the bilinear upsampling to ``size`` model
    pixels. Nothing is learned and no network runs: the network's own logits decide how far the
    correction spreads, where the clicked class was already close.

    Measured against the network's own pass on every correction (issue 28; 64 held-out photos,
    README "Corrections that take"): every correction honoured, mIoU after 20 corrections higher,
    at a fraction of a network pass per correction. Sigma and margin were chosen on those photos.
    """

    def __init__(self, size: int, margin: float = BOOST_MARGIN, sigma: float = BOOST_SIGMA) -> None:
        self.size, self.margin, self.sigma = size, margin, sigma
        self.cells = -(-size // STRIDE)  # the stride-4 grid: two stride-2 layers with "same" padding

    def __call__(self, features: np.ndarray | None, coarse: np.ndarray, clicks: np.ndarray,
                 origin: np.ndarray) -> np.ndarray:
        x, y, label = (int(v) for v in clicks[0, -1])
        logits = coarse[0]
        row0, col0 = int(origin[0, 0]), int(origin[0, 1])
        height, width = logits.shape[1:]
        r0, r1, rw = (tap[y] for tap in bilinear_taps(self.cells, self.size))
        c0, c1, cw = (tap[x] for tap in bilinear_taps(self.cells, self.size))
        if not (row0 <= r0 and r1 < row0 + height and col0 <= c0 and c1 < col0 + width):
            raise ValueError(f"the window at cells ({row0}, {col0}) does not hold the clicked pixel's ({x}, {y})")
        # the Gaussian on the cells, centred on the clicked pixel's place in the grid
        scale = self.cells / self.size
        centre_row, centre_col = (y + 0.5) * scale - 0.5 - row0, (x + 0.5) * scale - 0.5 - col0
        sigma = self.sigma * scale
        gauss = (np.exp(-((np.arange(height) - centre_row) ** 2) / (2 * sigma ** 2))[:, None]
                 * np.exp(-((np.arange(width) - centre_col) ** 2) / (2 * sigma ** 2))[None, :])

        def at_click(grid: np.ndarray) -> np.ndarray:
            rows = grid[..., r0 - row0, :] * (1 - rw) + grid[..., r1 - row0, :] * rw
            return rows[..., c0 - col0] * (1 - cw) + rows[..., c1 - col0] * cw

        scores = at_click(logits)
        deficit = np.delete(scores, label).max() - scores[label] + self.margin
        new = logits.copy()
        new[label] += max(float(deficit), 0.0) / float(at_click(gauss)) * gauss
        return new[None].astype(np.float32, copy=False)


def corrections_name(corrector: Corrector | None) -> str:
    """How a backend answers corrections, in words: part of the model identity a served session
    records, so that workers answering corrections differently never share a session."""
    if corrector is None:
        return "the network"
    if isinstance(corrector, Boost):
        return f"boost (sigma {corrector.sigma:g} px, margin {corrector.margin:g})"
    return "the correction head"


def cell_window(x: int, y: int, rows: int, cols: int, window: int = WINDOW) -> tuple[int, int, int, int]:
    """(row0, col0, height, width) in cells of the window around model pixel (x, y), kept inside
    a grid of ``rows`` x ``cols`` cells (the whole grid where it is smaller than the window)."""
    height, width = min(window, rows), min(window, cols)
    row0 = min(max(y // STRIDE - height // 2, 0), rows - height)
    col0 = min(max(x // STRIDE - width // 2, 0), cols - width)
    return row0, col0, height, width


def network_clicks(clicks: np.ndarray, first_correction: bool = True) -> int:
    """How many leading clicks of (K, 3) (x, y, label) rows the network runs on: up to and
    including the last click whose part class (not background) has no earlier click, the clicks of
    that class that follow it without another class between, and (``first_correction``) the one
    click after those. Measured on the 64 held-out photos (README "Corrections that take"):

    * a part of several components (two arms, two shoes) is named by one click per component,
      and the network should place them all: correcting them instead cost 0.6 points after the
      initial clicks (with an earlier, full-resolution version of the boost);
    * the first correction usually falls in the largest wrong region, which the network's pass
      mends better than a local correction: running the network on it gained 1.1 points after one
      correction and 0.6 after ten, for one network pass per image.
    """
    labels = clicks[:, 2].tolist()
    seen: set[int] = set()
    count = 0
    for i, label in enumerate(labels):
        if label != 0 and label not in seen:
            count = i + 1
        seen.add(label)
    while count and count < len(labels) and labels[count] == labels[count - 1]:
        count += 1
    return min(count + 1, len(labels)) if first_correction and count else count


@lru_cache(maxsize=16)
def bilinear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``target`` output positions: the two source indices and the weight of the
    second, as PyTorch's bilinear resize (align_corners=False) and ONNX's half_pixel Resize compute
    them, in float32 like both."""
    scale = np.float32(source) / np.float32(target)
    position = np.maximum((np.arange(target, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    first = position.astype(np.int64)
    second = np.minimum(first + 1, source - 1)
    weight = position - first.astype(np.float32)
    for array in (first, second, weight):
        array.setflags(write=False)
    return first, second, weight


def reached(first: np.ndarray, second: np.ndarray, lo: int, hi: int) -> slice:
    """The output positions whose two source taps include a source index in [lo, hi)."""
    return slice(int(np.searchsorted(second, lo)), int(np.searchsorted(first, hi)))


def upsampled_labels(coarse: np.ndarray, shape: tuple[int, int], rows: tuple[int, int],
                     cols: tuple[int, int]) -> tuple[slice, slice, np.ndarray]:
    """(row slice, column slice, labels) of the arg-max of ``coarse`` (C, h, w) logits upsampled
    bilinearly to ``shape``, over every pixel whose value reads a cell of rows x cols."""
    r0, r1, rw = bilinear_taps(coarse.shape[1], shape[0])
    c0, c1, cw = bilinear_taps(coarse.shape[2], shape[1])
    ys, xs = reached(r0, r1, *rows), reached(c0, c1, *cols)
    part = coarse[:, :, c0[xs]] * (1 - cw[xs]) + coarse[:, :, c1[xs]] * cw[xs]
    part = part[:, r0[ys]] * (1 - rw[ys])[:, None] + part[:, r1[ys]] * rw[ys][:, None]
    return ys, xs, part.argmax(0).astype(np.uint8)


def merged(changed: np.ndarray, row: int, col: int) -> np.ndarray:
    """Progressive Merge (FocalClick, Chen et al. 2022): of the ``changed`` pixels, only the
    8-connected regions that reach the clicked pixel (``row``, ``col``) or its neighbours; a
    correction's changes elsewhere are dropped, so it cannot repaint parts the user did not point
    at. Pixels, not cells: a thin wrong region under the click often flips no cell's arg-max yet
    flips its pixels, which read neighbouring cells through the bilinear upsampling (measured:
    merging by cell labels dropped a fifth of the corrections the head had honoured, and merging
    by changed logits kept the head's far-reaching claims)."""
    _, regions = cv2.connectedComponents(changed.astype(np.uint8), connectivity=8)
    height, width = changed.shape
    row, col = min(max(row, 0), height - 1), min(max(col, 0), width - 1)
    near = np.unique(regions[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2])
    return np.isin(regions, near[near > 0])


def correct(previous: Pass, clicks: np.ndarray, head: Corrector) -> Pass:
    """The pass after the last of ``clicks`` (K, 3) int model-frame rows, the others already in
    ``previous``: ``head`` (a correction head or :class:`Boost`) rewrites the window's logits around
    the newest click, and of the pixels where the new logits disagree with the labels shown, those
    connected to the click take the new labels (:func:`merged`). The logits keep the whole answer,
    so a change dropped here is merged by a later click that touches it (measured: comparing
    against the old logits instead left 6 % of corrections unhonoured, where an earlier correction
    had already raised the class in logits the labels never showed)."""
    if previous.coarse is None:
        raise ValueError("a correction needs a pass that kept its stride-4 logits")
    x, y = int(clicks[-1, 0]), int(clicks[-1, 1])
    row0, col0, height, width = cell_window(x, y, *previous.coarse.shape[1:])
    window = (slice(None), slice(row0, row0 + height), slice(col0, col0 + width))
    coarse = np.ascontiguousarray(previous.coarse[window])[None]
    features = None if previous.features is None else np.ascontiguousarray(previous.features[window])[None]
    new = head(features, coarse, clicks.astype(np.float32)[None], np.array([[row0, col0]], np.float32))[0]
    coarse = previous.coarse.copy()
    coarse[window] = new
    reach = (row0, row0 + height), (col0, col0 + width)
    ys, xs, after = upsampled_labels(coarse, previous.labels.shape, *reach)
    labels = previous.labels.copy()
    shown = labels[ys, xs]
    keep = merged(after != shown, y - ys.start, x - xs.start)
    labels[ys, xs] = np.where(keep, after, shown)
    return Pass(labels, coarse, previous.features)


def corrected(previous: Pass, clicks: np.ndarray, head: Corrector) -> Pass | None:
    """:func:`correct`, or None where the newest click lands on a pixel that already shows its
    label: such a click changes nothing (the next network pass reads it, as it reads every click)."""
    x, y, label = clicks[-1].tolist()
    return None if previous.labels[y, x] == label else correct(previous, clicks, head)


class PassCache:
    """Passes of recent click lists on recent images, least recently used dropped first, bounded
    in bytes. The features of a network pass are shared by every correction after it and counted
    once while any of them is kept. Images are held weakly: an entry never keeps a session's image
    alive, and one whose image is gone (its id perhaps reused) is never returned."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[int, bytes], tuple[weakref.ref, Pass]] = OrderedDict()
        self._shared: dict[int, int] = {}  # id(features) -> entries holding them

    def get(self, image: np.ndarray, clicks: np.ndarray) -> Pass | None:
        key = (id(image), clicks.tobytes())
        entry = self._entries.get(key)
        if entry is None or entry[0]() is not image:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, image: np.ndarray, clicks: np.ndarray, result: Pass) -> None:
        key = (id(image), clicks.tobytes())
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (weakref.ref(image), result)
        self.bytes += self._own_bytes(result, +1)
        while self.bytes > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[int, bytes]) -> None:
        _, result = self._entries.pop(key)
        self.bytes -= self._own_bytes(result, -1)

    def _own_bytes(self, result: Pass, change: int) -> int:
        """Bytes an entry adds (change +1) or frees (-1), its features counted by the first holder."""
        size = result.labels.nbytes + (0 if result.coarse is None else result.coarse.nbytes)
        if result.features is not None:
            key = id(result.features)
            holders = self._shared.get(key, 0) + change
            if holders:
                self._shared[key] = holders
            else:
                del self._shared[key]
            if (change > 0 and holders == 1) or (change < 0 and holders == 0):
                size += result.features.nbytes
        return size
