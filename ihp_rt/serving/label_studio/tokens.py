"""Label Studio's API key as the Authorization header its file URLs take.

``LABEL_STUDIO_API_KEY`` is either a legacy token (sent as ``Token <key>``) or a personal
access token, a JWT refresh token, which Label Studio takes only as the short-lived access
token its ``/api/token/refresh/`` exchanges it for (sent as ``Bearer <access>``, kept until
shortly before it expires).
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from ihp_rt.serving.errors import Misconfigured, UpstreamError
from ihp_rt.serving.label_studio.upstream import REDIRECTS, unreachable

if TYPE_CHECKING:
    from ihp_rt.serving.label_studio.host import LabelStudioHost

# An access token is renewed this long before its exp: a fetch may take its 30 s timeout to
# be answered, and the two hosts' clocks may disagree a little.
EXPIRY_MARGIN_S = 30.0
MAX_TOKEN_REPLY_BYTES = 64 << 10  # /api/token/refresh/ answers a few hundred bytes


def jwt_claims(token: str) -> dict | None:
    """The claims of a JWT, *unverified*; None when ``token`` is not a JWT (a legacy token is 40
    hex digits). Used only to tell the two kinds of Label Studio token apart and to read when an
    access token expires: Label Studio checks signatures, nothing here trusts the claims."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except ValueError:  # bad base64 (binascii.Error), bad UTF-8, bad JSON: all ValueErrors
        return None
    return claims if isinstance(header, dict) and "alg" in header and isinstance(claims, dict) else None


class AccessTokens:
    """The access token a personal access token was last exchanged for, kept until it expires.

    Label Studio >= 1.18 shows its users personal access tokens: JWT refresh tokens, which its
    API refuses as credentials. Each is exchanged at ``/api/token/refresh/`` for an access token
    (5 minutes by default) that goes as ``Bearer``. Exchanging on every fetch would double its
    round trips, so the access token is reused until ``EXPIRY_MARGIN_S`` before its ``exp``.
    One lock, held over the exchange: concurrent first fetches exchange once.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # Unix time, as a JWT's exp is
        self._lock = threading.Lock()
        self._refresh: str | None = None  # the key the kept access token was obtained with
        self._access: str | None = None
        self._until = 0.0

    def authorization(self, host: LabelStudioHost, opener: urllib.request.OpenerDirector,
                      stale: str | None = None) -> tuple[str | None, bool]:
        """The Authorization header for ``host`` (None without a key), and whether it was obtained
        just now, so that a refusal of it is final. ``stale``: a header the host just refused with
        a 401; if it is still the kept one, a new access token is obtained (once, by whichever
        thread gets here first)."""
        key = host.api_key
        if not key:
            return None, True
        claims = jwt_claims(key)
        if claims is None:
            return f"Token {key}", True  # a legacy token
        if claims.get("token_type") != "refresh":
            return f"Bearer {key}", True  # an access token given as the key: it can only be used as is
        with self._lock:
            kept = f"Bearer {self._access}" if self._access and self._refresh == key else None
            if kept is not None and kept != stale and self.clock() < self._until:
                return kept, False
            self._access, expires = exchange_refresh_token(host, key, opener)
            # without an exp the token serves this fetch only
            self._refresh, self._until = key, -math.inf if expires is None else expires - EXPIRY_MARGIN_S
            return f"Bearer {self._access}", True


def exchange_refresh_token(host: LabelStudioHost, refresh: str, opener: urllib.request.OpenerDirector
                           ) -> tuple[str, float | None]:
    """A personal access token's access token, from the Label Studio host's
    ``/api/token/refresh/``, and when it expires (its exp, Unix time; None if it has none).
    ``opener`` follows no redirect, so the key stays on the host."""
    url = urljoin(host.url.rstrip("/") + "/", "api/token/refresh/")  # relative: Label Studio may sit under a path
    request = urllib.request.Request(url, data=json.dumps({"refresh": refresh}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with opener.open(request, timeout=30) as response:
            reply = response.read(MAX_TOKEN_REPLY_BYTES + 1)
    except urllib.error.HTTPError as e:
        e.close()
        asked = f"Label Studio answered {e.code} when asked at {url} for an access token for LABEL_STUDIO_API_KEY"
        if e.code >= 500:
            raise UpstreamError(asked) from e
        if e.code in REDIRECTS:  # the key goes to LABEL_STUDIO_URL alone, never where a redirect points
            raise Misconfigured(f"{asked}: a redirect to {e.headers.get('Location')}, not followed; set "
                                "LABEL_STUDIO_URL to where Label Studio answers") from e
        raise Misconfigured(asked + (": it is revoked, expired or another Label Studio's" if e.code == 401
                                     else " (a personal access token)")) from e
    except OSError as e:  # URLError, timeouts, resets, TLS: the connection, not an answer
        raise unreachable(e, "Label Studio", f"at {url} to exchange LABEL_STUDIO_API_KEY for an access token") from e
    except http.client.HTTPException as e:
        raise UpstreamError(f"Label Studio's reply at {url} is broken: {e!r}") from e
    except ValueError as e:
        raise Misconfigured(f"LABEL_STUDIO_URL {host.url!r} is not a valid URL: {e}") from e
    try:
        access = json.loads(reply).get("access") if len(reply) <= MAX_TOKEN_REPLY_BYTES else None
    except (ValueError, AttributeError):
        access = None
    if not isinstance(access, str) or not access or any(c in access for c in "\r\n"):
        raise Misconfigured(f"{url} did not answer with an access token: is LABEL_STUDIO_URL a Label Studio >= 1.18?")
    exp = (jwt_claims(access) or {}).get("exp")
    usable = isinstance(exp, (int, float)) and not isinstance(exp, bool) and math.isfinite(exp)
    return access, float(exp) if usable else None
