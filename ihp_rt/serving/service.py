"""The API's operations over a session store and this worker's caches; no HTTP here.

Every click, undo and reset is: read the session from the store, compute the mask of the
changed click list, then commit the change only if the session did not move on meanwhile
(:meth:`SessionStore.commit`). A failed predict therefore stores nothing. Each commit carries
an operation id that the store remembers (the session's last ``RECENT_OPS``), so a commit
sent again is applied once: redis-py resending a script after a dropped connection, and a
client resending a request whose reply it lost -- if it names the operation with an
idempotency key (HTTP ``Idempotency-Key``, WebSocket ``op_id``). Without a key every request
is a new operation: the server cannot tell a resent click from a second click on the same
pixel. Requests for one session on this worker are serialised by a lock, so they never
conflict with each other; a conflict with another worker's request is resolved by reading
again and recomputing, a bounded number of times.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import zlib
from typing import Literal

from ihp_rt.clicks import Click, make_click
from ihp_rt.correction import corrections_name
from ihp_rt.errors import InputError
from ihp_rt.images import decode_image
from ihp_rt.serving.config import ServeConfig
from ihp_rt.serving.mask_cache import MaskCache
from ihp_rt.serving.prepared import Prepared, PreparedImages, image_hash, predict
from ihp_rt.serving.store import (
    Change,
    ModelMismatch,
    SessionConflict,
    SessionState,
    SessionStore,
    click_limit,
)
from ihp_rt.session import Prediction, SharedBackend

ATTEMPTS = 4  # reads + recomputes before a request that keeps losing races is refused (409)
LOCK_STRIPES = 64  # per-session locks, striped: bounded memory however many sessions come and go


def keyed_op_id(key: str, op: str, x: object, y: object, label: object) -> str:
    """The store's operation id for a client's idempotency key: a digest of the key *and* the
    operation it came with, so a key reused by mistake on another click is a new operation, not
    taken for a resend and silently dropped. Fixed length, whatever the key."""
    return "key:" + hashlib.sha256(json.dumps([key, op, x, y, label]).encode()).hexdigest()[:32]


class Sessions:
    """Create sessions and apply operations; safe to call from many threads.

    ``model_id`` names the model served (:func:`~ihp_rt.serving.model_identity.model_identity`);
    with the click radius and the way corrections are answered (two ihp-rt versions may serve one
    checkpoint differently) it is what every session made here records, and what a session must
    record to be served here."""

    def __init__(self, engine: SharedBackend, store: SessionStore, config: ServeConfig, model_id: str) -> None:
        self.engine, self.store = engine, store
        self.max_clicks, self.click_radius = config.max_session_clicks, config.click_radius
        self.model = (f"{model_id}, click radius {config.click_radius}, "
                      f"corrections by {corrections_name(engine.backend.corrector)}")
        self.labels = engine.backend.spec.labels
        self.images = PreparedImages(engine.backend.spec, config.cached_images)
        self.masks = MaskCache(config.mask_cache_bytes)  # id -> its last mask, for mask.png
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def create(self, data: bytes, name: str) -> SessionState:
        """Decode and pre-process an upload (refused before it takes a slot), then store it."""
        self.store.check_room()  # a full store refuses before decoding and pre-processing
        rgb = decode_image(data, f"upload {name!r}")
        key = image_hash(data)
        self.images.put(key, rgb)
        session_id = self.store.create(data, key, rgb.shape[0], rgb.shape[1], self.model)
        return SessionState(session_id, key, rgb.shape[0], rgb.shape[1], self.model, (), 0)

    def apply(self, session_id: str, op: Literal["click", "undo", "reset"], x: object = None, y: object = None,
              label: int | str | None = None, key: str | None = None) -> Prediction:
        """One click / undo / reset, committed only with the mask it gives. ``key``: the
        client's idempotency key; the same operation sent again with it is applied once, and
        the resend gets the session's current mask."""
        if op == "click" and (x is None or y is None or label is None):
            raise InputError('a click needs "x", "y" and "label"')
        op_id = secrets.token_urlsafe(12) if key is None else keyed_op_id(key, op, x, y, label)
        with self._lock(session_id):
            for _ in range(ATTEMPTS):
                state = self._state(session_id)
                # A keyed click may be a resend of one the store already holds, so the click
                # limit is left to the commit, which recognises the resend before the limit.
                change = self._change(state, op, x, y, label, check_limit=key is None)
                prepared = self._prepared(state)
                if change is None:  # undo or reset with no clicks: nothing to commit
                    return self._mask(state, prepared)
                clicks = change.apply(state.clicks)
                prediction = predict(self.engine, prepared, clicks, self.click_radius)
                try:
                    committed = self.store.commit(state, change, op_id)
                except SessionConflict:
                    continue  # another worker changed the session: read it again
                if committed.clicks != clicks:  # this op was applied before (a retried commit), and others since
                    prediction = predict(self.engine, prepared, committed.clicks, self.click_radius)
                self.masks.put(committed.id, prediction)
                return prediction
        raise SessionConflict(f"session {session_id!r} kept changing while this request was computed "
                              f"({ATTEMPTS} tries); send one request at a time per session")

    def mask(self, session_id: str) -> Prediction:
        state = self._state(session_id)
        return self._mask(state, self._prepared(state))

    def clicks(self, session_id: str) -> tuple[Click, ...]:
        return self._state(session_id).clicks

    def delete(self, session_id: str) -> None:
        self.store.remove(session_id)
        self.masks.discard(session_id)

    def _lock(self, session_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(session_id.encode()) % LOCK_STRIPES]

    def _state(self, session_id: str) -> SessionState:
        state = self.store.get(session_id)
        if state.model != self.model:
            raise ModelMismatch(f"session {session_id!r} was made by a worker serving model {state.model}; this "
                                f"worker serves {self.model}, and one session's masks must come from one model: "
                                "upload the image again for a session on this model (during a rolling update), "
                                "or give every worker on one session store the same model and --click-radius")
        return state

    def _prepared(self, state: SessionState) -> Prepared:
        return self.images.get(state.image_hash, lambda: self.store.image(state.id))

    def _change(self, state: SessionState, op: str, x: object, y: object, label: int | str | None,
                check_limit: bool = True) -> Change | None:
        if op == "click":
            click = make_click(x, y, label, self.labels, (state.height, state.width))
            if check_limit and len(state.clicks) >= self.max_clicks:  # early; the commit checks atomically
                raise click_limit(self.max_clicks)
            return Change("push", click)
        if not state.clicks:
            return None
        return Change("pop" if op == "undo" else "clear")

    def _mask(self, state: SessionState, prepared: Prepared) -> Prediction:
        known = self.masks.get(state.id)
        if known is not None and known.clicks == state.clicks:
            return known
        prediction = predict(self.engine, prepared, state.clicks, self.click_radius)
        self.masks.put(state.id, prediction)
        return prediction
