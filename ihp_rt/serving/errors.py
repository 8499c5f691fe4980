"""Which HTTP status each error a client can cause maps to, and how errors are documented."""

from __future__ import annotations

from pydantic import BaseModel

from ihp_rt.errors import IhpError, InputError
from ihp_rt.serving.store import SessionNotFound, StoreFull


class ClickLimit(IhpError):
    """The session already holds the configured maximum number of clicks."""


STATUS: dict[type[Exception], int] = {SessionNotFound: 404, ClickLimit: 409, StoreFull: 429, InputError: 400}


def status_of(error: IhpError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)


class ErrorOut(BaseModel):
    """Every 4xx body: one line saying what was wrong and, where it helps, what to do."""

    detail: str


ERRORS = {code: {"model": ErrorOut} for code in (400, 404, 409, 413, 429)}
