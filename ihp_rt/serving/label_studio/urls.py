"""Which task image URLs the backend fetches with Label Studio's token.

Images are fetched only from data: URIs and from the Label Studio host named by
``LABEL_STUDIO_URL`` (same scheme, host and port), never from any other host a task might name.
On that host only its file-serving paths are asked (:data:`FILE_PATHS`): ``/predict`` answers
anyone, and a task URL must not make the server call Label Studio's API with the token.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from ihp_rt.errors import InputError

# Where Label Studio 1.23 serves task files (label_studio/data_import/urls.py and
# io_storages/urls.py): uploads, local-storage files, the persistent-storage download view,
# and the cloud-storage proxies (tasks' and projects' resolve/, and presign/ kept for old
# tasks). All are read-only GETs. The image fetch carries the admin token on behalf of anyone
# who can reach /predict, so every other path of the host -- its API, where a GET of
# /api/projects/{id}/next assigns a task -- is refused.
FILE_PATHS = re.compile(r"/(data/upload/|data/local-files/|storage-data/uploaded/"
                        r"|(tasks|projects)/\d+/(resolve|presign)/)")


def origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) of a URL; a malformed one (``http://[bad``) is the task's fault."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise InputError(f"task image URL {url!r} is not a valid URL: {e}") from None
    return parts.scheme.lower(), parts.netloc.lower()


def is_file_url(url: str, host_url: str) -> bool:
    """Whether ``url`` (on the host: the caller checked) is one of Label Studio's file URLs,
    under the path LABEL_STUDIO_URL may have (Label Studio behind a prefix). Percent-decoded
    dot segments are refused outright: Label Studio's router sees the decoded path, so
    ``/data/upload/%2e%2e/%2e%2e/api/...`` could reach its API."""
    path = unquote(urlsplit(url).path)
    if any(segment in (".", "..") for segment in path.split("/")):
        return False
    base = urlsplit(host_url).path.rstrip("/")
    if base:
        if not path.startswith(base + "/"):
            return False
        path = path[len(base):]
    return FILE_PATHS.match(path) is not None
