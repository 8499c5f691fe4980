"""Exception types.

Every error a user can cause derives from :class:`IhpError`, so the CLI (and the server later)
can turn it into a one-line message without ever hiding a real bug behind a blanket
``except Exception``.
"""

from __future__ import annotations


class IhpError(Exception):
    """Base class of all errors ihp-rt raises on purpose."""


class InputError(IhpError, ValueError):
    """Bad user input: an unreadable image, a malformed click list, an unknown label."""


class ModelError(IhpError):
    """A model file that cannot be used: corrupt, of another format, or mismatched."""


class BackendError(IhpError, RuntimeError):
    """A backend asked for by name cannot run here (missing library or device)."""
