"""A worker's last mask of each session, bounded in bytes.

A mask is a label map at the photo's full resolution: 12 MB for a 12-megapixel photo, 40 MB at
the upload limit (:data:`ihp_rt.images.MAX_PIXELS`). Bounded by count, a worker's cache could
hold far more than its container allows (64 sessions of 40 MP photos are 2.5 GB), so it is
bounded by the bytes it holds. A miss costs one predict (``mask.png``, or an undo with nothing to
undo), never a wrong answer: an entry is used only for the exact click list it was made from.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ihp_rt.session import Prediction


class MaskCache:
    """Least-recently-used map of session id -> its last :class:`Prediction`, holding at most
    ``limit_bytes`` of label maps (0: keep none)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self._entries: OrderedDict[str, Prediction] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Prediction | None:
        with self._lock:
            prediction = self._entries.get(session_id)
            if prediction is not None:
                self._entries.move_to_end(session_id)
            return prediction

    def put(self, session_id: str, prediction: Prediction) -> None:
        """Keep ``prediction`` in place of the session's older one; one larger than the whole
        bound is not kept (evicting every other session's for it would gain nothing)."""
        with self._lock:
            self._drop(session_id)
            if prediction.labels.nbytes > self.limit_bytes:
                return
            self._entries[session_id] = prediction
            self.held_bytes += prediction.labels.nbytes
            while self.held_bytes > self.limit_bytes:
                self._drop(next(iter(self._entries)))

    def discard(self, session_id: str) -> None:
        with self._lock:
            self._drop(session_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _drop(self, session_id: str) -> None:
        """Forget one entry; under the lock."""
        old = self._entries.pop(session_id, None)
        if old is not None:
            self.held_bytes -= old.labels.nbytes
