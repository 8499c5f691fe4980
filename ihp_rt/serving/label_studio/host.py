"""Which Label Studio this backend serves, and the credentials on each side of it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ihp_rt.errors import IhpError
from ihp_rt.serving.label_studio.label_config import parse_label_map
from ihp_rt.serving.label_studio.tokens import AccessTokens


@dataclass(frozen=True)
class LabelStudioHost:
    """The Label Studio this backend serves: where task images live (LABEL_STUDIO_URL, fetched
    with LABEL_STUDIO_API_KEY), the basic auth it must send to ``/label-studio/*``
    (LABEL_STUDIO_ML_BASIC_AUTH, ``USER:PASS``; None: the routes are open) and which of the
    model's classes its label names mean where they are not the classes' own names
    (LABEL_STUDIO_LABEL_MAP, see :mod:`.label_config`). From the environment by default, which
    keeps the secrets out of ``ps``."""

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # a repr lands in logs and tracebacks
    tokens: AccessTokens = field(default_factory=AccessTokens, compare=False, repr=False)
    ml_basic_auth: str | None = field(default=None, repr=False)
    label_map: Mapping[str, str | int] = field(default_factory=dict)  # config label name -> class name or id

    def __post_init__(self) -> None:
        """Refuse, at start, a LABEL_STUDIO_URL no image could be fetched from (found at every
        click otherwise), and credentials Label Studio cannot send: it sends basic auth only when
        both user and password are set, and requests encodes them as Latin-1."""
        if self.url is not None:
            try:
                parts = urlsplit(self.url)
                usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
            except ValueError:  # a bad IPv6 literal or port
                usable = False
            if not usable:
                raise IhpError(f"LABEL_STUDIO_URL must be http(s)://HOST[:PORT][/PATH], where Label Studio answers; "
                               f"got {self.url!r}")
        if self.ml_basic_auth is None:
            return
        user, _, password = self.ml_basic_auth.partition(":")
        if not (user and password and max(map(ord, self.ml_basic_auth)) < 256):
            raise IhpError("LABEL_STUDIO_ML_BASIC_AUTH must be USER:PASS, both non-empty and Latin-1 (what Label "
                           "Studio's ML backend settings send as Basic Auth)")

    @classmethod
    def from_environment(cls, label_map: str | None = None) -> LabelStudioHost:
        """``label_map``: a label map given otherwise (``ihp-rt serve --label-studio-label-map``),
        which LABEL_STUDIO_LABEL_MAP then does not override."""
        return cls(os.environ.get("LABEL_STUDIO_URL") or None, os.environ.get("LABEL_STUDIO_API_KEY") or None,
                   ml_basic_auth=os.environ.get("LABEL_STUDIO_ML_BASIC_AUTH") or None,
                   label_map=parse_label_map(label_map or os.environ.get("LABEL_STUDIO_LABEL_MAP") or "{}"))
