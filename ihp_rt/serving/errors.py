"""Which HTTP status each error maps to, and how errors are documented.

Client mistakes are 4xx. Everything else is the server's fault and a 5xx: 503 where a retry
may succeed (the backend or the session store failed for now), 500 otherwise. A 400 for a
server fault would tell the client to change its request, and hide the fault from whoever
watches the 5xx rate.
"""

from __future__ import annotations

from pydantic import BaseModel

from ihp_rt.errors import BackendError, IhpError, InputError
from ihp_rt.serving.store import ClickLimit, SessionConflict, SessionNotFound, StoreFull, StoreUnavailable

__all__ = ["ERRORS", "RETRY_AFTER_S", "STATUS", "ClickLimit", "ErrorOut", "is_server_fault", "status_of"]

STATUS: dict[type[Exception], int] = {SessionNotFound: 404, ClickLimit: 409, SessionConflict: 409, StoreFull: 429,
                                      InputError: 400, BackendError: 503, StoreUnavailable: 503}
RETRY_AFTER_S = 1  # what a 503 tells the client to wait: faults worth retrying are short-lived


def status_of(error: IhpError) -> int:
    """The mapped status; an error nobody mapped is a server fault (500), never the client's."""
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 500)


def is_server_fault(status: int) -> bool:
    return status >= 500


class ErrorOut(BaseModel):
    """Every error body: one line saying what was wrong and, where it helps, what to do."""

    detail: str


ERRORS = {code: {"model": ErrorOut} for code in (400, 404, 409, 413, 429, 500, 503)}
