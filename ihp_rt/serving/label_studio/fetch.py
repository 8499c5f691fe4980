"""A task's image, fetched from where the task says: a data: URI, or a Label Studio file URL
and the redirects that follow it.

Label Studio serves a cloud storage's files (S3, GCS, Azure) through presigned URLs by
default: its ``resolve/`` answers with a redirect to the storage. Redirects are followed here,
a few at most, one hop at a time, because each hop decides where the API token may go: only to
a file URL of the Label Studio host, and only while every hop so far was there (a storage may
redirect anywhere, the host included). A hop off it goes without the token -- a presigned URL is
its own credential -- and only to https, its certificate checked as on any connection (the
system's CAs, or the bundle ``SSL_CERT_FILE`` names, for a storage behind a private CA): a hop
to plain http could be any service on the server's network.

Whose fault a failure is decides its status (:mod:`ihp_rt.serving.errors`): a task naming
something that is not there is the caller's (400), a key Label Studio refuses is this server's
setup (500), Label Studio or the storage down or failing is theirs (503 / 502).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import urllib.error
import urllib.request
from email.message import Message
from typing import IO
from urllib.parse import urljoin

from ihp_rt.errors import IhpError, InputError
from ihp_rt.serving.errors import Misconfigured, UpstreamError
from ihp_rt.serving.label_studio.host import LabelStudioHost
from ihp_rt.serving.label_studio.upstream import REDIRECTS, unreachable
from ihp_rt.serving.label_studio.urls import is_file_url, origin, task_file_url

MAX_REDIRECTS = 5  # Label Studio -> the presigned URL is one; a storage may add one of its own
TIMEOUT_S = 30.0  # for each hop


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hands every redirect back as an HTTPError. urllib's own handler follows them anywhere
    with every header, the API token included; :func:`_get` follows them itself."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message,
                         newurl: str) -> None:
        return None


class TokenRefused(Misconfigured):
    """Label Studio answered a file request with 401 or 403: its API key is wrong or revoked."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fetch_image(url: str, host: LabelStudioHost, limit: int, task_id: object = None) -> bytes:
    """The encoded image a task points at, at most ``limit`` bytes: a data: URI, or a file on
    the Label Studio host (``task_id``: the task's, which a cloud storage URI is resolved by)."""
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error):
            raise InputError("task image is a data: URI without valid base64 content") from None
    if host.url is None:
        raise Misconfigured(f"cannot fetch task image {url!r}: set LABEL_STUDIO_URL to the Label Studio address")
    first = task_file_url(url, host.url, task_id)
    opener = urllib.request.build_opener(_NoRedirects())
    authorization, final = host.tokens.authorization(host, opener)
    try:
        data = _get(opener, first, host.url, authorization, limit)
    except TokenRefused as e:
        if e.code != 401 or final:
            raise
        # A kept access token refused before its exp (revoked, or Label Studio restarted with
        # another signing key): once more with a new one, and no more than once.
        authorization, _ = host.tokens.authorization(host, opener, stale=authorization)
        data = _get(opener, first, host.url, authorization, limit)
    if len(data) > limit:
        raise InputError(f"task image {url!r} is larger than the server's limit of {limit:,} bytes")
    return data


def _get(opener: urllib.request.OpenerDirector, url: str, host_url: str, authorization: str | None,
         limit: int) -> bytes:
    """GET ``url`` (a file URL on the Label Studio host: the caller checked) and the redirects
    after it, the token going along while :func:`_next_hop` allows: at most ``limit`` + 1 bytes."""
    on_host = True  # every hop so far was a file URL of the Label Studio host
    for hop in range(MAX_REDIRECTS + 1):
        request = urllib.request.Request(url, headers={"Authorization": authorization}
                                         if authorization and on_host else {})
        try:
            with opener.open(request, timeout=TIMEOUT_S) as response:
                return response.read(limit + 1)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code not in REDIRECTS:
                raise _refusal(e.code, url, on_host) from e
            location = e.headers.get("Location")
        except OSError as e:  # URLError, timeouts, resets, TLS: the connection, not an answer
            raise unreachable(e, "Label Studio" if on_host else "the host Label Studio redirected to",
                              f"for the task image {url}") from e
        except http.client.HTTPException as e:  # a reply cut short or garbled
            raise UpstreamError(f"the reply of {url} for a task image is broken: {e!r}") from e
        except ValueError as e:  # http.client.InvalidURL (a control character, say): urlsplit let it through
            if hop == 0:
                raise InputError(f"task image URL {url!r} is not a valid URL: {e}") from None
            raise UpstreamError(f"a redirect led to {url!r}, not a valid URL: {e}") from e
        if hop < MAX_REDIRECTS:
            url, on_host = _next_hop(url, location, host_url, on_host)
    raise UpstreamError(f"more than {MAX_REDIRECTS} redirects for a task image, the last from {url}")


def _next_hop(url: str, location: str | None, host_url: str, on_host: bool) -> tuple[str, bool]:
    """Where a redirect from ``url`` leads, and whether the token may go there: only to a file
    URL of the Label Studio host, only while every hop so far was one. Off it, https only."""
    if not location:
        raise UpstreamError(f"{url} answered a task image request with a redirect but no Location")
    try:
        target = urljoin(url, location)
        scheme, _ = where = origin(target)
    except ValueError as e:
        raise UpstreamError(f"{url} redirected a task image request to {location!r}, not a valid URL: {e}") from e
    if on_host and where == origin(host_url):
        if not is_file_url(target, host_url):
            raise UpstreamError(f"Label Studio redirected {url} to {target}, not one of its file URLs: not asked "
                                "with its token")
        return target, True
    if scheme != "https":
        raise UpstreamError(f"{url} redirected a task image request to {target}: off the Label Studio host only "
                            "https is followed")
    return target, False


def _refusal(code: int, url: str, on_host: bool) -> IhpError:
    """An error status for a task image, as whose fault it is: a key Label Studio refuses is
    this server's setup, a presigned URL the storage refuses is Label Studio's, a crash is
    theirs, any other 4xx says the task names something that is not there."""
    asked = f"Label Studio answered {code} for the task image {url}" if on_host else \
        f"{url}, where Label Studio redirected a task image request, answered {code}"
    if code in (401, 403) and on_host:
        return TokenRefused(f"{asked}: check LABEL_STUDIO_API_KEY (unset, revoked, or its user cannot see the "
                            "project?)", code)
    if code in (401, 403):
        return UpstreamError(f"{asked}: the storage refused Label Studio's presigned URL (check the storage's "
                             "credentials and presign settings in Label Studio)")
    return InputError(asked) if 400 <= code < 500 else UpstreamError(asked)
