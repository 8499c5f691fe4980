"""The Label Studio ML backend: its brush RLE bit for bit, and /predict on requests in Label
Studio's documented format, with task images from a data: URI and from stand-in Label Studio
hosts on loopback that check the API token: a legacy one, and one that takes only personal
access tokens (JWT refresh tokens) exchanged for Bearer access tokens. Cloud storage files come
from an https stand-in for a bucket that Label Studio's resolve/ redirects to (its CA made and
trusted by tests/tls_loopback.py). Keypoints are sent the way Label Studio's front end sends
them: only the clicked keypoint's label group each time."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import quote, unquote

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
from fastapi.testclient import TestClient

from ihp_rt.backends import open_backend
from ihp_rt.errors import IhpError, InputError
from ihp_rt.images import read_image
from ihp_rt.serving.app import create_app
from ihp_rt.serving.brush_rle import decode_brush_rle, encode_brush_rle
from ihp_rt.serving.errors import Misconfigured, UpstreamError
from ihp_rt.serving.label_studio import LabelStudioHost
from ihp_rt.serving.label_studio.fetch import fetch_image
from ihp_rt.serving.label_studio.keypoints import Keypoint, merge_groups
from ihp_rt.serving.label_studio.label_config import parse_config
from ihp_rt.serving.label_studio.tasks import TaskSessions
from ihp_rt.serving.label_studio.tokens import EXPIRY_MARGIN_S, AccessTokens, jwt_claims
from ihp_rt.session import Session, SharedBackend
from tests.tls_loopback import Certificates, loopback_server, make_certificates, reply


def label_config(names: tuple[str, ...] = ("hair", "upper-clothes", "face")) -> str:
    """A labelling config as Label Studio's SAM examples write it: smart keypoints + brush labels."""
    labels = "".join(f'<Label value="{n}"/>' for n in names)
    return f"""<View>
  <Image name="img" value="$photo" zoom="true"/>
  <KeyPointLabels name="click" toName="img" smart="true">{labels}</KeyPointLabels>
  <BrushLabels name="parts" toName="img">{labels}</BrushLabels>
</View>"""


CONFIG = label_config()


def reference_brush_rle(mask: np.ndarray) -> list[int]:
    """The format written out the slow, obvious way: a string of '0'/'1' characters."""
    flat = np.repeat(mask.reshape(-1), 4).tolist()
    bits = f"{len(flat):032b}" + f"{7:05b}" + "".join(f"{w - 1:04b}" for w in (3, 4, 8, 16))
    i = 0
    while i < len(flat):
        j = i
        while j < len(flat) and flat[j] == flat[i]:
            j += 1
        left = j - i
        while left > 0:
            n = min(left, 65536)
            which = 0 if n <= 8 else 1 if n <= 16 else 2 if n <= 256 else 3
            width = (3, 4, 8, 16)[which]
            bits += ("1" if n > 1 else "0") + f"{which:02b}" + format(n - 1, f"0{width}b") + f"{flat[i]:08b}"
            left -= n
        i = j
    bits += "0" * (8 - len(bits) % 8)
    return [int(bits[k:k + 8], 2) for k in range(0, len(bits), 8)]


def test_brush_rle_matches_label_studios_own_output() -> None:
    # Label Studio's converter (brush.mask2rle) gives these bytes for this mask.
    mask = np.array([[0, 255, 255], [0, 0, 0]], dtype=np.uint8)
    assert encode_brush_rle(mask) == [0, 0, 0, 24, 57, 27, 252, 96, 19, 255, 219, 0, 0]
    assert np.array_equal(decode_brush_rle(encode_brush_rle(mask), 2, 3), mask)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**32 - 1), st.sampled_from([0, 0.3, 0.9, 1.0]))
def test_brush_rle_matches_the_plain_reference(height: int, width: int, seed: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    mask = np.where(rng.random((height, width)) < density, 255, 0).astype(np.uint8)
    mask[rng.integers(height), :] = 255 * rng.integers(2)  # long runs beside single pixels
    encoded = encode_brush_rle(mask)
    assert encoded == reference_brush_rle(mask)
    assert np.array_equal(decode_brush_rle(encoded, height, width), mask)


def test_brush_rle_splits_runs_longer_than_65536() -> None:
    mask = np.zeros((300, 200), dtype=np.uint8)  # 240,000 equal values: four blocks
    mask[150:, 100:] = 255
    assert encode_brush_rle(mask) == reference_brush_rle(mask)
    assert np.array_equal(decode_brush_rle(encode_brush_rle(mask), 300, 200), mask)
    with pytest.raises(ValueError, match="not 10x10x4"):
        decode_brush_rle(encode_brush_rle(mask), 10, 10)


def test_parse_config() -> None:
    tags = parse_config(CONFIG)
    assert (tags.brush, tags.image, tags.data_key) == ("parts", "img", "photo")
    assert tags.brush_labels == ("hair", "upper-clothes", "face")
    with pytest.raises(InputError, match="BrushLabels"):
        parse_config('<View><Image name="i" value="$i"/></View>')
    with pytest.raises(InputError, match="not valid XML"):
        parse_config("<View><Image")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (80, 100, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def photo_png(photo) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted(certificates, monkeypatch) -> None:
    """This process trusts the test CA, the way an operator trusts a private one: SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))


def redirect(handler: BaseHTTPRequestHandler, code: int, location: str) -> None:
    reply(handler, code, Location=location)


@pytest.fixture(scope="module")
def bucket(photo_png, certificates):
    """An https stand-in for a cloud bucket behind presigned URLs: it serves
    ``/ihp-bucket/photo.png`` to any request whose URL is signed (X-Amz-Signature: the URL is the
    credential) and records each GET's path and Authorization header. ``/loop`` redirects to
    itself, ``/away?to=URL`` to URL."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            path, _, query = self.path.partition("?")
            if path == "/loop":
                redirect(self, 302, "/loop")
            elif path == "/away":
                redirect(self, 307, unquote(query.split("=", 1)[1]))
            elif path == "/ihp-bucket/photo.png" and "X-Amz-Signature=" in query:
                reply(self, 200, photo_png, "image/png")
            else:
                self.send_error(403)  # S3's AccessDenied for an unsigned or unknown key

        def log_message(self, *args) -> None:
            pass

    with loopback_server(Handler, certificates) as url:
        yield url, seen


def fileuri(uri: str) -> str:
    """A storage URI as Label Studio's resolve/ takes it (fileuri=, URL-safe base64)."""
    return base64.urlsafe_b64encode(uri.encode()).decode()


@pytest.fixture(scope="module")
def fake_label_studio(photo_png, bucket):
    """A loopback stand-in for Label Studio's file server: needs the token, records the files
    and storage URIs asked for. Its resolve/ answers a URI of the bucket (any storage scheme)
    as Label Studio does for a storage with presigned URLs: 303 to a signed https URL."""
    fetches: list[str] = []
    bucket_url, _ = bucket

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("Authorization") != "Token secret":
                self.send_error(401)
                return
            if self.path.startswith("/tasks/1/resolve/?to="):  # a redirect to anywhere, for the tests
                redirect(self, 302, unquote(self.path.split("=", 1)[1]))
                return
            path, _, query = self.path.partition("?")
            if path.endswith("/resolve/") and query.startswith("fileuri="):
                fetches.append(self.path)
                key = base64.urlsafe_b64decode(query[len("fileuri="):]).decode().split("://ihp-bucket/", 1)[1]
                redirect(self, 303, f"{bucket_url}/ihp-bucket/{key}?X-Amz-Expires=60&X-Amz-Signature=0ff1ce")
                return
            if self.path in ("/data/upload/403/photo.png", "/data/upload/500/photo.png"):  # no access; a crash
                self.send_error(int(self.path.split("/")[3]))
                return
            if self.path != "/data/upload/1/photo.png":
                self.send_error(404)
                return
            fetches.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(photo_png)))
            self.end_headers()
            self.wfile.write(photo_png)

        def log_message(self, *args) -> None:
            pass

    with loopback_server(Handler) as url:
        yield url, fetches


@pytest.fixture
def backend(tiny_checkpoint) -> SharedBackend:
    return SharedBackend(open_backend(tiny_checkpoint, "torch"))


def keypoint(x_pct: float, y_pct: float, label: str, positive: bool = True, size: tuple[int, int] = (100, 80),
             region: str | None = None) -> dict:
    """A smart keypoint region as Label Studio sends it in params.context.result (``region``: its
    id, which Label Studio keeps while the keypoint lives; by default one per place)."""
    return {"original_width": size[0], "original_height": size[1], "image_rotation": 0,
            "value": {"x": x_pct, "y": y_pct, "width": 0.5, "labels": [label], "keypointlabels": [label]},
            "is_positive": positive, "id": region or f"k-{label}-{x_pct}-{y_pct}-{positive}", "from_name": "click",
            "to_name": "img", "type": "keypointlabels", "origin": "manual"}


def predict_body(image_url: str, points: list[dict], task_id: int = 7) -> dict:
    return {"tasks": [{"id": task_id, "data": {"photo": image_url}}], "project": "3.1700000000",
            "label_config": CONFIG, "params": {"login": None, "password": None, "context": {"result": points}}}


def test_predict_returns_brush_regions_equal_to_the_session_mask() -> None:
    """The shipped model on the bundled photo, clicked as Label Studio reports clicks (percent)."""
    from ihp_rt.zoo import default_onnx_path
    from tests.conftest import EXAMPLES

    engine = SharedBackend(open_backend(default_onnx_path(), "onnxruntime"))
    client = TestClient(create_app(engine, label_studio=LabelStudioHost()))
    assert client.get("/label-studio/health").json() == {"status": "UP", "model_class": "ihp-rt"}
    config = label_config(("hair", "upper-clothes", "skin"))
    assert client.post("/label-studio/setup", json={"project": "3.1", "schema": config}).json()["model_version"] \
        .startswith("ihp-rt-")
    data = (EXAMPLES / "astronaut.jpg").read_bytes()
    pixels = [(225, 40, "hair"), (225, 125, "skin"), (90, 330, "upper-clothes"), (40, 150, "background")]
    points = [keypoint((x + 0.5) * 100 / 512, (y + 0.5) * 100 / 512, "hair" if name == "background" else name,
                       positive=name != "background", size=(512, 512)) for x, y, name in pixels]
    body = predict_body("data:image/jpeg;base64," + base64.b64encode(data).decode(), points)
    reply = client.post("/label-studio/predict", json={**body, "label_config": config})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 1 and results[0]["model_version"].startswith("ihp-rt-")

    # Label Studio sends keypoints grouped by label, in no order of placing: the network on all of
    # them, in any order, gives the mask
    alone = Session(engine, corrections=False)
    alone.set_image(read_image(EXAMPLES / "astronaut.jpg"))
    for x, y, name in pixels[::-1]:
        alone.add_click(x, y, name)
    expected = alone.predict().labels
    names = engine.backend.spec.labels.names
    regions = {r["value"]["brushlabels"][0]: r for r in results[0]["result"]}
    assert set(regions) == {"hair", "upper-clothes", "skin"}  # coat, pants, ... are not in this project's labels
    for name, r in regions.items():
        assert (r["from_name"], r["to_name"], r["type"]) == ("parts", "img", "brushlabels")
        assert (r["original_width"], r["original_height"], r["value"]["format"]) == (512, 512, "rle")
        painted = decode_brush_rle(r["value"]["rle"], 512, 512) == 255
        assert np.array_equal(painted, expected == names.index(name))
        assert painted.sum() > 500


def test_predict_fetches_each_task_image_once_with_the_token(backend, fake_label_studio) -> None:
    url, fetches = fake_label_studio
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))
    first = client.post("/label-studio/predict", json=predict_body("/data/upload/1/photo.png",
                                                                   [keypoint(20, 20, "hair")]))
    assert first.status_code == 200, first.text
    points = [keypoint(20, 20, "hair"), keypoint(60, 70, "face")]
    second = client.post("/label-studio/predict", json=predict_body("/data/upload/1/photo.png", points))
    assert second.status_code == 200 and fetches == ["/data/upload/1/photo.png"]  # the session was kept
    assert client.get("/ready").json()["sessions"] == 0  # tasks never take the web page's session slots



def closed_port_url() -> str:
    """A loopback URL nobody listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(("where", "image", "status", "words", "cause"), [
    (None, "/data/upload/1/photo.png", 500, "set LABEL_STUDIO_URL", "set LABEL_STUDIO_URL"),
    ("closed", "/data/upload/1/photo.png", 503, "cannot reach Label Studio", "Connection refused"),
    ("fake", "/data/upload/500/photo.png", 502, "Label Studio answered 500", "answered 500"),
    ("fake-guess", "/data/upload/1/photo.png", 500, "LABEL_STUDIO_API_KEY", "answered 401"),
    ("fake", "/data/upload/403/photo.png", 500, "LABEL_STUDIO_API_KEY", "answered 403"),
])
def test_upstream_faults_are_not_the_callers(backend, fake_label_studio, caplog, where, image, status, words,
                                            cause) -> None:
    """Label Studio down or failing (503 / 502), or this server set up wrong (LABEL_STUDIO_URL
    unset, an API key Label Studio refuses: 500): never a 400, which would blame Label Studio's
    request, and logged with the cause, the one place an operator learns of it."""
    url, _ = fake_label_studio
    host = {None: LabelStudioHost(), "closed": LabelStudioHost(closed_port_url(), "secret"),
            "fake": LabelStudioHost(url, "secret"), "fake-guess": LabelStudioHost(url, "guess")}[where]
    client = TestClient(create_app(backend, label_studio=host))
    with caplog.at_level(logging.INFO, logger="ihp_rt.serve"):
        reply = client.post("/label-studio/predict", json=predict_body(image, [keypoint(20, 20, "hair")], task_id=8))
    assert reply.status_code == status and words in reply.json()["detail"], reply.text
    assert ("retry-after" in reply.headers) == (status == 503)  # only a fault that may pass is worth a retry
    faults = [r for r in caplog.records if r.name == "ihp_rt.serve" and r.levelno >= logging.ERROR]
    assert len(faults) == 1 and cause in faults[0].getMessage() and faults[0].exc_info, faults


@pytest.mark.parametrize(("image_url", "points", "words"), [
    ("http://elsewhere.example/cat.png", [keypoint(5, 5, "hair")], "only images on the Label Studio host"),
    ("/data/upload/1/photo.png", [keypoint(5, 5, "tail")], "unknown label 'tail'"),
    ("data:image/png;base64,@@@", [keypoint(5, 5, "hair")], "base64"),
    ("data:image/png;base64," + base64.b64encode(b"not a picture").decode(), [keypoint(5, 5, "hair")],
     "not a readable image"),
    ("/data/upload/1/photo.png", [{"type": "keypointlabels", "value": {"x": 5}}], "context result #0"),
    ("/data/upload/1/photo.png", [{**keypoint(5, 5, "hair"), "original_width": 10**400}], "context result #0"),
    ("/data/upload/1/photo.png", [{**keypoint(5, 5, "hair"), "value": "x"}], "context result #0"),
])
def test_predict_refuses_bad_requests_with_a_reason(backend, fake_label_studio, image_url, points, words) -> None:
    url, _ = fake_label_studio
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))
    response = client.post("/label-studio/predict", json=predict_body(image_url, points, task_id=99))
    assert response.status_code == 400 and words in response.json()["detail"], response.text
    assert client.get("/label-studio/health").status_code == 200


def test_predict_without_clicks(backend, photo_png) -> None:
    client = TestClient(create_app(backend, label_studio=LabelStudioHost()))
    empty = client.post("/label-studio/predict", json=predict_body("/data/upload/1/photo.png", []))
    assert empty.json()["results"][0]["result"] == []  # batch pre-labelling request: nothing to suggest
    assert json.loads(client.post("/label-studio/webhook", json={"action": "ANNOTATION_CREATED"}).text)["status"]


def test_tasks_are_a_bounded_cache_that_never_blocks_web_sessions(backend, fake_label_studio, photo_png) -> None:
    """More tasks than session slots: the least recently clicked task is dropped (and fetched
    again when clicked), the web page keeps every slot, and a flood of keypoints is refused."""
    from ihp_rt.serving import ServeConfig

    url, fetches = fake_label_studio
    fetches.clear()
    client = TestClient(create_app(backend, ServeConfig(max_sessions=2, max_session_clicks=3),
                                   label_studio=LabelStudioHost(url, "secret")))
    for task in (1, 2, 3, 1):
        body = predict_body("/data/upload/1/photo.png", [keypoint(20, 20, "hair")], task_id=task)
        assert client.post("/label-studio/predict", json=body).status_code == 200
    assert len(fetches) == 4  # task 1 was evicted by task 3, so it is fetched again
    upload = client.post("/sessions", files={"image": ("p.png", photo_png, "image/png")})
    assert upload.status_code == 201  # web sessions are not crowded out by tasks
    flood = client.post("/label-studio/predict", json=predict_body(
        "/data/upload/1/photo.png", [keypoint(i, i, "hair") for i in range(1, 5)], task_id=1))
    assert flood.status_code == 409 and "at most 3 clicks" in flood.json()["detail"]
    for bad in ({"result": ["x"]}, "context", {"result": {"not": "a list"}}):
        body = {**predict_body("/data/upload/1/photo.png", []), "params": {"context": bad}}
        response = client.post("/label-studio/predict", json=body)
        assert response.status_code == 400 and "context" in response.json()["detail"], (bad, response.text)


def test_non_finite_coordinates_are_refused(backend) -> None:
    client = TestClient(create_app(backend, label_studio=LabelStudioHost()))
    body = json.dumps(predict_body("data:image/png;base64,AAAA", [keypoint(5, 5, "hair")]))
    body = body.replace('"x": 5', '"x": 1e309')
    assert "1e309" in body  # JSON's own spelling of an overflowing number: Python reads it as inf
    response = client.post("/label-studio/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "context result #0" in response.json()["detail"]


@pytest.fixture
def other_host(photo_png):
    """A second loopback server, not the Label Studio host: it records who asked (GET or POST)
    and with which Authorization header, and would serve the photo to anyone."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(photo_png)))
            self.end_headers()
            self.wfile.write(photo_png)

        do_POST = do_GET  # a token exchange sent here would be caught too

        def log_message(self, *args) -> None:
            pass

    with loopback_server(Handler) as url:
        yield url, seen


def test_a_redirect_off_the_label_studio_host_goes_only_to_https_and_without_the_token(
        backend, fake_label_studio, bucket, other_host, trusted) -> None:
    """Label Studio's resolve/ redirects to where a cloud storage serves the file: followed to
    https, without the API token (a presigned URL is its own credential, and the token is for
    Label Studio alone); a redirect to plain http is refused before that host is asked; a
    redirect within the host is followed, token and all."""
    url, _ = fake_label_studio
    bucket_url, bucket_seen = bucket
    elsewhere, seen = other_host
    bucket_seen.clear()
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))

    def ask(target: str, task_id: int):
        return client.post("/label-studio/predict", json=predict_body(
            "/tasks/1/resolve/?to=" + quote(target), [keypoint(20, 20, "hair")], task_id=task_id))

    away = ask(elsewhere + "/steal.png", 21)
    assert away.status_code == 502 and "only https" in away.json()["detail"], away.text
    assert seen == []  # not asked at all, so certainly not given the token
    signed = ask(bucket_url + "/ihp-bucket/photo.png?X-Amz-Signature=5", 22)
    assert signed.status_code == 200, signed.text
    assert bucket_seen == [("/ihp-bucket/photo.png?X-Amz-Signature=5", None)]  # asked once, without the token
    assert ask("/data/upload/1/photo.png", 23).status_code == 200


@pytest.mark.parametrize("uri", ["s3://ihp-bucket/photo.png", "gs://ihp-bucket/photo.png",
                                 "azure-blob://ihp-bucket/photo.png"])
def test_a_cloud_storage_task_is_resolved_through_label_studio(backend, fake_label_studio, bucket, trusted, photo,
                                                               uri) -> None:
    """A task imported from cloud storage holds the storage URI (Label Studio resolves it only
    for its own front end): the backend asks Label Studio's /tasks/<id>/resolve/ for it, with
    the token, and follows its redirect to the presigned URL, without it."""
    url, fetches = fake_label_studio
    _, bucket_seen = bucket
    bucket_seen.clear()
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))
    names = backend.backend.spec.labels.names
    points = [keypoint(20, 20, "hair"), keypoint(60, 70, "face")]
    reply = client.post("/label-studio/predict", json={**predict_body(uri, points, task_id=24),
                                                       "label_config": label_config(names)})
    assert np.array_equal(painted(reply, names), session_labels(backend, photo, [(20, 16, "hair"), (60, 56, "face")]))
    assert fetches[-1] == "/tasks/24/resolve/?fileuri=" + fileuri(uri)
    assert bucket_seen == [("/ihp-bucket/photo.png?X-Amz-Expires=60&X-Amz-Signature=0ff1ce", None)]
    no_id = predict_body(uri, points)
    del no_id["tasks"][0]["id"]
    refused = client.post("/label-studio/predict", json=no_id)
    assert refused.status_code == 400 and "needs the task's id" in refused.json()["detail"], refused.text


def test_redirects_are_followed_within_limits(fake_label_studio, bucket, other_host, trusted, photo_png,
                                              monkeypatch) -> None:
    """Every hop of a redirect chain is held to the same rules: the size limit applies to what
    the last one serves, a loop ends after MAX_REDIRECTS hops, a hop off the host must be https
    even after an https one, the token never goes to a path of the host that is not a file
    URL, and a certificate nobody vouches for fails like any bad gateway."""
    from ihp_rt.serving.label_studio.fetch import MAX_REDIRECTS

    url, _ = fake_label_studio
    bucket_url, bucket_seen = bucket
    elsewhere, seen = other_host
    host = LabelStudioHost(url, "secret")

    def via(target: str) -> str:
        return "/tasks/1/resolve/?to=" + quote(target)

    with pytest.raises(InputError, match="larger than the server's limit of 1,000 bytes"):
        fetch_image("s3://ihp-bucket/photo.png", host, 1000, task_id=1)
    bucket_seen.clear()
    with pytest.raises(UpstreamError, match=f"more than {MAX_REDIRECTS} redirects"):
        fetch_image(via(bucket_url + "/loop"), host, 1 << 20)
    assert bucket_seen == [("/loop", None)] * MAX_REDIRECTS
    with pytest.raises(UpstreamError, match="only https"):
        fetch_image(via(bucket_url + "/away?to=" + quote(elsewhere + "/a.png")), host, 1 << 20)
    assert seen == []
    with pytest.raises(UpstreamError, match="not one of its file URLs"):
        fetch_image(via("/api/projects/1/next"), host, 1 << 20)
    with pytest.raises(UpstreamError, match="answered 403"):  # S3's AccessDenied: not the API key's fault
        fetch_image(via(bucket_url + "/ihp-bucket/photo.png"), host, 1 << 20)
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(UpstreamError, match=r"certificate verify failed.*SSL_CERT_FILE"):
        fetch_image("s3://ihp-bucket/photo.png", host, 1 << 20, task_id=1)


def test_a_storage_cannot_send_the_token_back_to_label_studio(certificates, bucket, trusted) -> None:
    """Once a redirect chain has left the Label Studio host it never carries the token again,
    even back to that host: whoever controls a storage's redirects cannot make this server call
    Label Studio (https here, so the hop back is allowed at all) with the token."""
    bucket_url, _ = bucket
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/tasks/1/resolve/?to=") and self.headers.get("Authorization") == "Token secret":
                redirect(self, 302, unquote(self.path.split("=", 1)[1]))
            else:
                self.send_error(401)

        def log_message(self, *args) -> None:
            pass

    with loopback_server(Handler, certificates) as url:
        start = "/tasks/1/resolve/?to=" + quote(bucket_url + "/away?to=" + quote(url + "/data/upload/1/photo.png"))
        with pytest.raises(UpstreamError, match="answered 401"):
            fetch_image(start, LabelStudioHost(url, "secret"), 1 << 20)
    assert seen == [(start, "Token secret"), ("/data/upload/1/photo.png", None)]


@pytest.mark.parametrize("image_url", ["http://[bad", "http://[::1", "https://[x]:99999/a.png"])
def test_malformed_task_urls_are_a_400(backend, fake_label_studio, image_url) -> None:
    url, _ = fake_label_studio
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))
    response = client.post("/label-studio/predict", json=predict_body(image_url, [keypoint(5, 5, "hair")]))
    assert response.status_code == 400 and image_url in response.json()["detail"], response.text


def test_tasks_without_an_id_do_not_share_a_session(backend, tiny_checkpoint) -> None:
    """Two tasks without an id, two different photos of one size: each mask is its own photo's."""
    client = TestClient(create_app(backend, label_studio=LabelStudioHost()))
    rng = np.random.default_rng(11)
    photos = [rng.integers(0, 256, (80, 100, 3), dtype=np.uint8) for _ in range(2)]
    points = [keypoint(20, 20, "hair"), keypoint(60, 70, "face")]
    names = tiny_checkpoint.spec.labels.names
    masks: list[np.ndarray] = []
    for photo in photos:
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="PNG")
        body = predict_body("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), points)
        del body["tasks"][0]["id"]
        body["label_config"] = label_config(names)  # every class: the regions rebuild the whole map
        reply = client.post("/label-studio/predict", json=body)
        assert reply.status_code == 200, reply.text
        got = np.zeros((80, 100), dtype=np.uint8)
        for r in reply.json()["results"][0]["result"]:
            got[decode_brush_rle(r["value"]["rle"], 80, 100) == 255] = names.index(r["value"]["brushlabels"][0])
        alone = Session(backend)
        alone.set_image(photo)
        alone.add_click(20, 16, "hair")
        alone.add_click(60, 56, "face")
        masks.append(alone.predict().labels)
        assert np.array_equal(got, masks[-1])
    assert not np.array_equal(*masks)  # the photos do tell apart


# -- keypoints kept per task, grouped by label (the front end sends one label's at a time) --

def painted(reply, names: tuple[str, ...], height: int = 80, width: int = 100) -> np.ndarray:
    """The label map a /predict reply's brush regions paint (the config must list every class)."""
    assert reply.status_code == 200, reply.text
    got = np.zeros((height, width), dtype=np.uint8)
    for r in reply.json()["results"][0]["result"]:
        got[decode_brush_rle(r["value"]["rle"], height, width) == 255] = names.index(r["value"]["brushlabels"][0])
    return got


def session_labels(backend: SharedBackend, photo: np.ndarray, clicks: list[tuple[int, int, str | int]]) -> np.ndarray:
    """The reference: a fresh Session's label map for these pixel clicks, the network on all of
    them (as for Label Studio, which sends keypoints grouped by label)."""
    alone = Session(backend, corrections=False)
    alone.set_image(photo)
    for x, y, label in clicks:
        alone.add_click(x, y, label)
    return alone.predict().labels


@pytest.fixture
def lip_client(backend, tiny_checkpoint, fake_label_studio):
    """A client for the tiny model, a config with all its classes, and a body maker for task 31."""
    url, fetches = fake_label_studio
    fetches.clear()
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))
    names = tiny_checkpoint.spec.labels.names

    def ask(points: list[dict]):
        return client.post("/label-studio/predict", json={**predict_body("/data/upload/1/photo.png", points, 31),
                                                          "label_config": label_config(names)})

    return ask, names, fetches


# The front end's requests after each click: hair; face; upper-clothes, then a negative
# keypoint placed with upper-clothes selected (sent with the upper-clothes group).
HAIR, FACE = keypoint(20, 20, "hair"), keypoint(60, 70, "face")
CLOTHES, NOT_CLOTHES = keypoint(40, 60, "upper-clothes"), keypoint(85, 30, "upper-clothes", positive=False)


def test_keypoints_of_other_labels_are_kept(backend, photo, lip_client) -> None:
    """Each reply is the Session's mask for every keypoint placed so far, though each request
    carries only the new keypoint's label group."""
    ask, names, _ = lip_client
    assert np.array_equal(painted(ask([HAIR]), names), session_labels(backend, photo, [(20, 16, "hair")]))
    both = [(20, 16, "hair"), (60, 56, "face")]
    assert np.array_equal(painted(ask([FACE]), names), session_labels(backend, photo, both))
    everything = [*both, (40, 48, "upper-clothes"), (85, 24, 0)]
    last = painted(ask([CLOTHES, NOT_CLOTHES]), names)
    assert np.array_equal(last, session_labels(backend, photo, everything))
    # the test can tell: the last group alone gives another mask
    assert not np.array_equal(last, session_labels(backend, photo, everything[2:]))


def test_a_request_replaces_its_own_labels_group_only(backend, photo, lip_client) -> None:
    """A label's group is replaced whole (what the front end leaves out was deleted or moved) and
    keeps its place in the click order; a keypoint sent under another label leaves its old group."""
    ask, names, _ = lip_client
    ask([HAIR, keypoint(30, 25, "hair")])
    ask([FACE])
    moved = keypoint(25, 10, "hair", region=HAIR["id"])  # the first hair keypoint dragged; the second deleted
    expected = session_labels(backend, photo, [(25, 8, "hair"), (60, 56, "face")])
    assert np.array_equal(painted(ask([moved]), names), expected)  # hair still first
    relabelled = keypoint(25, 10, "face", region=HAIR["id"])  # the hair keypoint, now labelled face
    expected = session_labels(backend, photo, [(60, 56, "face"), (25, 8, "face")])
    assert np.array_equal(painted(ask([FACE, relabelled]), names), expected)  # hair's group is gone


def test_an_empty_context_forgets_every_keypoint_but_keeps_the_image(backend, photo, lip_client) -> None:
    """The last keypoint of some label was deleted: Label Studio sends no keypoints and no
    label, so all of the task's keypoints go (none may steer a mask unseen); the image stays."""
    ask, names, fetches = lip_client
    ask([HAIR])
    assert np.array_equal(painted(ask([FACE]), names),
                          session_labels(backend, photo, [(20, 16, "hair"), (60, 56, "face")]))
    cleared = ask([])
    assert cleared.status_code == 200 and cleared.json()["results"][0]["result"] == []
    after = painted(ask([CLOTHES]), names)
    assert np.array_equal(after, session_labels(backend, photo, [(40, 48, "upper-clothes")]))
    assert not np.array_equal(after, session_labels(backend, photo, [(20, 16, "hair"), (60, 56, "face"),
                                                                     (40, 48, "upper-clothes")]))
    assert fetches == ["/data/upload/1/photo.png"]  # fetched once: forgetting keypoints keeps the image


def test_the_click_limit_counts_every_group(backend, photo, tiny_checkpoint, fake_label_studio) -> None:
    """--max-session-clicks holds for a task's keypoints together; the refused request's group
    is still kept (it is on the annotator's screen), so deleting one keypoint is enough."""
    from ihp_rt.serving import ServeConfig

    url, _ = fake_label_studio
    client = TestClient(create_app(backend, ServeConfig(max_session_clicks=3),
                                   label_studio=LabelStudioHost(url, "secret")))
    names = tiny_checkpoint.spec.labels.names

    def ask(points: list[dict]):
        return client.post("/label-studio/predict", json={**predict_body("/data/upload/1/photo.png", points, 32),
                                                          "label_config": label_config(names)})

    hairs = [HAIR, keypoint(30, 25, "hair")]
    assert ask(hairs).status_code == 200
    over = ask([FACE, keypoint(70, 75, "face")])
    assert over.status_code == 409 and "4 keypoints on this task" in over.json()["detail"], over.text
    back = ask([HAIR])  # the second hair keypoint deleted: 1 hair + 2 face
    expected = session_labels(backend, photo, [(20, 16, "hair"), (60, 56, "face"), (70, 60, "face")])
    assert np.array_equal(painted(back, names), expected)


# -- label names: the config's own spelling, or a map; refused at /setup unless they are the model's --

def test_regions_come_back_under_the_configs_own_spelling(backend, photo, fake_label_studio) -> None:
    """Label Studio's templates capitalise (<Label value="Hair"/>): keypoints so labelled are the
    model's hair, and the regions must come back as "Hair" too, the only name Label Studio shows
    them under (they once came back as "hair", and so not at all)."""
    url, _ = fake_label_studio
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))
    spelled = tuple(n.title() for n in backend.backend.spec.labels.names)  # Hair, Upper-Clothes, ...
    config = label_config(spelled[1:])
    assert client.post("/label-studio/setup", json={"project": "3.1", "schema": config}).status_code == 200
    reply = client.post("/label-studio/predict", json={
        **predict_body("/data/upload/1/photo.png", [keypoint(20, 20, "Hair"), keypoint(60, 70, "Face")], 33),
        "label_config": config})
    expected = session_labels(backend, photo, [(20, 16, "hair"), (60, 56, "face")])
    assert np.array_equal(painted(reply, spelled), expected)
    assert {r["value"]["brushlabels"][0] for r in reply.json()["results"][0]["result"]} == \
        {spelled[c] for c in np.unique(expected) if c}


def test_setup_refuses_labels_that_are_not_the_models(backend, fake_label_studio, caplog) -> None:
    """A config whose brush or smart keypoint labels name no class of the model is refused at
    /setup (when the model is connected), naming them, and so is one with two brush labels for
    one class (which would get the region?); /predict says the same. Label Studio shows only
    "400, see the backend's log", so the refusal is logged too."""
    url, _ = fake_label_studio
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))
    for names, words in [(("Hair", "Tail", "Clothes"), ["'Tail', 'Clothes'", "upper-clothes",
                                                            "LABEL_STUDIO_LABEL_MAP"]),
                         (("Hair", "Face", "hair"), ["'Hair' and 'hair'", "both"])]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ihp_rt.serve"):
            setup = client.post("/label-studio/setup", json={"project": "3.1", "schema": label_config(names)})
        assert setup.status_code == 400 and all(w in setup.json()["detail"] for w in words), setup.text
        assert "'Face'" not in setup.json()["detail"]
        refusals = [json.loads(r.getMessage()) for r in caplog.records if r.levelno == logging.WARNING]
        assert refusals == [{"event": "label-studio-setup-refused", "project": "3.1",
                             "detail": setup.json()["detail"]}]
        body = predict_body("/data/upload/1/photo.png", [keypoint(20, 20, "Hair")], 34)
        predict = client.post("/label-studio/predict", json={**body, "label_config": label_config(names)})
        assert predict.status_code == 400 and predict.json()["detail"] == setup.json()["detail"]
    keypoints_only = label_config(("Hair",)).replace('<Label value="Hair"/></KeyPointLabels>',
                                                      '<Label value="Hair"/><Label value="Tail"/></KeyPointLabels>')
    setup = client.post("/label-studio/setup", json={"project": "3.1", "schema": keypoints_only})
    assert setup.status_code == 400 and "'Tail'" in setup.json()["detail"], setup.text


def test_a_label_map_links_a_configs_names_to_the_models_classes(backend, photo, fake_label_studio,
                                                                 monkeypatch, capsys) -> None:
    """LABEL_STUDIO_LABEL_MAP (or ihp-rt serve --label-studio-label-map): config label name ->
    model class, for names that are not the class's own; the regions come back under the
    config's names. A map naming no class of the model is refused at start."""
    from ihp_rt.cli import main

    url, _ = fake_label_studio
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret")
    monkeypatch.setenv("LABEL_STUDIO_LABEL_MAP", json.dumps({"Clothes": "upper-clothes", "Skin": 13}))
    client = TestClient(create_app(backend))
    config = label_config(("Hair", "Clothes", "Skin"))
    assert client.post("/label-studio/setup", json={"project": "3.1", "schema": config}).status_code == 200
    reply = client.post("/label-studio/predict", json={
        **predict_body("/data/upload/1/photo.png", [keypoint(40, 60, "Clothes"), keypoint(60, 70, "Skin")], 35),
        "label_config": config})
    spelled = list(backend.backend.spec.labels.names)
    spelled[2], spelled[5], spelled[13] = "Hair", "Clothes", "Skin"  # hair, upper-clothes, face
    expected = session_labels(backend, photo, [(40, 48, "upper-clothes"), (60, 56, "face")])
    in_config = np.where(np.isin(expected, [2, 5, 13]), expected, 0)  # the only classes the config has
    assert np.array_equal(painted(reply, tuple(spelled)), in_config)
    assert LabelStudioHost.from_environment('{"Top": "upper-clothes"}').label_map == {"Top": "upper-clothes"}
    for bad in ('["Clothes"]', '{"Clothes": "shirt"}', "Clothes=upper-clothes", '{"Clothes": true}', '{"Skin": 99}'):
        monkeypatch.setenv("LABEL_STUDIO_LABEL_MAP", bad)
        with pytest.raises(IhpError, match="label map"):
            create_app(backend)
    assert main(["serve", "--label-studio-label-map", "Clothes=upper-clothes"]) == 2  # before a model is loaded
    assert "--label-studio-label-map" in capsys.readouterr().err


def test_merge_groups() -> None:
    """First-seen order, whole-group replacement, relabelled keypoints moved, emptied groups dropped."""
    a1, a2 = Keypoint("a1", "hair", 1, 1, 2), Keypoint("a2", "hair", 2, 2, 0)
    b1, c1 = Keypoint("b1", "face", 3, 3, 13), Keypoint(None, "hat", 4, 4, 1)
    held = merge_groups(merge_groups(merge_groups({}, [a1, a2]), [b1]), [c1])
    assert list(held) == ["hair", "face", "hat"]
    assert merge_groups(held, [a2]) == {"hair": [a2], "face": [b1], "hat": [c1]}
    relabelled = Keypoint("b1", "hair", 3, 3, 2)
    assert merge_groups(held, [a1, relabelled]) == {"hair": [a1, relabelled], "hat": [c1]}
    assert merge_groups(held, [Keypoint("a1", "hat", 1, 1, 1)]) == {"hair": [a2], "face": [b1],
                                                                   "hat": [Keypoint("a1", "hat", 1, 1, 1)]}
    assert merge_groups({}, [a1, b1, a2]) == {"hair": [a1, a2], "face": [b1]}
    assert list(held) == ["hair", "face", "hat"] and held["hair"] == [a1, a2]  # the held groups are not changed


# -- personal access tokens: JWT refresh tokens, exchanged for Bearer access tokens --

def make_jwt(claims: dict) -> str:
    """A JWT as Label Studio writes one (HS256); nothing on our side checks the signature."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([part(b'{"alg":"HS256","typ":"JWT"}'), part(json.dumps(claims).encode()), part(b"sig" * 10)])


PAT = make_jwt({"token_type": "refresh", "exp": 8_000_000_000, "jti": "pat", "user_id": 1})


class FakeJwtHost:
    """What a loopback stand-in for Label Studio with personal access tokens saw and may do."""

    def __init__(self) -> None:
        self.refresh_bodies: list[dict] = []  # each exchange's JSON body
        self.image_auth: list[str | None] = []  # each image request's Authorization header
        self.valid: set[str] = set()  # access tokens the images accept
        self.issued: list[str] = []
        self.lifetime_s = 300  # Label Studio's default access token lifetime
        self.refuse_images = False  # refuse every access token (a user who lost access, say)
        self.refresh_redirect: str | None = None  # where to send the exchange on, if anywhere
        self.refresh_fault: int | None = None  # a status every exchange is answered with (a crash, say)
        self.url = ""


@pytest.fixture
def jwt_host(photo_png):
    """A loopback stand-in for a Label Studio that takes only personal access tokens: its
    /api/token/refresh/ gives access tokens for PAT, and its images want ``Bearer <access>``."""
    state = FakeJwtHost()

    class Handler(BaseHTTPRequestHandler):
        def reply(self, code: int, body: bytes, kind: str = "application/json", **headers: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
            if self.path != "/api/token/refresh/":
                self.reply(404, b"{}")
            elif state.refresh_redirect:
                self.reply(307, b"", Location=state.refresh_redirect)
            elif state.refresh_fault:
                self.reply(state.refresh_fault, b"{}")
            elif (state.refresh_bodies.append(body) or body) != {"refresh": PAT}:
                self.reply(401, b'{"detail": "Token is invalid", "code": "token_not_valid"}')
            else:
                access = make_jwt({"token_type": "access", "exp": int(time.time()) + state.lifetime_s,
                                   "jti": f"access{len(state.issued)}"})
                state.issued.append(access)
                state.valid.add(access)
                self.reply(200, json.dumps({"access": access}).encode())

        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            state.image_auth.append(auth)
            if state.refuse_images or auth not in {f"Bearer {a}" for a in state.valid}:
                self.reply(401, b'{"detail": "Authentication credentials were not provided."}')
            elif self.path.startswith("/tasks/1/resolve/?to="):
                self.reply(302, b"", Location=unquote(self.path.split("=", 1)[1]))
            elif self.path == "/data/upload/1/photo.png":
                self.reply(200, photo_png, "image/png")
            else:
                self.reply(404, b"{}")

        def log_message(self, *args) -> None:
            pass

    with loopback_server(Handler) as state.url:
        yield state


def test_a_personal_access_token_is_exchanged_and_sent_as_bearer(backend, jwt_host) -> None:
    """The PAT goes only in the exchange's body, once; its access token fetches every image."""
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(jwt_host.url, PAT)))
    for task in (41, 42):  # two tasks: two fetches
        reply = client.post("/label-studio/predict", json=predict_body("/data/upload/1/photo.png",
                                                                       [keypoint(20, 20, "hair")], task))
        assert reply.status_code == 200, reply.text
    assert jwt_host.refresh_bodies == [{"refresh": PAT}]  # kept, not exchanged per fetch
    assert jwt_host.image_auth == [f"Bearer {jwt_host.issued[0]}"] * 2


def test_the_access_token_is_renewed_before_it_expires(jwt_host, photo_png) -> None:
    now = [time.time()]
    host = LabelStudioHost(jwt_host.url, PAT, AccessTokens(clock=lambda: now[0]))
    assert fetch_image("/data/upload/1/photo.png", host, 1 << 20) == photo_png
    exp = jwt_claims(jwt_host.issued[0])["exp"]
    now[0] = exp - EXPIRY_MARGIN_S - 1
    assert fetch_image("/data/upload/1/photo.png", host, 1 << 20) == photo_png
    assert len(jwt_host.issued) == 1
    now[0] = exp - EXPIRY_MARGIN_S + 1  # too close to its exp for a fetch that may take 30 s
    assert fetch_image("/data/upload/1/photo.png", host, 1 << 20) == photo_png
    assert len(jwt_host.issued) == 2 and jwt_host.image_auth[-1] == f"Bearer {jwt_host.issued[1]}"


def test_a_refused_access_token_is_renewed_once(jwt_host, photo_png) -> None:
    """A kept access token refused (revoked before its exp) is renewed and the fetch retried;
    a renewed one refused too is the end of it: no loop."""
    host = LabelStudioHost(jwt_host.url, PAT)
    assert fetch_image("/data/upload/1/photo.png", host, 1 << 20) == photo_png
    jwt_host.valid.clear()  # Label Studio forgets it (a restart with a new signing key, say)
    assert fetch_image("/data/upload/1/photo.png", host, 1 << 20) == photo_png
    first, second = jwt_host.issued
    assert jwt_host.image_auth == [f"Bearer {first}", f"Bearer {first}", f"Bearer {second}"]

    jwt_host.refuse_images = True
    jwt_host.image_auth.clear()
    with pytest.raises(Misconfigured, match=r"answered 401 .*LABEL_STUDIO_API_KEY"):
        fetch_image("/data/upload/1/photo.png", host, 1 << 20)
    assert len(jwt_host.image_auth) == 2 and len(jwt_host.issued) == 3  # the kept one, then one renewal


def test_a_revoked_personal_access_token_is_a_clear_error(jwt_host) -> None:
    """A PAT Label Studio no longer knows: the exchange's 401 says so, and no image is asked for."""
    unknown = make_jwt({"token_type": "refresh", "exp": 8_000_000_000, "jti": "revoked"})
    with pytest.raises(Misconfigured, match="revoked, expired"):
        fetch_image("/data/upload/1/photo.png", LabelStudioHost(jwt_host.url, unknown), 1 << 20)
    assert jwt_host.image_auth == [] and jwt_host.refresh_bodies == [{"refresh": unknown}]


@pytest.mark.parametrize("url", ["label-studio:8080", "ftp://label-studio", "http://", "http://[::1", "https:///x"])
def test_a_label_studio_url_nothing_could_be_fetched_from_is_refused_at_start(url) -> None:
    with pytest.raises(IhpError, match="LABEL_STUDIO_URL must be http"):
        LabelStudioHost(url)


@pytest.mark.parametrize(("fault", "status", "words"), [
    ("revoked", 500, "revoked, expired"), (500, 502, "answered 500"), (503, 502, "answered 503"),
    ("closed", 503, "cannot reach Label Studio"), ("untrusted", 502, "SSL_CERT_FILE"),
])
def test_a_failed_token_exchange_is_a_server_fault(backend, jwt_host, bucket, fault, status, words) -> None:
    """The exchange of a personal access token fails: with a key Label Studio no longer takes,
    this server is set up wrong (500); Label Studio failing (502) or down (503) is its own fault.
    A certificate this server cannot check (an https Label Studio behind a CA it does not
    trust) is a 502, as for an image: a retry would fail alike, so no 503 and Retry-After."""
    key = make_jwt({"token_type": "refresh", "exp": 8_000_000_000, "jti": "revoked"}) if fault == "revoked" else PAT
    jwt_host.refresh_fault = fault if isinstance(fault, int) else None
    host = LabelStudioHost({"closed": closed_port_url(), "untrusted": bucket[0]}.get(fault, jwt_host.url), key)
    client = TestClient(create_app(backend, label_studio=host))
    reply = client.post("/label-studio/predict", json=predict_body("/data/upload/1/photo.png",
                                                                   [keypoint(20, 20, "hair")], 46))
    assert reply.status_code == status and words in reply.json()["detail"], reply.text
    assert ("retry-after" in reply.headers) == (status == 503)
    assert jwt_host.image_auth == []  # no image asked for without an access token


def test_tokens_never_leave_the_label_studio_host(backend, jwt_host, other_host, bucket, trusted) -> None:
    """A redirected exchange is not followed (this server is set up with the wrong URL), and an
    image's redirect to another host is followed only to https, without the token: neither the
    PAT (the exchange's body) nor an access token reaches another host."""
    elsewhere, seen = other_host
    bucket_url, bucket_seen = bucket
    bucket_seen.clear()
    jwt_host.refresh_redirect = elsewhere + "/api/token/refresh/"
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(jwt_host.url, PAT)))
    away = client.post("/label-studio/predict", json=predict_body("/data/upload/1/photo.png",
                                                                  [keypoint(20, 20, "hair")], 43))
    assert away.status_code == 500 and "a redirect to" in away.json()["detail"], away.text
    jwt_host.refresh_redirect = None
    away = client.post("/label-studio/predict", json=predict_body(
        "/tasks/1/resolve/?to=" + quote(elsewhere + "/steal.png"), [keypoint(20, 20, "hair")], 44))
    assert away.status_code == 502 and "only https" in away.json()["detail"], away.text
    assert jwt_host.image_auth == [f"Bearer {jwt_host.issued[0]}"]  # the redirect came with a valid token
    assert seen == []
    signed = client.post("/label-studio/predict", json=predict_body(
        "/tasks/1/resolve/?to=" + quote(bucket_url + "/ihp-bucket/photo.png?X-Amz-Signature=7"),
        [keypoint(20, 20, "hair")], 47))
    assert signed.status_code == 200, signed.text
    assert bucket_seen == [("/ihp-bucket/photo.png?X-Amz-Signature=7", None)]
    within = client.post("/label-studio/predict", json=predict_body(
        "/tasks/1/resolve/?to=" + quote("/data/upload/1/photo.png"), [keypoint(20, 20, "hair")], 45))
    assert within.status_code == 200, within.text


def test_which_authorization_a_key_gets() -> None:
    """Legacy tokens (and anything not a JWT) go as Token; a JWT access token as Bearer, as is;
    neither is exchanged (the opener would fail if asked)."""
    tokens = AccessTokens()
    access = make_jwt({"token_type": "access", "exp": 8_000_000_000})
    for key, header in [("0123456789abcdef0123456789abcdef01234567", "Token 0123456789abcdef0123456789abcdef01234567"),
                        ("a.b.c", "Token a.b.c"), ("e30.e30.x", "Token e30.e30.x"),  # {}.{}: no alg, not a JWT
                        (access, f"Bearer {access}")]:
        assert tokens.authorization(LabelStudioHost("http://127.0.0.1:9", key), opener=None) == (header, True)
    assert tokens.authorization(LabelStudioHost("http://127.0.0.1:9"), opener=None) == (None, True)
    assert jwt_claims(PAT)["token_type"] == "refresh" and jwt_claims("x.y") is None
    assert "secret" not in repr(LabelStudioHost("http://ls", "secret"))  # reprs end up in logs


def test_the_host_under_another_scheme_is_not_the_label_studio_host(backend, fake_label_studio) -> None:
    """LABEL_STUDIO_URL is https: a task URL naming the same host:port over plain http must not
    be fetched, or the token would cross the network unencrypted."""
    url, fetches = fake_label_studio
    fetches.clear()
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url.replace("http://", "https://"), "secret")))
    response = client.post("/label-studio/predict", json=predict_body(url + "/data/upload/1/photo.png",
                                                                      [keypoint(20, 20, "hair")], task_id=61))
    assert response.status_code == 400 and "only images on the Label Studio host" in response.json()["detail"]
    assert fetches == []  # not asked at all


@pytest.fixture
def any_path_host(photo_png):
    """A loopback Label Studio stand-in that answers *every* GET with the photo (given the
    token) and records each path asked: what the backend asks for is all up to its own check."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.headers.get("Authorization") != "Token secret":
                self.send_error(401)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(photo_png)))
            self.end_headers()
            self.wfile.write(photo_png)

        def log_message(self, *args) -> None:
            pass

    with loopback_server(Handler) as url:
        yield url, seen


@pytest.mark.parametrize("path", [
    "/data/upload/3/photo.png", "/data/local-files/?d=photos/photo.png", "/storage-data/uploaded/?filepath=a.png",
    "/tasks/12/resolve/?fileuri=czM6Ly9iL2EucG5n", "/tasks/12/presign/?fileuri=x", "/projects/3/resolve/?fileuri=x",
])
def test_task_images_are_fetched_from_label_studios_file_urls(any_path_host, photo_png, path) -> None:
    url, seen = any_path_host
    for task_url in (path, url + path):  # root-relative, as Label Studio writes them, or absolute
        assert fetch_image(task_url, LabelStudioHost(url, "secret"), 1 << 20) == photo_png
    assert fetch_image("/ls" + path, LabelStudioHost(url + "/ls", "secret"), 1 << 20) == photo_png  # under a path
    assert seen == [path, path, "/ls" + path]


@pytest.mark.parametrize("path", [
    "/api/projects/1/next", "/api/projects/1/next/?x=/data/upload/1.png", "/data/upload/../../api/projects/1/next",
    "/data/upload/%2e%2e/%2E%2E/api/projects/1/next", "/data/upload/..%2F..%2Fapi/projects/1/next", "/data/uploadx/1",
    "/tasks/x/resolve/", "/user/logout/", "/", "/ls/data/upload/1.png",
])
def test_other_paths_of_the_label_studio_host_are_never_asked(backend, any_path_host, path) -> None:
    """/predict takes anyone's request: a task URL must not make the server GET Label Studio's
    API with its token (``/api/projects/{id}/next`` assigns the caller a task, say)."""
    url, seen = any_path_host
    for task_url in (path, url + path):
        with pytest.raises(InputError, match="only Label Studio's file URLs"):
            fetch_image(task_url, LabelStudioHost(url, "secret"), 1 << 20)
    client = TestClient(create_app(backend, label_studio=LabelStudioHost(url, "secret")))
    response = client.post("/label-studio/predict", json=predict_body(path, [keypoint(20, 20, "hair")], task_id=62))
    assert response.status_code == 400 and "file URLs" in response.json()["detail"], response.text
    assert seen == []


def test_basic_auth_guards_every_label_studio_route(backend, fake_label_studio, monkeypatch) -> None:
    """With LABEL_STUDIO_ML_BASIC_AUTH set, /label-studio/* answers only requests carrying it,
    as Label Studio sends it (the ML backend's basic_auth_user / basic_auth_pass, by requests'
    HTTPBasicAuth); the web page's routes stay open."""
    from ihp_rt.errors import IhpError

    url, _ = fake_label_studio
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret")
    monkeypatch.setenv("LABEL_STUDIO_ML_BASIC_AUTH", "studio:s3cr:et")  # the password may hold a colon
    client = TestClient(create_app(backend))
    body = predict_body("/data/upload/1/photo.png", [keypoint(20, 20, "hair")], task_id=63)
    calls = [("GET", "/label-studio/health", None), ("POST", "/label-studio/setup", {"project": "1"}),
             ("POST", "/label-studio/webhook", {}), ("POST", "/label-studio/predict", body)]
    for auth in (None, ("studio", "wrong"), ("other", "s3cr:et"), ("studio", "s3cr")):
        for method, path, json_body in calls:
            refused = client.request(method, path, json=json_body, auth=auth)
            assert refused.status_code == 401 and "basic auth" in refused.json()["detail"], (auth, path)
            assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    for method, path, json_body in calls:
        assert client.request(method, path, json=json_body, auth=("studio", "s3cr:et")).status_code == 200, path
    assert client.get("/health").status_code == 200 and client.get("/info").status_code == 200
    for bad in ("no-colon", ":pass", "user:"):
        monkeypatch.setenv("LABEL_STUDIO_ML_BASIC_AUTH", bad)
        with pytest.raises(IhpError, match="LABEL_STUDIO_ML_BASIC_AUTH"):
            create_app(backend)
    assert "s3cr" not in repr(LabelStudioHost("http://ls", "secret", ml_basic_auth="studio:s3cr:et"))


def test_a_task_whose_image_cannot_be_had_takes_no_place_in_the_cache(backend) -> None:
    """A failed first click (image unreachable, unreadable, ...) must leave no empty entry
    behind: it would count against the capacity and evict a task that is being annotated."""
    tasks = TaskSessions(capacity=2)
    made: list[str] = []

    def create(key: str):
        def make() -> Session:
            made.append(key)
            return Session(backend)
        return make

    def fail() -> Session:
        raise InputError("cannot fetch the task image")

    with tasks.hold("a", create("a")):
        pass
    for _ in range(3):
        with pytest.raises(InputError), tasks.hold("broken", fail):
            pass
    with tasks.hold("b", create("b")):
        pass
    with tasks.hold("a", create("a")) as entry:  # still held: not fetched again
        assert entry.session is not None
    assert made == ["a", "b"]
