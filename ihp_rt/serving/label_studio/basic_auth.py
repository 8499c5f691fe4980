"""The basic auth Label Studio sends with each request to an ML backend, checked.

Label Studio can send each request to an ML backend with HTTP Basic auth (the backend's
"Basic Auth" user and password in its settings); with ``LABEL_STUDIO_ML_BASIC_AUTH=USER:PASS``
every ``/label-studio/*`` route requires it (401 otherwise, which Label Studio reports as
wrong authentication parameters). Set it wherever the port is reachable by others.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable

from fastapi import HTTPException, Request


def basic_auth_check(credentials: str) -> Callable[[Request], None]:
    """A route dependency that lets through only requests with this ``USER:PASS`` as HTTP Basic
    auth: what Label Studio 1.23 sends every ML backend request with when the backend's
    "Basic Auth" user and password are set (requests' HTTPBasicAuth, Latin-1). Without it
    anyone who reaches the port could have the server fetch Label Studio's images with its token."""
    expected = credentials.encode("latin-1")

    def check(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except binascii.Error:
            given = b""
        # compare_digest: the time taken tells nothing of how much of the password matched
        if scheme.lower() != "basic" or not secrets.compare_digest(given, expected):
            raise HTTPException(401, "this Label Studio backend needs basic auth: set the ML backend's Basic Auth "
                                     "user and password in Label Studio to LABEL_STUDIO_ML_BASIC_AUTH's",
                                headers={"WWW-Authenticate": 'Basic realm="ihp-rt Label Studio backend"'})

    return check
