"""Server limits: every resource a client can make the server hold has a bound here."""

from __future__ import annotations

from dataclasses import dataclass

from ihp_rt.click_enforcement import DEFAULT_CLICK_RADIUS


@dataclass(frozen=True)
class ServeConfig:
    """What one ``ihp-rt serve`` process allows; the defaults suit one annotation team.

    With a shared store (``--redis``) ``max_sessions`` and ``max_session_clicks`` hold across
    every worker; give all workers the same values.
    """

    max_sessions: int = 16  # each holds its upload in the store and a pre-processed image (2.7 MB) per worker
    session_ttl_s: float = 900.0  # idle sessions expire after this long
    max_upload_bytes: int = 20 * 1024 * 1024
    max_session_clicks: int = 500  # per session; far beyond what an annotator places on one photo
    max_ws_message_bytes: int = 4096
    cache_images: int | None = None  # pre-processed images this worker keeps; None: max_sessions
    # Each session's last mask, a full-resolution label map (12 MB for a 12 MP photo, 40 MB at the
    # pixel limit), kept by this worker up to this many bytes: a miss costs one predict.
    mask_cache_bytes: int = 256 * 2**20
    click_radius: int = DEFAULT_CLICK_RADIUS  # model pixels around a click that take its label; 0: the network alone

    def __post_init__(self) -> None:
        for name in ("max_sessions", "session_ttl_s", "max_upload_bytes", "max_session_clicks",
                     "max_ws_message_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.cache_images is not None and self.cache_images < 0:
            raise ValueError(f"cache_images must be 0 or more, got {self.cache_images}")
        if self.mask_cache_bytes < 0:
            raise ValueError(f"mask_cache_bytes must be 0 or more, got {self.mask_cache_bytes}")
        if not isinstance(self.click_radius, int) or self.click_radius < 0:
            raise ValueError(f"click_radius must be an integer 0 or more, got {self.click_radius!r}")

    @property
    def cached_images(self) -> int:
        """How many pre-processed images a worker keeps: 0 rebuilds one on every click."""
        return self.max_sessions if self.cache_images is None else self.cache_images
