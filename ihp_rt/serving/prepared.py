"""A worker's cache of decoded, pre-processed images, and the per-click predict over it.

The store keeps what a session *is* (its image bytes and clicks); this cache keeps what a
worker computed from it: the decoded, letterboxed, normalised image. Entries are keyed by the
image's content hash, so two sessions on one photo share an entry, and the array's identity
is stable while it is cached -- which keeps the backend's own per-image cache (ONNX
Runtime's first-layer output, keyed by that array) warm too. A miss (a session created on
another worker, or evicted here) fetches the bytes from the store and rebuilds the entry:
one decode and pre-process, plus the first layer once in the backend, on that one click.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ihp_rt.clicks import Click
from ihp_rt.errors import IhpError
from ihp_rt.geometry import Letterbox, prepare_image
from ihp_rt.images import check_image, decode_image
from ihp_rt.session import Prediction, SharedBackend, predict_mask
from ihp_rt.spec import ModelSpec


def image_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """One image as the network takes it, and the letterbox that maps clicks and labels."""

    box: Letterbox
    image: np.ndarray


def prepare(rgb: np.ndarray, spec: ModelSpec) -> Prepared:
    box, image = prepare_image(check_image(rgb), spec)
    return Prepared(box, image)


def predict(engine: SharedBackend, prepared: Prepared, clicks: tuple[Click, ...], click_radius: int) -> Prediction:
    """The mask of ``clicks`` on ``prepared``: what :meth:`Session.predict` computes, for a
    click list the caller holds (a tentative one, not yet committed to the store)."""
    return predict_mask(engine, prepared.box, prepared.image, clicks, click_radius)


class PreparedImages:
    """Least-recently-used map of image hash -> :class:`Prepared`, bounded by ``capacity``."""

    def __init__(self, spec: ModelSpec, capacity: int) -> None:
        self.spec, self.capacity = spec, capacity
        self._entries: OrderedDict[str, Prepared] = OrderedDict()
        self._lock = threading.Lock()
        self.misses = 0
        self.miss_ms = 0.0  # time spent rebuilding entries: what cache misses cost this worker

    def put(self, key: str, rgb: np.ndarray) -> Prepared:
        """Prepare a freshly decoded upload and keep it (the creating worker's first click hits)."""
        return self._keep(key, prepare(rgb, self.spec))

    def get(self, key: str, fetch: Callable[[], bytes]) -> Prepared:
        """The cached entry, or one rebuilt from ``fetch()``'s bytes (checked against ``key``)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        start = time.perf_counter()
        data = fetch()
        if image_hash(data) != key:
            raise IhpError("the session's stored image does not match its hash: the store is corrupt")
        entry = self._keep(key, prepare(decode_image(data, "the session's image"), self.spec))
        with self._lock:
            self.misses += 1
            self.miss_ms += (time.perf_counter() - start) * 1e3
        return entry

    def _keep(self, key: str, entry: Prepared) -> Prepared:
        with self._lock:
            kept = self._entries.setdefault(key, entry)  # a concurrent miss may have won: one array per image
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return kept
