"""Server limits: every resource a client can make the server hold has a bound here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    """What one ``ihp-rt serve`` process allows; the defaults suit one annotation team."""

    max_sessions: int = 16  # each holds a pre-processed image (3 x 473 x 473 float32, 2.7 MB)
    session_ttl_s: float = 900.0  # idle sessions expire after this long
    max_upload_bytes: int = 20 * 1024 * 1024
    max_session_clicks: int = 500  # per session; far beyond what an annotator places on one photo
    max_ws_message_bytes: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_sessions", "session_ttl_s", "max_upload_bytes", "max_session_clicks",
                     "max_ws_message_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
