"""A task's image, fetched from where the task says: a data: URI or a Label Studio file URL."""

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
from ihp_rt.serving.errors import Misconfigured, UpstreamError, UpstreamUnavailable
from ihp_rt.serving.label_studio.host import LabelStudioHost
from ihp_rt.serving.label_studio.urls import is_file_url, origin


class _StayOnHost(urllib.request.HTTPRedirectHandler):
    """Follows redirects only within the Label Studio host. urllib's own handler follows them
    anywhere with every header, the API token included, which would both leak the token and
    bypass the host allow-list."""

    def __init__(self, host_url: str) -> None:
        self.origin = origin(host_url)

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message,
                         newurl: str) -> urllib.request.Request | None:
        if origin(newurl) != self.origin:
            fp.close()
            raise InputError(f"Label Studio answered {req.full_url} with a redirect to {newurl}; only the "
                             f"Label Studio host is asked (for images and tokens), and its token goes nowhere else")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_image(url: str, host: LabelStudioHost, limit: int) -> bytes:
    """The encoded image a task points at: a data: URI, or a file on the Label Studio host."""
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error):
            raise InputError("task image is a data: URI without valid base64 content") from None
    if host.url is None:
        raise Misconfigured(f"cannot fetch task image {url!r}: set LABEL_STUDIO_URL to the Label Studio address")
    origin(url)  # urljoin raises a bare ValueError on a malformed URL
    absolute = urljoin(host.url.rstrip("/") + "/", url)
    # The whole origin, scheme included: with LABEL_STUDIO_URL on https, the same host:port
    # over http would carry the token unencrypted.
    if origin(absolute) != origin(host.url):
        raise InputError(f"refusing to fetch {url!r}: only images on the Label Studio host {host.url} are fetched")
    if not is_file_url(absolute, host.url):
        raise InputError(f"refusing to fetch {url!r}: only Label Studio's file URLs (/data/upload/, "
                         "/data/local-files/, /storage-data/uploaded/, /tasks/<id>/resolve/, ...) are fetched "
                         "with its token, never the rest of its API")
    opener = urllib.request.build_opener(_StayOnHost(host.url))
    try:
        authorization, final = host.tokens.authorization(host, opener)
        try:
            data = _read(opener, absolute, authorization, limit)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code != 401 or final:
                raise
            # A kept access token refused before its exp (revoked, or Label Studio restarted with
            # another signing key): once more with a new one, and no more than once.
            authorization, _ = host.tokens.authorization(host, opener, stale=authorization)
            data = _read(opener, absolute, authorization, limit)
    except IhpError:
        raise
    except urllib.error.HTTPError as e:
        e.close()
        raise refusal(e.code, absolute) from e
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise UpstreamUnavailable(f"cannot reach Label Studio for the task image {absolute}: "
                                  f"{getattr(e, 'reason', e)}") from e
    except http.client.HTTPException as e:  # a reply cut short or garbled
        raise UpstreamError(f"Label Studio's reply for the task image {absolute} is broken: {e!r}") from e
    except ValueError as e:  # http.client.InvalidURL and kin: a URL urlsplit let through
        raise InputError(f"task image URL {url!r} is not a valid URL: {e}") from None
    if len(data) > limit:
        raise InputError(f"task image {absolute} is larger than the server's limit of {limit:,} bytes")
    return data


def refusal(code: int, url: str) -> IhpError:
    """Label Studio's error status for a task image, as whose fault it is: a key it refuses is
    this server's setup, a crash is Label Studio's, any other 4xx is about the task's URL."""
    if code in (401, 403):
        return Misconfigured(f"Label Studio answered {code} for the task image {url}: check LABEL_STUDIO_API_KEY "
                             "(revoked, or its user cannot see the project?)")
    if 400 <= code < 500:
        return InputError(f"Label Studio answered {code} for the task image {url}")
    return UpstreamError(f"Label Studio answered {code} for the task image {url}")


def _read(opener: urllib.request.OpenerDirector, url: str, authorization: str | None, limit: int) -> bytes:
    """GET ``url`` (on the Label Studio host: the caller checked): at most ``limit`` + 1 bytes."""
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    with opener.open(request, timeout=30) as response:
        return response.read(limit + 1)
