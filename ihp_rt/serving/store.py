"""The server's sessions: bounded in number, expiring when idle, one lock each.

A full store refuses new sessions (the client is told to retry) rather than evicting a
session that someone is still annotating; idle sessions past their TTL are dropped first,
least recently used first.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ihp_rt.errors import IhpError
from ihp_rt.session import Prediction, Session


class SessionNotFound(IhpError, KeyError):
    """No live session has this id (never created, deleted, or expired)."""

    def __str__(self) -> str:
        return str(self.args[0])


class StoreFull(IhpError):
    """Every session slot is taken by a session used within its TTL."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Entry:
    """One client's session and the lock that serialises its requests."""

    id: str
    session: Session
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    prediction: Prediction | None = None  # the mask of the current clicks, once computed


class SessionStore:
    """Thread-safe map of session id -> :class:`Entry`, in least-recently-used order."""

    def __init__(self, capacity: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity, self.ttl_s, self._clock = capacity, ttl_s, clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._entries)

    def check_room(self) -> None:
        """Refuse now, as :meth:`add` would, before an upload is decoded for nothing."""
        with self._lock:
            self._check_room()

    def add(self, session: Session) -> Entry:
        with self._lock:
            self._check_room()
            entry = Entry(secrets.token_urlsafe(16), session, self._clock())
            self._entries[entry.id] = entry
            return entry

    def get(self, session_id: str) -> Entry:
        """The live entry, marked as just used."""
        with self._lock:
            self._purge()
            entry = self._entries.get(session_id)
            if entry is None:
                raise SessionNotFound(f"no session {session_id!r} (unknown, deleted or expired after "
                                      f"{self.ttl_s:g} s idle)")
            entry.last_used = self._clock()
            self._entries.move_to_end(session_id)
            return entry

    def remove(self, session_id: str) -> None:
        with self._lock:
            if self._entries.pop(session_id, None) is None:
                raise SessionNotFound(f"no session {session_id!r}")

    def _check_room(self) -> None:
        self._purge()
        if len(self._entries) >= self.capacity:
            oldest = next(iter(self._entries.values()))
            wait = max(1, round(self.ttl_s - (self._clock() - oldest.last_used)))
            raise StoreFull(f"the server holds its maximum of {self.capacity} sessions; delete one or retry in "
                            f"{wait} s, when the least recently used one expires", wait)

    def _purge(self) -> None:
        now = self._clock()
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.last_used < self.ttl_s:
                break
            del self._entries[oldest.id]
