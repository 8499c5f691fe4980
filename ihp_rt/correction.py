"""Corrections by the correction head, and the rule that makes a mask a function of the clicks.

A model with a correction head (``spec.correction_head``) runs the whole network only on the
clicks up to the last one that names a part for the first time (:func:`network_clicks`); every
later click -- a second click on a part, or any background click -- is a correction: the head
rewrites the stride-4 logits in a window around it (:func:`correct`), and of the model pixels
whose labels that changes, only those connected to the click take the new labels (Progressive
Merge). A later click on a pixel that already shows its label changes nothing (the next
network pass reads it, as it reads every click). So a mask depends on the click list alone, never on the
order requests arrived in: undo gives back the previous mask exactly, and a worker that never saw
a session replays its clicks to the same mask (:class:`PassCache` keeps recent passes so that
replaying is rare).
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


@dataclass(frozen=True, eq=False)  # arrays: compare their fields, never two passes
class Pass:
    """What a pass of the network or of the head leaves: the labels in the model frame and, for
    models with a correction head, the stride-4 logits and projected features the next correction
    reads. Arrays are never written after the pass is made (passes are cached and shared)."""

    labels: np.ndarray  # (S, S) uint8
    coarse: np.ndarray | None = None  # (C, S/4, S/4) float32 logits
    features: np.ndarray | None = None  # (P, S/4, S/4) float32, the head's projection of the decoder's


class Corrector(Protocol):
    """The correction head on some engine: window inputs in, the window's new logits out."""

    def __call__(self, features: np.ndarray, coarse: np.ndarray, clicks: np.ndarray,
                 origin: np.ndarray) -> np.ndarray:
        """(1, P, h, w), (1, C, h, w), (1, K, 3) and (1, 2) float32 -> (1, C, h, w) float32."""


def cell_window(x: int, y: int, rows: int, cols: int, window: int = WINDOW) -> tuple[int, int, int, int]:
    """(row0, col0, height, width) in cells of the window around model pixel (x, y), kept inside
    a grid of ``rows`` x ``cols`` cells (the whole grid where it is smaller than the window)."""
    height, width = min(window, rows), min(window, cols)
    row0 = min(max(y // STRIDE - height // 2, 0), rows - height)
    col0 = min(max(x // STRIDE - width // 2, 0), cols - width)
    return row0, col0, height, width


def network_clicks(clicks: np.ndarray) -> int:
    """How many leading clicks of (K, 3) (x, y, label) rows the network runs on: up to and
    including the last click whose part class (not background) has no earlier click."""
    seen: set[int] = set()
    count = 0
    for i, label in enumerate(clicks[:, 2].tolist()):
        if label != 0 and label not in seen:
            count = i + 1
        seen.add(label)
    return count


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
    ``previous``: the head rewrites the window's logits around the newest click, and the pixels
    whose labels that changes are merged into the labels (:func:`merged`). The logits keep the
    head's whole answer: the next correction compares its own against them, so a change dropped
    here is never merged later."""
    if previous.coarse is None or previous.features is None:
        raise ValueError("a correction needs a pass of a model with a correction head")
    x, y = int(clicks[-1, 0]), int(clicks[-1, 1])
    row0, col0, height, width = cell_window(x, y, *previous.coarse.shape[1:])
    window = (slice(None), slice(row0, row0 + height), slice(col0, col0 + width))
    features, coarse = (np.ascontiguousarray(array[window])[None] for array in (previous.features, previous.coarse))
    new = head(features, coarse, clicks.astype(np.float32)[None], np.array([[row0, col0]], np.float32))[0]
    coarse = previous.coarse.copy()
    coarse[window] = new
    reach = (row0, row0 + height), (col0, col0 + width)
    ys, xs, before = upsampled_labels(previous.coarse, previous.labels.shape, *reach)
    _, _, after = upsampled_labels(coarse, previous.labels.shape, *reach)
    keep = merged(after != before, y - ys.start, x - xs.start)
    labels = previous.labels.copy()
    labels[ys, xs] = np.where(keep, after, labels[ys, xs])
    return Pass(labels, coarse, previous.features)


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
