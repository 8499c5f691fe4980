"""A Label Studio ML backend, served by ``ihp-rt serve`` under ``/label-studio``.

In Label Studio: Settings -> Model -> Connect model, URL ``http://HOST:PORT/label-studio``,
with "interactive preannotations" on. The labelling config pairs smart keypoints (one click
per part, its label the part's name) with brush labels of the same names::

    <View>
      <Image name="image" value="$image"/>
      <KeyPointLabels name="click" toName="image" smart="true">
        <Label value="hair"/><Label value="upper-clothes"/>...
      </KeyPointLabels>
      <BrushLabels name="parts" toName="image">
        <Label value="hair"/><Label value="upper-clothes"/>...
      </BrushLabels>
    </View>

Each smart keypoint (in percent of the image size) becomes a labelled click; a negative
keypoint is a background click. Label Studio's front end does not send all of a task's
keypoints: on each new, moved or deleted keypoint it sends the keypoints *of that keypoint's
label* (the positive and negative ones), nothing else. So the backend keeps each task's
keypoints grouped by label; a request replaces the groups it carries, and the mask is
predicted from every group, in the order the labels were first clicked. When the last
keypoint of a label is deleted the front end sends an empty list, which cannot say which label
went: that clears *all* the task's keypoints, and the reply is empty. Keeping them instead
would leave a click the annotator can neither see nor remove steering every later mask (after
"delete all regions", every label's); clearing loses only clicks still on screen, and moving
or adding one keypoint of a label brings that label's group back.

The reply is one BrushLabels region per part present in the mask, as brush RLE. Each task's
image is fetched, decoded and pre-processed once and kept, with its keypoints, for the
``max_sessions`` most recently clicked tasks (an evicted task starts again from the keypoints
of the next request). Images are fetched only from data: URIs and from the Label Studio host
named by ``LABEL_STUDIO_URL`` (same scheme, host and port), never from any other host a task
might name, nor from one a redirect points at: the token would go with it. On that host only
its file-serving paths are asked (:data:`FILE_PATHS`): ``/predict`` answers anyone, and a
task URL must not make the server call Label Studio's API with the token.
``LABEL_STUDIO_API_KEY`` is either a legacy token (sent as ``Token <key>``) or a personal
access token, a JWT refresh token, which Label Studio takes only as the short-lived access
token its ``/api/token/refresh/`` exchanges it for (sent as ``Bearer <access>``, kept until
shortly before it expires).

Label Studio can send each request to an ML backend with HTTP Basic auth (the backend's
"Basic Auth" user and password in its settings); with ``LABEL_STUDIO_ML_BASIC_AUTH=USER:PASS``
every ``/label-studio/*`` route requires it (401 otherwise, which Label Studio reports as
wrong authentication parameters). Set it wherever the port is reachable by others.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Annotated, NamedTuple
from urllib.parse import unquote, urljoin, urlsplit
from xml.etree import ElementTree

import numpy as np
from fastapi import APIRouter, Body, Depends, HTTPException, Request

from ihp_rt import __version__
from ihp_rt.errors import IhpError, InputError
from ihp_rt.images import decode_image
from ihp_rt.labels import LabelSet
from ihp_rt.serving.brush_rle import encode_brush_rle
from ihp_rt.serving.config import ServeConfig
from ihp_rt.serving.errors import ERRORS, ClickLimit, ErrorOut
from ihp_rt.session import Session, SharedBackend

# An access token is renewed this long before its exp: a fetch may take its 30 s timeout to
# be answered, and the two hosts' clocks may disagree a little.
EXPIRY_MARGIN_S = 30.0
MAX_TOKEN_REPLY_BYTES = 64 << 10  # /api/token/refresh/ answers a few hundred bytes
# Where Label Studio 1.23 serves task files (label_studio/data_import/urls.py and
# io_storages/urls.py): uploads, local-storage files, the persistent-storage download view,
# and the cloud-storage proxies (tasks' and projects' resolve/, and presign/ kept for old
# tasks). All are read-only GETs. The image fetch carries the admin token on behalf of anyone
# who can reach /predict, so every other path of the host -- its API, where a GET of
# /api/projects/{id}/next assigns a task -- is refused.
FILE_PATHS = re.compile(r"/(data/upload/|data/local-files/|storage-data/uploaded/"
                        r"|(tasks|projects)/\d+/(resolve|presign)/)")


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


@dataclass(frozen=True)
class LabelStudioHost:
    """The Label Studio this backend serves: where task images live (LABEL_STUDIO_URL, fetched
    with LABEL_STUDIO_API_KEY) and the basic auth it must send to ``/label-studio/*``
    (LABEL_STUDIO_ML_BASIC_AUTH, ``USER:PASS``; None: the routes are open). From the
    environment by default, which keeps the secrets out of ``ps``."""

    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # a repr lands in logs and tracebacks
    tokens: AccessTokens = field(default_factory=AccessTokens, compare=False, repr=False)
    ml_basic_auth: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """Refuse, at start, credentials Label Studio cannot send: it sends basic auth only when
        both user and password are set, and requests encodes them as Latin-1."""
        if self.ml_basic_auth is None:
            return
        user, _, password = self.ml_basic_auth.partition(":")
        if not (user and password and max(map(ord, self.ml_basic_auth)) < 256):
            raise IhpError("LABEL_STUDIO_ML_BASIC_AUTH must be USER:PASS, both non-empty and Latin-1 (what Label "
                           "Studio's ML backend settings send as Basic Auth)")

    @classmethod
    def from_environment(cls) -> LabelStudioHost:
        return cls(os.environ.get("LABEL_STUDIO_URL") or None, os.environ.get("LABEL_STUDIO_API_KEY") or None,
                   ml_basic_auth=os.environ.get("LABEL_STUDIO_ML_BASIC_AUTH") or None)


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


@dataclass(frozen=True)
class Tags:
    """The parts of a labelling config the backend needs."""

    brush: str  # BrushLabels name: the from_name of the regions we return
    image: str  # Image name: their to_name
    data_key: str  # the task data field holding the image URL
    brush_labels: tuple[str, ...]


def parse_config(xml: str) -> Tags:
    """Find the BrushLabels tag and the Image it points at (tag names case-insensitive)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise InputError(f"label_config is not valid XML: {e}") from None
    tags = list(root.iter())
    brush = next((t for t in tags if t.tag.lower() == "brushlabels"), None)
    if brush is None or not brush.get("name") or not brush.get("toName"):
        raise InputError("label_config needs a <BrushLabels name=.. toName=..> tag for the parsing mask")
    image = next((t for t in tags if t.tag.lower() == "image" and t.get("name") == brush.get("toName")), None)
    if image is None or not (image.get("value") or "").startswith("$"):
        raise InputError(f"label_config has no <Image name={brush.get('toName')!r} value=\"$...\"> for the BrushLabels")
    labels = tuple(t.get("value") for t in brush if t.tag.lower() == "label" and t.get("value"))
    return Tags(brush.get("name"), image.get("name"), image.get("value")[1:], labels)


def _origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) of a URL; a malformed one (``http://[bad``) is the task's fault."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise InputError(f"task image URL {url!r} is not a valid URL: {e}") from None
    return parts.scheme.lower(), parts.netloc.lower()


class _StayOnHost(urllib.request.HTTPRedirectHandler):
    """Follows redirects only within the Label Studio host. urllib's own handler follows them
    anywhere with every header, the API token included, which would both leak the token and
    bypass the host allow-list."""

    def __init__(self, host_url: str) -> None:
        self.origin = _origin(host_url)

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message,
                         newurl: str) -> urllib.request.Request | None:
        if _origin(newurl) != self.origin:
            fp.close()
            raise InputError(f"Label Studio answered {req.full_url} with a redirect to {newurl}; only the "
                             f"Label Studio host is asked (for images and tokens), and its token goes nowhere else")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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


def fetch_image(url: str, host: LabelStudioHost, limit: int) -> bytes:
    """The encoded image a task points at: a data: URI, or a file on the Label Studio host."""
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error):
            raise InputError("task image is a data: URI without valid base64 content") from None
    if host.url is None:
        raise InputError(f"cannot fetch task image {url!r}: set LABEL_STUDIO_URL to the Label Studio address")
    _origin(url)  # urljoin raises a bare ValueError on a malformed URL
    absolute = urljoin(host.url.rstrip("/") + "/", url)
    # The whole origin, scheme included: with LABEL_STUDIO_URL on https, the same host:port
    # over http would carry the token unencrypted.
    origin = _origin(host.url)
    if _origin(absolute) != origin or origin[0] not in ("http", "https"):
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
        raise InputError(f"Label Studio answered {e.code} for the task image {absolute}"
                         + (" (check LABEL_STUDIO_API_KEY)" if e.code in (401, 403) else "")) from None
    except (urllib.error.URLError, TimeoutError) as e:
        raise InputError(f"cannot fetch the task image {absolute}: {e}") from None
    except ValueError as e:  # http.client.InvalidURL and kin: a URL urlsplit let through
        raise InputError(f"task image URL {url!r} is not a valid URL: {e}") from None
    if len(data) > limit:
        raise InputError(f"task image {absolute} is larger than the server's limit of {limit:,} bytes")
    return data


def _read(opener: urllib.request.OpenerDirector, url: str, authorization: str | None, limit: int) -> bytes:
    """GET ``url`` (on the Label Studio host: the caller checked): at most ``limit`` + 1 bytes."""
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    with opener.open(request, timeout=30) as response:
        return response.read(limit + 1)


def exchange_refresh_token(host: LabelStudioHost, refresh: str, opener: urllib.request.OpenerDirector
                           ) -> tuple[str, float | None]:
    """A personal access token's access token, from the Label Studio host's
    ``/api/token/refresh/``, and when it expires (its exp, Unix time; None if it has none).
    ``opener`` refuses redirects off the host, so the token stays there."""
    url = urljoin(host.url.rstrip("/") + "/", "api/token/refresh/")  # relative: Label Studio may sit under a path
    request = urllib.request.Request(url, data=json.dumps({"refresh": refresh}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with opener.open(request, timeout=30) as response:
            reply = response.read(MAX_TOKEN_REPLY_BYTES + 1)
    except IhpError:
        raise
    except urllib.error.HTTPError as e:
        e.close()
        raise InputError(f"Label Studio answered {e.code} when asked at {url} for an access token for "
                         "LABEL_STUDIO_API_KEY (a personal access token)"
                         + (": it is revoked, expired or another Label Studio's" if e.code == 401 else "")) from None
    except (urllib.error.URLError, TimeoutError) as e:
        raise InputError(f"cannot reach {url} to exchange LABEL_STUDIO_API_KEY for an access token: {e}") from None
    except ValueError as e:
        raise InputError(f"LABEL_STUDIO_URL {host.url!r} is not a valid URL: {e}") from None
    try:
        access = json.loads(reply).get("access") if len(reply) <= MAX_TOKEN_REPLY_BYTES else None
    except (ValueError, AttributeError):
        access = None
    if not isinstance(access, str) or not access or any(c in access for c in "\r\n"):
        raise InputError(f"{url} did not answer with an access token: is LABEL_STUDIO_URL a Label Studio >= 1.18?")
    exp = (jwt_claims(access) or {}).get("exp")
    usable = isinstance(exp, (int, float)) and not isinstance(exp, bool) and math.isfinite(exp)
    return access, float(exp) if usable else None


class Keypoint(NamedTuple):
    """One smart keypoint: its region id, its Label Studio label (its group), the pixel, and the
    class it asks for (0, background, for a negative keypoint)."""

    region: str | None
    group: str
    x: int
    y: int
    label: int


def keypoints_from_context(context: object, labels: LabelSet, max_clicks: int
                           ) -> tuple[list[Keypoint], tuple[int, int]]:
    """The keypoints in a request and the image (width, height) from Label Studio's smart keypoints."""
    results = context.get("result") if isinstance(context, dict) else None
    if not isinstance(results, list):
        raise InputError('params.context must be {"result": [...keypoint regions...]}')
    items = [r for r in results if isinstance(r, dict) and str(r.get("type", "")).lower() == "keypointlabels"]
    if len(items) > max_clicks:
        raise ClickLimit(f"{len(items)} keypoints: this server takes at most {max_clicks} clicks per image")
    clicks = []
    size = None
    for i, item in enumerate(items):
        value = item.get("value")
        try:
            width, height = int(item["original_width"]), int(item["original_height"])
            px, py = float(value["x"]), float(value["y"])
            if not (0 < width <= 100_000 and 0 < height <= 100_000 and math.isfinite(px) and math.isfinite(py)):
                raise ValueError
            x = min(width - 1, max(0, int(px * width / 100)))
            y = min(height - 1, max(0, int(py * height / 100)))
            name = value["keypointlabels"][0]
        except (KeyError, IndexError, TypeError, ValueError, OverflowError):
            raise InputError(f"context result #{i} is not a keypointlabels region with x, y (percent), "
                             "original_width, original_height and a label") from None
        size = (width, height)
        label = labels.label_id(name) if item.get("is_positive", True) else 0
        region = item.get("id")
        clicks.append(Keypoint(region if isinstance(region, str) else None, str(name), x, y, label))
    if size is None:
        raise InputError("no smart keypoints in params.context: place a keypoint on a part")
    return clicks, size


def merge_groups(held: dict[str, list[Keypoint]], sent: list[Keypoint]) -> dict[str, list[Keypoint]]:
    """A task's keypoint groups (by label, first clicked first) after a request.

    Each label the request carries replaces that label's group, in its place (a new label goes
    last): the front end sends a label's keypoints whole, so what it leaves out was deleted.
    Groups it does not carry are kept, less any keypoint whose region id it now sends under
    another label (a relabelled keypoint must not count twice); a group left empty so is dropped.
    """
    carried: dict[str, list[Keypoint]] = {}
    for keypoint in sent:
        carried.setdefault(keypoint.group, []).append(keypoint)
    moved = {k.region for k in sent if k.region is not None}
    merged: dict[str, list[Keypoint]] = {}
    for name, group in held.items():
        kept = carried[name] if name in carried else [k for k in group if k.region is None or k.region not in moved]
        if kept:
            merged[name] = kept
    for name, group in carried.items():
        merged.setdefault(name, group)
    return merged


@dataclass
class TaskEntry:
    """A task's pre-processed image (in ``session``) and its keypoints, grouped by label."""

    session: Session
    groups: dict[str, list[Keypoint]] = field(default_factory=dict)


class TaskSessions:
    """One entry per Label Studio task, least recently used evicted beyond ``capacity``.

    Kept apart from the server's own session store: tasks are a cache (a task whose entry was
    evicted is fetched again, its keypoints rebuilt from the requests that follow), while the
    web page's sessions are someone's work and are never evicted to make room. Each entry's
    lock serialises its task's requests and makes concurrent first clicks on a task fetch its
    image once.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[threading.Lock, list[TaskEntry]]] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str, create: Callable[[], Session]) -> Iterator[TaskEntry]:
        """The task's entry, under its lock; ``create`` runs (under that lock) on a first click.
        If it fails the entry goes again: left empty, it would count against the capacity and
        evict a task someone is annotating, for a task that has nothing to keep."""
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (threading.Lock(), [])
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(key)
            held = self._entries[key]
        lock, slot = held
        with lock:
            if not slot:
                try:
                    slot.append(TaskEntry(create()))
                except BaseException:
                    with self._lock:  # the one place both locks are held (in this order): no deadlock
                        if self._entries.get(key) is held and not slot:
                            del self._entries[key]
                    raise
            yield slot[0]

    def forget_keypoints(self, key: str) -> None:
        """Drop a held task's keypoints, keeping its image; a task not held has none to drop."""
        with self._lock:
            held = self._entries.get(key)
        if held is not None:
            lock, slot = held
            with lock:
                for entry in slot:
                    entry.groups.clear()


def router(engine: SharedBackend, config: ServeConfig, host: LabelStudioHost) -> APIRouter:
    """The ML backend routes over the server's shared network."""
    guarded = host.ml_basic_auth is not None
    api = APIRouter(prefix="/label-studio", tags=["Label Studio ML backend"],
                    responses={**ERRORS, 401: {"model": ErrorOut}} if guarded else ERRORS,
                    dependencies=[Depends(basic_auth_check(host.ml_basic_auth))] if guarded else [])
    labels = engine.backend.spec.labels
    model_version = f"ihp-rt-{__version__}-{labels.name}"
    tasks_held = TaskSessions(config.max_sessions)

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "UP", "model_class": "ihp-rt"}

    @api.post("/setup")
    def setup(body: Annotated[dict | None, Body()] = None) -> dict[str, str]:
        if body and "schema" in body:
            parse_config(str(body["schema"]))  # a config without BrushLabels is refused now, not at the first click
        return {"model_version": model_version}

    @api.post("/webhook")
    def webhook(body: Annotated[dict | None, Body()] = None) -> dict[str, str]:
        return {"status": "ignored: this backend does not train"}

    @api.post("/predict")
    def predict(body: Annotated[dict, Body()]) -> dict[str, list]:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks or not isinstance(tasks[0], dict):
            raise InputError('predict needs "tasks": [{"id": .., "data": {..}}]')
        params = body.get("params")
        context = params.get("context") if isinstance(params, dict) else None
        nothing = {"results": [{"result": [], "model_version": model_version}]}
        if not context or (isinstance(context, dict) and context.get("result") is None):
            return nothing  # batch pre-labelling (Label Studio sends no context): nothing to suggest
        tags = parse_config(str(body.get("label_config", "")))
        task = tasks[0]
        key = task_key(body.get("project"), task, tags)
        if isinstance(context, dict) and context.get("result") == []:
            # The last keypoint of some label was deleted (or all regions were): which label,
            # the front end does not say, so every keypoint goes (see the module docstring).
            tasks_held.forget_keypoints(key)
            return nothing
        sent, (width, height) = keypoints_from_context(context, labels, config.max_session_clicks)

        def create() -> Session:
            data = task.get("data")
            url = data.get(tags.data_key) if isinstance(data, dict) else None
            if not isinstance(url, str):
                raise InputError(f"task {task.get('id')} has no image URL in data.{tags.data_key}")
            session = Session(engine, config.click_radius)
            session.set_image(decode_image(fetch_image(url, host, config.max_upload_bytes),
                                           f"task {task.get('id')} image"))
            return session

        with tasks_held.hold(key, create) as entry:
            session = entry.session
            if session.image_size != (height, width):
                raise InputError(f"keypoints are for a {width}x{height} image, the task image is "
                                 f"{session.image_size[1]}x{session.image_size[0]}")
            # Kept even when over the limit: the groups mirror the keypoints on the annotator's
            # screen, so deleting one brings the task back under the limit with the rest in place.
            entry.groups = merge_groups(entry.groups, sent)
            clicks = [k for group in entry.groups.values() for k in group]
            if len(clicks) > config.max_session_clicks:
                raise ClickLimit(f"{len(clicks)} keypoints on this task: this server takes at most "
                                 f"{config.max_session_clicks} clicks per image")
            session.reset()
            for k in clicks:
                session.add_click(k.x, k.y, k.label)
            mask = session.predict().labels
        regions = []
        for class_id, name in enumerate(labels.names):
            if class_id and (not tags.brush_labels or name in tags.brush_labels):
                part = mask == class_id
                if part.any():
                    regions.append(region(part, name, tags, width, height))
        return {"results": [{"result": regions, "model_version": model_version}]}

    return api


def task_key(project: object, task: dict, tags: Tags) -> str:
    """Which cached session a task's clicks go to: its project, id *and* image URL. A task
    without an id (or whose image was replaced) must not get another image's session, and
    with it that image's masks."""
    data = task.get("data")
    url = data.get(tags.data_key) if isinstance(data, dict) else None
    return f"{project}/{task.get('id')}/{hashlib.sha256(str(url).encode()).hexdigest()}"


def region(mask: np.ndarray, name: str, tags: Tags, width: int, height: int) -> dict:
    """One BrushLabels result item in Label Studio's format."""
    return {
        "from_name": tags.brush, "to_name": tags.image, "type": "brushlabels",
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_brush_rle(mask.astype(np.uint8) * 255), "brushlabels": [name]},
        "readonly": False,
    }
