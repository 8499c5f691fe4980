"""Which task image URLs the backend fetches with Label Studio's token.

Images are fetched only from data: URIs and from the Label Studio host named by
``LABEL_STUDIO_URL`` (same scheme, host and port), never from any other host a task might name
(where a redirect of the host's leads is :mod:`.fetch`'s to decide). On that host only its
file-serving paths are asked (:data:`FILE_PATHS`): ``/predict`` answers anyone, and a task URL
must not make the server call Label Studio's API with the token.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urljoin, urlsplit

from ihp_rt.errors import InputError

# Where Label Studio 1.23 serves task files (label_studio/data_import/urls.py and
# io_storages/urls.py): uploads, local-storage files, the persistent-storage download view,
# and the cloud-storage proxies (tasks' and projects' resolve/, and presign/ kept for old
# tasks). All are read-only GETs. The image fetch carries the admin token on behalf of anyone
# who can reach /predict, so every other path of the host -- its API, where a GET of
# /api/projects/{id}/next assigns a task -- is refused.
FILE_PATHS = re.compile(r"/(data/upload/|data/local-files/|storage-data/uploaded/"
                        r"|(tasks|projects)/\d+/(resolve|presign)/)")
# The URI schemes of Label Studio 1.23's cloud storages (io_storages: S3, GCS, Azure Blob).
CLOUD_SCHEMES = ("s3", "gs", "azure-blob")


def origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) of a URL; ValueError for a malformed one (``http://[bad``)."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def task_file_url(url: str, host_url: str, task_id: object) -> str:
    """The absolute Label Studio file URL a task's image URL stands for, or an InputError
    saying why it is not fetched. A cloud storage URI (``s3://bucket/key``: what a task
    imported from a storage holds, for Label Studio resolves it only for its own front end)
    becomes the task's ``/tasks/<id>/resolve/`` URL, as Label Studio's own ML backend SDK does."""
    try:
        scheme, _ = origin(url)  # urljoin would raise a bare ValueError on a malformed URL
    except ValueError as e:
        raise InputError(f"task image URL {url!r} is not a valid URL: {e}") from None
    if scheme in CLOUD_SCHEMES:
        if not isinstance(task_id, int) or isinstance(task_id, bool):
            raise InputError(f"task image {url!r} is in cloud storage, which Label Studio resolves per task: "
                             "the request needs the task's id")
        url = f"tasks/{task_id}/resolve/?fileuri={base64.urlsafe_b64encode(url.encode()).decode()}"
    absolute = urljoin(host_url.rstrip("/") + "/", url)  # relative: Label Studio may sit under a path
    # The whole origin, scheme included: with LABEL_STUDIO_URL on https, the same host:port
    # over http would carry the token unencrypted.
    if origin(absolute) != origin(host_url):
        raise InputError(f"refusing to fetch {url!r}: only images on the Label Studio host {host_url} are fetched")
    if not is_file_url(absolute, host_url):
        raise InputError(f"refusing to fetch {url!r}: only Label Studio's file URLs (/data/upload/, "
                         "/data/local-files/, /storage-data/uploaded/, /tasks/<id>/resolve/, ...) are fetched "
                         "with its token, never the rest of its API")
    return absolute


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
