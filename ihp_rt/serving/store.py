"""Where sessions live: what a session *is* (its image, clicks, label set, expiry), apart
from what a worker computes from it.

A store holds the uploaded image bytes and the click list; a worker keeps only caches it can
rebuild from the store (see :mod:`.prepared`). That split is what lets any number of workers
share one store (:mod:`.redis_store`) and lets any click reach any worker. This module has
the contract and the in-process store, the one ``ihp-rt serve`` uses without ``--redis``.

Changes are compare-and-set: a worker reads a session (at some ``version``), computes the mask
of the changed click list, and commits the change only if the session is still at that
version. So the click list never holds a click whose mask failed, and two workers changing
one session at once cannot lose either change (the loser recomputes). Each commit carries an
operation id; a commit retried after a lost reply is recognised and not applied twice.

A full store refuses new sessions (the client is told to retry) rather than evicting a
session that someone is still annotating; idle sessions past their TTL are dropped.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from ihp_rt.clicks import Click
from ihp_rt.errors import IhpError

RECENT_OPS = 16  # operation ids remembered per session, to recognise a retried commit


class SessionNotFound(IhpError, KeyError):
    """No live session has this id (never created, deleted, expired, or lost with the store)."""

    def __str__(self) -> str:
        return str(self.args[0])


class StoreFull(IhpError):
    """Every session slot is taken by a session used within its TTL."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClickLimit(IhpError):
    """The session already holds the configured maximum number of clicks."""


class SessionConflict(IhpError):
    """The session kept changing under this request (other requests for it, on other workers)."""


class StoreUnavailable(IhpError):
    """The session store cannot be reached just now; the request may succeed if retried."""


class ModelMismatch(SessionConflict):
    """The session was made by a worker serving another model (or click radius): during a
    rolling update old and new workers share one store, and one session's masks must all come
    from one model. A conflict (409) like the other: the request is sound, the session's state
    refuses it here."""


@dataclass(frozen=True)
class SessionState:
    """One session as the store has it, at one version."""

    id: str
    image_hash: str  # sha256 of the uploaded bytes: the key of every worker's caches
    height: int
    width: int
    model: str  # the identity of the model (and click radius) that computes its masks
    clicks: tuple[Click, ...]
    version: int  # bumped by every committed change


@dataclass(frozen=True)
class Change:
    """What a request does to the click list: append one click, drop the last, drop all."""

    op: Literal["push", "pop", "clear"]
    click: Click | None = None

    def apply(self, clicks: tuple[Click, ...]) -> tuple[Click, ...]:
        if self.op == "push":
            assert self.click is not None
            return (*clicks, self.click)
        return clicks[:-1] if self.op == "pop" else ()


class SessionStore(Protocol):
    """What the app needs of a store; every method is atomic on its own."""

    capacity: int
    ttl_s: float

    def __len__(self) -> int:
        """Live sessions, across every worker sharing the store."""

    def check_room(self) -> None:
        """Raise StoreFull now, as :meth:`create` would, before an upload is decoded for nothing."""

    def create(self, image: bytes, image_hash: str, height: int, width: int, model: str) -> str:
        """A new session (no clicks) holding ``image``, its masks to be made by ``model``; its id."""

    def get(self, session_id: str) -> SessionState:
        """The live session, marked as just used."""

    def image(self, session_id: str) -> bytes:
        """The session's uploaded image bytes (a worker's cache miss)."""

    def commit(self, state: SessionState, change: Change, op_id: str) -> SessionState:
        """Apply ``change`` if the session is still at ``state.version`` (or ``op_id`` was
        already applied); raise SessionConflict if it moved on, ClickLimit on a push past the
        limit, SessionNotFound if it is gone."""

    def remove(self, session_id: str) -> None:
        """Delete the session; SessionNotFound if there is none."""


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


def not_found(session_id: str, ttl_s: float, lost: str = "lost when the session store restarted") -> SessionNotFound:
    return SessionNotFound(f"no session {session_id!r} (unknown, deleted, expired after {ttl_s:g} s idle, "
                           f"or {lost}): upload the image again")


def click_limit(limit: int) -> ClickLimit:
    return ClickLimit(f"this session already has the maximum of {limit} clicks; undo or reset first")


def store_full(capacity: int, wait_s: float) -> StoreFull:
    wait = max(1, round(wait_s))
    return StoreFull(f"the server holds its maximum of {capacity} sessions; delete one or retry in {wait} s, "
                     "when the least recently used one expires", wait)


@dataclass
class _Entry:
    state: SessionState
    image: bytes
    last_used: float
    ops: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_OPS))


class MemoryStore:
    """The in-process store: a thread-safe map in least-recently-used order.

    ``clock`` is injectable so tests can expire sessions without waiting.
    """

    def __init__(self, capacity: int, ttl_s: float, max_clicks: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity, self.ttl_s, self.max_clicks, self._clock = capacity, ttl_s, max_clicks, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._entries)

    def check_room(self) -> None:
        with self._lock:
            self._check_room()

    def create(self, image: bytes, image_hash: str, height: int, width: int, model: str) -> str:
        with self._lock:
            self._check_room()
            state = SessionState(new_session_id(), image_hash, height, width, model, (), 0)
            self._entries[state.id] = _Entry(state, image, self._clock())
            return state.id

    def get(self, session_id: str) -> SessionState:
        with self._lock:
            return self._live(session_id).state

    def image(self, session_id: str) -> bytes:
        with self._lock:
            return self._live(session_id).image

    def commit(self, state: SessionState, change: Change, op_id: str) -> SessionState:
        with self._lock:
            entry = self._live(state.id)
            if op_id in entry.ops:
                return entry.state
            if entry.state.version != state.version:
                raise SessionConflict(f"session {state.id!r} changed while this request was computed")
            if change.op == "push" and len(entry.state.clicks) >= self.max_clicks:
                raise click_limit(self.max_clicks)
            entry.state = replace(entry.state, clicks=change.apply(entry.state.clicks), version=state.version + 1)
            entry.ops.append(op_id)
            return entry.state

    def remove(self, session_id: str) -> None:
        with self._lock:
            self._purge()
            if self._entries.pop(session_id, None) is None:
                raise SessionNotFound(f"no session {session_id!r}")

    def _live(self, session_id: str) -> _Entry:
        """The entry, marked as just used; under the lock."""
        self._purge()
        entry = self._entries.get(session_id)
        if entry is None:
            raise not_found(session_id, self.ttl_s)
        entry.last_used = self._clock()
        self._entries.move_to_end(session_id)
        return entry

    def _check_room(self) -> None:
        self._purge()
        if len(self._entries) >= self.capacity:
            oldest = next(iter(self._entries.values()))
            raise store_full(self.capacity, self.ttl_s - (self._clock() - oldest.last_used))

    def _purge(self) -> None:
        now = self._clock()
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.last_used < self.ttl_s:
                break
            del self._entries[oldest.state.id]
