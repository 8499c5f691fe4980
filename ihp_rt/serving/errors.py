"""Which HTTP status each error maps to, and how errors are documented.

Client mistakes are 4xx. Everything else is the server's fault and a 5xx: 503 where a retry
may succeed (the backend, the session store or a service it calls failed for now), 502 where a
service it calls answered with a fault, 500 otherwise. A 400 for a server fault would tell the
client to change its request, and hide the fault from whoever watches the 5xx rate.
"""

from __future__ import annotations

from pydantic import BaseModel

from ihp_rt.errors import BackendError, IhpError, InputError
from ihp_rt.serving.store import ClickLimit, SessionConflict, SessionNotFound, StoreFull, StoreUnavailable

__all__ = ["ERRORS", "RETRY_AFTER_S", "STATUS", "ClickLimit", "ErrorOut", "Misconfigured", "UpstreamError",
           "UpstreamUnavailable", "is_server_fault", "status_of"]


class UpstreamError(IhpError):
    """A service the server calls for a client (Label Studio, its cloud storage) failed: 502."""


class UpstreamUnavailable(UpstreamError):
    """That service could not be reached or did not answer in time: 503, a retry may succeed."""


class Misconfigured(IhpError):
    """The server is set up wrong (a setting missing, a credential refused): 500 until an operator fixes it."""


# The first match counts, so a subclass comes before its base.
STATUS: dict[type[Exception], int] = {SessionNotFound: 404, ClickLimit: 409, SessionConflict: 409, StoreFull: 429,
                                      InputError: 400, BackendError: 503, StoreUnavailable: 503,
                                      UpstreamUnavailable: 503, UpstreamError: 502, Misconfigured: 500}
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
