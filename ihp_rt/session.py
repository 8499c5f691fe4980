"""The interactive session: one image, a growing list of clicks, a mask per predict.

The click maps are a pure function of the click list, so undo is "drop the last click": no
network state needs to be kept. Pre-processing happens in set_image, never per click.

Many sessions may share one loaded network (a server's clients): each session keeps its own
pre-processed image, and the shared engine re-fills its input buffer only when the session
asking differs from the last one, so a click costs the per-click step alone.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ihp_rt.backends.base import Backend
from ihp_rt.click_enforcement import DEFAULT_CLICK_RADIUS, enforce_clicks
from ihp_rt.clicks import Click, make_click
from ihp_rt.correction import Pass, PassCache, corrected, network_clicks
from ihp_rt.errors import InputError
from ihp_rt.geometry import Letterbox, prepare_image
from ihp_rt.images import check_image
from ihp_rt.labels import LabelSet
from ihp_rt.spec import ModelSpec

if TYPE_CHECKING:
    from ihp_rt.model.checkpoint import Checkpoint


@dataclass(frozen=True)
class Prediction:
    """A label map in image pixels, the clicks that produced it, and what it cost: its latency,
    and the work behind it -- network passes and corrections (:mod:`ihp_rt.correction`; a click
    the cache continues costs one of either, or neither when its pixel already shows its label; a
    click list replayed on a worker that never saw it costs one network pass and one correction
    per later click)."""

    labels: np.ndarray
    clicks: tuple[Click, ...]
    backend: str
    latency_ms: float
    network_passes: int = 1
    corrections_run: int = 0


PASS_CACHE_BYTES = 128 * 2**20  # a correction pass of the default model holds ~1.1 MB, a network pass ~3 MB

# id(backend) -> its live SharedBackend. Weak *values*: a wrapper holds its backend, so a
# weak-key map (backend -> wrapper) would keep every backend alive through its own value.
# The id cannot be reused while the wrapper lives, since the wrapper keeps the backend.
_SHARED: weakref.WeakValueDictionary[int, SharedBackend] = weakref.WeakValueDictionary()


def _live_wrapper(backend: Backend) -> SharedBackend | None:
    wrapper = _SHARED.get(id(backend))
    return wrapper if wrapper is not None and wrapper.backend is backend else None


class SharedBackend:
    """One backend behind any number of sessions; calls are serialised by a lock.

    A backend holds one image in its input buffer; ``_loaded`` remembers which session's
    image that is (by identity of its pre-processed array), so switching sessions costs one
    buffer copy and staying with a session costs nothing.

    Where the backend answers corrections, ``passes`` keeps recent passes (:mod:`ihp_rt.correction`):
    a click after a cached click list costs one correction, and a list not seen here is replayed
    from its network pass.
    """

    def __init__(self, backend: Backend, cache_bytes: int = PASS_CACHE_BYTES) -> None:
        if _live_wrapper(backend) is not None:  # a second wrapper would believe its own last image is loaded
            raise ValueError("this backend is already shared: use SharedBackend.of(backend)")
        self.backend = backend
        self._lock = threading.Lock()
        self._loaded: np.ndarray | None = None
        self.passes = PassCache(cache_bytes)
        _SHARED[id(backend)] = self

    @classmethod
    def of(cls, backend: Backend) -> SharedBackend:
        """The one SharedBackend of ``backend``, created on first use."""
        return _live_wrapper(backend) or cls(backend)

    def load(self, image: np.ndarray) -> None:
        with self._lock:
            self._load(image)

    def _load(self, image: np.ndarray) -> None:
        if self._loaded is not image:
            self.backend.set_image(image)
            self._loaded = image

    def predict(self, image: np.ndarray, clicks: np.ndarray, corrections: bool = True) -> tuple[Pass, int, int]:
        """The pass of (K, 3) model-frame ``clicks`` on ``image``, and the network passes and
        corrections it took; without ``corrections`` the network runs on every click."""
        with self._lock:
            head = self.backend.corrector if corrections else None
            if head is None:
                self._load(image)
                return self.backend.predict(clicks), 1, 0
            start, count = network_clicks(clicks), len(clicks)
            # the longest cached list the rest can continue from, down to the network's own
            while (done := self.passes.get(image, clicks[:count])) is None and count > start:
                count -= 1
            passes = runs = 0
            if done is None:
                self._load(image)
                done, passes = self.backend.predict(clicks[:start]), 1
                self.passes.put(image, clicks[:start], done)
            for end in range(count + 1, len(clicks) + 1):
                if (fixed := corrected(done, clicks[:end], head)) is not None:
                    done, runs = fixed, runs + 1
                self.passes.put(image, clicks[:end], done)
            return done, passes, runs


class Session:
    """``set_image`` once, then ``add_click`` / ``undo`` / ``reset`` and ``predict``.

    A Session is not itself thread-safe (a server holds one lock per session); sessions that
    share a :class:`SharedBackend` may run in different threads.

    ``click_radius``: every pixel within this many model pixels of a click takes the click's
    label (ihp_rt/click_enforcement.py); 0 returns the network's labels untouched.

    ``corrections``: later clicks are corrections (:mod:`ihp_rt.correction`), so the mask depends
    on the clicks' order; False runs the network on every click, for callers that do not know the
    order (Label Studio sends keypoints grouped by label) or want a full pass per click.
    """

    def __init__(self, backend: Backend | SharedBackend, click_radius: int = DEFAULT_CLICK_RADIUS,
                 corrections: bool = True) -> None:
        self.engine = backend if isinstance(backend, SharedBackend) else SharedBackend.of(backend)
        self.click_radius, self.corrections = click_radius, corrections
        self._box: Letterbox | None = None
        self._image: np.ndarray | None = None
        self._clicks: list[Click] = []

    @classmethod
    def open(cls, model: str | Path | Checkpoint, backend: str = "auto", device: str | None = None,
             threads: int | None = None, half: bool = False, click_radius: int = DEFAULT_CLICK_RADIUS) -> Session:
        """Open a checkpoint (.pt), an .onnx export, a TensorRT .engine or a loaded Checkpoint."""
        from ihp_rt.backends import open_backend

        return cls(open_backend(model, backend, device, threads, half), click_radius)

    @property
    def click_radius(self) -> int:
        return self._click_radius

    @click_radius.setter
    def click_radius(self, radius: int) -> None:
        if not isinstance(radius, int) or radius < 0:
            raise InputError(f"click radius must be an integer >= 0, got {radius!r}")
        self._click_radius = radius

    @property
    def backend(self) -> Backend:
        return self.engine.backend

    @property
    def spec(self) -> ModelSpec:
        return self.backend.spec

    @property
    def labels(self) -> LabelSet:
        return self.spec.labels

    @property
    def clicks(self) -> tuple[Click, ...]:
        return tuple(self._clicks)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the current image."""
        if self._box is None:
            raise InputError("no image set: call set_image first")
        return self._box.height, self._box.width

    def set_image(self, image: np.ndarray) -> None:
        """Pre-process and upload an RGB uint8 (H, W, 3) image; clears the clicks."""
        self._box, self._image = prepare_image(check_image(image), self.spec)
        self.engine.load(self._image)
        self._clicks.clear()

    def add_click(self, x: int, y: int, label: int | str) -> Click:
        click = make_click(x, y, label, self.labels, self.image_size)
        self._clicks.append(click)
        return click

    def undo(self) -> Click | None:
        """Remove and return the last click (None when there is none)."""
        return self._clicks.pop() if self._clicks else None

    def reset(self) -> None:
        self._clicks.clear()

    def predict(self) -> Prediction:
        """Labels for the current clicks (none at all gives the RGB-only prediction)."""
        box, image = self._box, self._image
        if box is None or image is None:
            raise InputError("no image set: call set_image first")
        return predict_mask(self.engine, box, image, self.clicks, self.click_radius, self.corrections)


def predict_mask(engine: SharedBackend, box: Letterbox, image: np.ndarray, clicks: tuple[Click, ...],
                 click_radius: int = DEFAULT_CLICK_RADIUS, corrections: bool = True) -> Prediction:
    """The mask of ``clicks`` on a pre-processed image, in image pixels: network, click disks, map back.
    The one place a mask is made (Session and the server's tentative click lists both call it)."""
    start = time.perf_counter()
    model_clicks = box.clicks_to_model(list(clicks))
    done, passes, runs = engine.predict(image, model_clicks, corrections)
    labels = enforce_clicks(done.labels, model_clicks, click_radius)
    return Prediction(box.labels_to_image(labels), clicks, engine.backend.name, (time.perf_counter() - start) * 1e3,
                      passes, runs)
