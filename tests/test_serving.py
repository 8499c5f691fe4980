"""The server's contract and its hardening: every bad request is a clear 4xx, the server stays
healthy, and no other session is affected. Runs the real app in-process on a tiny model."""

from __future__ import annotations

import io
import json
import logging
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
from fastapi.testclient import TestClient

from ihp_rt.backends import open_backend
from ihp_rt.correction import Pass
from ihp_rt.serving import ServeConfig, decode_label_rle, encode_label_rle
from ihp_rt.serving.app import create_app
from ihp_rt.session import Session, SharedBackend


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> SharedBackend:
    return SharedBackend(open_backend(tiny_checkpoint, "torch"))


@pytest.fixture
def client(engine, clock) -> TestClient:
    config = ServeConfig(max_sessions=3, session_ttl_s=60, max_upload_bytes=200_000, max_session_clicks=4)
    return TestClient(create_app(engine, config, clock=clock))


@pytest.fixture
def photo() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (90, 120, 3), dtype=np.uint8)


def upload(client: TestClient, data: bytes, name: str = "photo.png"):
    return client.post("/sessions", files={"image": (name, data, "image/png")})


def open_session(client: TestClient, photo: np.ndarray) -> str:
    response = upload(client, png_bytes(photo))
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


def test_a_session_from_upload_to_label_png(client, photo, tiny_checkpoint) -> None:
    created = upload(client, png_bytes(photo)).json()
    assert (created["width"], created["height"], created["label_set"]) == (120, 90, "lip")
    assert [label["name"] for label in created["labels"]] == list(tiny_checkpoint.spec.labels.names)
    assert created["labels"][2]["color"] == list(tiny_checkpoint.spec.labels.palette[2])
    sid = created["session_id"]

    first = client.post(f"/sessions/{sid}/clicks", json={"x": 10, "y": 20, "label": "hair"}).json()
    second = client.post(f"/sessions/{sid}/clicks", json={"x": 100, "y": 70, "label": 5}).json()
    assert second["clicks"] == [{"x": 10, "y": 20, "label": "hair"}, {"x": 100, "y": 70, "label": "upper-clothes"}]
    mask = decode_label_rle(second["mask"])
    alone = Session.open(tiny_checkpoint)  # the server's mask is exactly the library's
    alone.set_image(photo)
    alone.add_click(10, 20, "hair")
    alone.add_click(100, 70, 5)
    assert np.array_equal(mask, alone.predict().labels)

    png = client.get(f"/sessions/{sid}/mask.png")
    assert png.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))), mask)
    assert client.get(f"/sessions/{sid}/clicks").json() == {"clicks": second["clicks"]}

    undone = client.post(f"/sessions/{sid}/undo").json()
    assert undone["clicks"] == first["clicks"]
    assert np.array_equal(decode_label_rle(undone["mask"]), decode_label_rle(first["mask"]))
    assert client.post(f"/sessions/{sid}/reset").json()["clicks"] == []
    assert client.delete(f"/sessions/{sid}").status_code == 204
    assert client.get(f"/sessions/{sid}/clicks").status_code == 404


def test_health_ready_info_and_openapi(client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] and ready["sessions"] == 0 and ready["backend"] == "torch-cpu"
    info = client.get("/info").json()
    assert info["label_set"] == "lip" and info["limits"]["max_session_clicks"] == 4
    assert info["model"].startswith("untrained (lip, ")
    assert info["model"].endswith(", click radius 4, corrections by boost (sigma 16 px, margin 1)")
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/health", "/ready", "/sessions", "/sessions/{session_id}/clicks", "/sessions/{session_id}/undo",
                 "/sessions/{session_id}/reset", "/sessions/{session_id}/mask.png", "/sessions/{session_id}"):
        assert path in paths
    assert "delete" in paths["/sessions/{session_id}"]
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_websocket_operations_and_errors_keep_the_socket(client, photo) -> None:
    sid = open_session(client, photo)
    with client.websocket_connect(f"/sessions/{sid}/ws") as ws:
        ws.send_text(json.dumps({"op": "click", "x": 3, "y": 4, "label": "face"}))
        reply = ws.receive_json()
        assert reply["clicks"] == [{"x": 3, "y": 4, "label": "face"}]
        assert decode_label_rle(reply["mask"]).shape == (90, 120)
        for bad, status, words in (("{not json", 422, "Invalid JSON"), (json.dumps({"op": "jump"}), 422, "op"),
                                   (json.dumps({"op": "click", "x": 1}), 400, "needs"),
                                   (json.dumps({"op": "click", "x": 500, "y": 4, "label": 1}), 400, "outside"),
                                   (json.dumps({"op": "click", "x": 5, "y": 4, "label": "tail"}), 400, "unknown label"),
                                   ("x" * 5000, 413, "larger")):
            ws.send_text(bad)
            error = ws.receive_json()["error"]
            assert error["status"] == status and words in error["detail"], (bad[:40], error)
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_json()["error"]["status"] == 400
        ws.send_text(json.dumps({"op": "undo"}))
        assert ws.receive_json()["clicks"] == []  # the socket survived every error
    with client.websocket_connect("/sessions/nobody/ws") as ws:
        ws.send_text(json.dumps({"op": "undo"}))
        assert ws.receive_json()["error"]["status"] == 404


@pytest.mark.parametrize(("case", "status", "words"), [
    ("not an image", 400, "not a readable image"),
    ("decompression bomb", 400, "too large"),
    ("oversized upload", 413, "larger than the server's limit"),
    ("streamed oversized upload", 413, "larger than the server's limit"),
    ("no image field", 422, "image"),
])
def test_bad_uploads_are_refused(client, photo, case, status, words) -> None:
    bystander = open_session(client, photo)
    before = client.post(f"/sessions/{bystander}/clicks", json={"x": 50, "y": 50, "label": 2}).json()
    if case == "not an image":
        response = upload(client, b"GIF89a but not really" * 10)
    elif case == "decompression bomb":  # 9000 x 9000 px in ~30 KB: refused from the header, never decoded
        buffer = io.BytesIO()
        Image.new("L", (9000, 9000)).save(buffer, format="PNG")
        assert len(buffer.getvalue()) < 200_000
        response = upload(client, buffer.getvalue())
    elif case == "oversized upload":
        response = upload(client, b"\x89PNG" + bytes(300_000))
    elif case == "streamed oversized upload":  # chunked: no Content-Length to refuse up front
        head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        chunks = (head if i == 0 else bytes(50_000) for i in range(7))
        response = client.post("/sessions", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"})
    else:
        response = client.post("/sessions", data={"other": "field"})
    assert response.status_code == status, response.text
    assert words in json.dumps(response.json())
    assert client.get("/health").json() == {"status": "ok"}
    after = client.get(f"/sessions/{bystander}/clicks").json()
    assert after == {"clicks": before["clicks"]}
    assert open_session(client, photo)  # still accepting work


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"x": 120, "y": 0, "label": 1}, 400, "outside the 120x90 image"),
    ({"x": -1, "y": 0, "label": 1}, 422, "greater than or equal to 0"),
    ({"x": 1, "y": 2, "label": "left-wing"}, 400, "unknown label 'left-wing'"),
    ({"x": 1, "y": 2, "label": 99}, 400, "label"),
    ({"x": 1.5, "y": 2, "label": 1}, 422, "integer"),
    ({"x": 1, "label": 1}, 422, "missing"),
    ({"x": 1, "y": 2, "label": 1, "extra": 0}, 422, "extra"),
    ("{broken json", 422, "JSON"),
])
def test_bad_clicks_are_refused_and_change_nothing(client, photo, body, status, words) -> None:
    sid = open_session(client, photo)
    before = client.post(f"/sessions/{sid}/clicks", json={"x": 5, "y": 5, "label": 2}).json()
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else \
        {"json": body}
    response = client.post(f"/sessions/{sid}/clicks", **kwargs)
    assert response.status_code == status, response.text
    assert words in json.dumps(response.json())
    assert client.get(f"/sessions/{sid}/clicks").json() == {"clicks": before["clicks"]}


def test_click_limit_session_limit_and_expiry(client, photo, clock) -> None:
    sid = open_session(client, photo)
    for i in range(4):
        assert client.post(f"/sessions/{sid}/clicks", json={"x": i, "y": i, "label": 1}).status_code == 200
    refused = client.post(f"/sessions/{sid}/clicks", json={"x": 9, "y": 9, "label": 1})
    assert refused.status_code == 409 and "maximum of 4 clicks" in refused.json()["detail"]
    assert len(client.post(f"/sessions/{sid}/undo").json()["clicks"]) == 3  # undo frees a slot

    others = [open_session(client, photo), open_session(client, photo)]
    full = upload(client, png_bytes(photo))
    assert full.status_code == 429 and "maximum of 3 sessions" in full.json()["detail"]
    assert int(full.headers["retry-after"]) == 60
    assert upload(client, b"not even an image").status_code == 429  # refused before any decoding
    assert client.get("/ready").status_code == 503
    assert client.delete(f"/sessions/{others[0]}").status_code == 204
    replacement = open_session(client, photo)

    clock.now += 30
    client.get(f"/sessions/{sid}/clicks")  # used: stays alive
    clock.now += 40  # the others were idle 70 s > 60 s TTL
    for gone in (others[1], replacement):
        response = client.post(f"/sessions/{gone}/undo")
        assert response.status_code == 404 and "expired" in response.json()["detail"]
    assert len(client.get(f"/sessions/{sid}/clicks").json()["clicks"]) == 3
    assert client.get("/ready").json()["sessions"] == 1


def test_a_retried_request_with_its_idempotency_key_is_applied_once(client, photo) -> None:
    """A client that got no reply (a dropped connection, a timeout) resends the request with the
    same Idempotency-Key: the session holds the operation once, and the retry gets the mask.
    Another key, or the same key on another operation, is a new operation."""
    sid = open_session(client, photo)
    url = f"/sessions/{sid}/clicks"
    first = client.post(url, json={"x": 10, "y": 20, "label": "hair"}, headers={"Idempotency-Key": "click-1"})
    retry = client.post(url, json={"x": 10, "y": 20, "label": "hair"}, headers={"Idempotency-Key": "click-1"})
    assert first.status_code == retry.status_code == 200, retry.text
    assert retry.json()["clicks"] == first.json()["clicks"] == [{"x": 10, "y": 20, "label": "hair"}]
    assert retry.json()["mask"] == first.json()["mask"]
    assert len(client.post(url, json={"x": 10, "y": 20, "label": "hair"}).json()["clicks"]) == 2  # no key: new
    assert len(client.post(url, json={"x": 30, "y": 40, "label": 1}, headers={"Idempotency-Key": "click-1"})
               .json()["clicks"]) == 3  # a key reused for another click is not taken for a retry
    # the last click the limit allows (4), retried: its mask again, not "limit reached"
    last = {"json": {"x": 50, "y": 60, "label": 2}, "headers": {"Idempotency-Key": "click-4"}}
    assert len(client.post(url, **last).json()["clicks"]) == 4
    again = client.post(url, **last)
    assert again.status_code == 200 and len(again.json()["clicks"]) == 4, again.text
    assert client.post(url, json={"x": 1, "y": 1, "label": 1}, headers={"Idempotency-Key": "new"}).status_code == 409
    for _ in range(2):
        assert len(client.post(f"/sessions/{sid}/undo", headers={"Idempotency-Key": "undo-1"}).json()["clicks"]) == 3
    assert client.post(url, json={"x": 1, "y": 1, "label": 1}, headers={"Idempotency-Key": "x" * 201}).status_code \
        == 422
    with client.websocket_connect(f"/sessions/{sid}/ws") as ws:
        for _ in range(2):  # the WebSocket message's op_id: the same, resent over a new socket, say
            ws.send_text(json.dumps({"op": "click", "x": 7, "y": 8, "label": 1, "op_id": "ws-1"}))
            assert len(ws.receive_json()["clicks"]) == 4
        ws.send_text(json.dumps({"op": "undo", "op_id": ""}))
        assert ws.receive_json()["error"]["status"] == 422
    assert len(client.get(f"/sessions/{sid}/clicks").json()["clicks"]) == 4


def test_concurrent_sessions_get_their_own_masks(client, tiny_checkpoint) -> None:
    rng = np.random.default_rng(3)
    photos = [rng.integers(0, 256, (64 + 8 * i, 96, 3), dtype=np.uint8) for i in range(3)]
    sids = [open_session(client, p) for p in photos]
    clicks = [[(int(rng.integers(96)), int(rng.integers(64)), int(rng.integers(20))) for _ in range(4)] for _ in sids]
    results: dict[int, dict] = {}

    def annotate(i: int) -> None:
        for x, y, label in clicks[i]:
            results[i] = client.post(f"/sessions/{sids[i]}/clicks", json={"x": x, "y": y, "label": label}).json()

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, photo in enumerate(photos):
        alone = Session.open(tiny_checkpoint)
        alone.set_image(photo)
        for x, y, label in clicks[i]:
            alone.add_click(x, y, label)
        assert np.array_equal(decode_label_rle(results[i]["mask"]), alone.predict().labels)


def test_access_log_is_one_json_object_per_request(client, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ihp_rt.serve"):
        client.get("/health")
        client.get("/sessions/nope/clicks")
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ihp_rt.serve"]
    assert [(r["path"], r["status"]) for r in records] == [("/health", 200), ("/sessions/nope/clicks", 404)]
    assert all(r["ms"] >= 0 and r["method"] == "GET" for r in records)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_rle_round_trips(height: int, width: int, classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # blocky maps, like parsing masks, plus pure noise at the smallest sizes
    labels = rng.integers(0, classes, (height // 4 + 1, width // 4 + 1), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    labels = np.ascontiguousarray(labels[:height, :width])
    doc = encode_label_rle(labels)
    assert sum(doc["counts"]) == height * width and min(doc["counts"]) >= 1
    assert all(a != b for a, b in zip(doc["values"], doc["values"][1:], strict=False))
    assert np.array_equal(decode_label_rle(json.loads(json.dumps(doc))), labels)


def test_cached_masks_are_bounded_in_bytes_not_by_count(engine, photo) -> None:
    """Each session's last mask (for mask.png) is a full-resolution label map, so the worker's
    cache of them is bounded in bytes (`serve --cache-mb`): here 2.5 masks' worth holds two of
    four sessions' masks, whatever --max-sessions allows; a mask larger than the whole bound is
    not kept. An evicted mask costs a predict, never a wrong answer."""
    one_mask = photo.shape[0] * photo.shape[1]  # uint8 labels
    config = ServeConfig(max_sessions=8, max_upload_bytes=200_000, mask_cache_bytes=one_mask * 5 // 2)
    client = TestClient(create_app(engine, config))
    sessions = [open_session(client, photo) for _ in range(4)]
    replies = [client.post(f"/sessions/{sid}/clicks", json={"x": 5 + 20 * i, "y": 50, "label": 2}).json()
               for i, sid in enumerate(sessions)]
    cached = client.app.state.sessions.masks
    assert (len(cached), cached.held_bytes) == (2, 2 * one_mask)
    for sid, reply in zip(sessions, replies, strict=True):  # two from the cache, two predicted again
        png = client.get(f"/sessions/{sid}/mask.png")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))), decode_label_rle(reply["mask"]))
        assert cached.held_bytes <= config.mask_cache_bytes
    assert client.delete(f"/sessions/{sessions[-1]}").status_code == 204
    assert (len(cached), cached.held_bytes) == (1, one_mask)  # a deleted session's mask goes with it

    small = TestClient(create_app(engine, ServeConfig(max_upload_bytes=200_000, mask_cache_bytes=one_mask - 1)))
    sid = open_session(small, photo)
    assert small.post(f"/sessions/{sid}/clicks", json={"x": 5, "y": 5, "label": 2}).status_code == 200
    assert len(small.app.state.sessions.masks) == 0 and small.get(f"/sessions/{sid}/mask.png").status_code == 200


def test_serve_refuses_bad_limits_in_one_line(capsys) -> None:
    from ihp_rt.cli import main

    assert main(["serve", "--max-sessions", "0"]) == 2
    assert "ihp-rt: error: max_sessions must be positive, got 0" in capsys.readouterr().err
    assert main(["serve", "--cache-mb", "-1"]) == 2
    assert "ihp-rt: error: mask_cache_bytes must be 0 or more" in capsys.readouterr().err


def test_the_click_radius_of_the_config_shapes_the_server_masks(engine, photo) -> None:
    """`serve --click-radius` reaches every mask: each server's reply is the library session's
    mask at the same radius, and the radii give different masks."""
    from ihp_rt.cli import _serve_config, build_parser

    clicks = [(10, 20, "hair"), (100, 70, 5), (60, 45, "face")]
    masks = {}
    for radius in (0, 8):
        config = _serve_config(build_parser().parse_args(["serve", "--click-radius", str(radius)]))
        assert config.click_radius == radius
        client = TestClient(create_app(engine, config))
        sid = open_session(client, photo)
        alone = Session(engine, click_radius=radius)
        alone.set_image(photo)
        for x, y, label in clicks:
            reply = client.post(f"/sessions/{sid}/clicks", json={"x": x, "y": y, "label": label})
            alone.add_click(x, y, label)
            masks[radius] = decode_label_rle(reply.json()["mask"])
            assert np.array_equal(masks[radius], alone.predict().labels), (radius, x, y)
    assert not np.array_equal(masks[0], masks[8])


def test_serve_refuses_a_negative_click_radius(capsys) -> None:
    from ihp_rt.cli import main

    assert main(["serve", "--click-radius", "-1"]) == 2
    assert "ihp-rt: error: click_radius must be an integer 0 or more, got -1" in capsys.readouterr().err


class FlakyBackend:
    """The torch backend, with ``predict`` made to raise ``failure`` while it is set: a backend
    fault at a chosen moment."""

    def __init__(self, backend) -> None:
        self.inner, self.failure = backend, None
        self.name, self.spec, self.choice, self.timings = backend.name, backend.spec, backend.choice, {}
        self.corrector = backend.corrector

    def set_image(self, image: np.ndarray) -> None:
        self.inner.set_image(image)

    def predict(self, clicks: np.ndarray) -> Pass:
        if self.failure is not None:
            raise self.failure
        return self.inner.predict(clicks)


@pytest.fixture
def flaky(tiny_checkpoint, clock) -> tuple[TestClient, FlakyBackend]:
    backend = FlakyBackend(open_backend(tiny_checkpoint, "torch"))
    config = ServeConfig(max_sessions=3, session_ttl_s=60, max_upload_bytes=200_000, max_session_clicks=4)
    return TestClient(create_app(SharedBackend(backend), config, clock=clock), raise_server_exceptions=False), backend


def test_server_faults_are_5xx_and_logged(flaky, photo, caplog) -> None:
    """A backend failure is the server's fault, not the client's: 503 (retrying may help),
    any other unmapped error 500, each logged with its traceback."""
    from ihp_rt.errors import BackendError, ModelError

    client, backend = flaky
    sid = open_session(client, photo)
    with caplog.at_level(logging.INFO, logger="ihp_rt.serve"):
        backend.failure = BackendError("device lost")
        unavailable = client.post(f"/sessions/{sid}/clicks", json={"x": 1, "y": 1, "label": 2})
        backend.failure = ModelError("weights unreadable")
        broken = client.post(f"/sessions/{sid}/undo")
    assert unavailable.status_code == 503 and "device lost" in unavailable.json()["detail"]
    assert "retry-after" in unavailable.headers
    assert broken.status_code == 500 and "weights unreadable" in broken.json()["detail"]
    faults = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(faults) == 2 and all(r.exc_info for r in faults)


def test_a_failed_predict_stores_no_click(flaky, photo) -> None:
    """The click is kept only once its mask exists: a retry after a fault adds it once."""
    from ihp_rt.errors import BackendError

    client, backend = flaky
    sid = open_session(client, photo)
    backend.failure = BackendError("device lost")
    assert client.post(f"/sessions/{sid}/clicks", json={"x": 1, "y": 1, "label": 2}).status_code != 200
    assert client.get(f"/sessions/{sid}/clicks").json() == {"clicks": []}
    backend.failure = None
    retried = client.post(f"/sessions/{sid}/clicks", json={"x": 1, "y": 1, "label": 2})
    assert retried.status_code == 200 and retried.json()["clicks"] == [{"x": 1, "y": 1, "label": "hair"}]


def test_a_crash_is_access_logged(flaky, photo, caplog) -> None:
    client, backend = flaky
    sid = open_session(client, photo)
    backend.failure = RuntimeError("a bug")
    with caplog.at_level(logging.INFO, logger="ihp_rt.serve"):
        assert client.post(f"/sessions/{sid}/clicks", json={"x": 1, "y": 1, "label": 2}).status_code == 500
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ihp_rt.serve"]
    records = [r for r in records if r["event"] == "request"]
    assert [(r["path"], r["status"]) for r in records] == [(f"/sessions/{sid}/clicks", 500)]


def test_websocket_limit_counts_bytes_not_characters(client, photo) -> None:
    sid = open_session(client, photo)
    message = json.dumps({"op": "click", "x": 1, "y": 1, "label": "é" * 3000}, ensure_ascii=False)
    assert len(message) < 4096 < len(message.encode())
    with client.websocket_connect(f"/sessions/{sid}/ws") as ws:
        ws.send_text(message)
        assert ws.receive_json()["error"]["status"] == 413


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint, tmp_path_factory):
    from ihp_rt.export.to_onnx import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_concurrent_sessions_on_the_default_path_onnx_runtime_with_cached_first_layer(tiny_onnx, monkeypatch) -> None:
    """What users run: ONNX Runtime on the CPU with each image's first-layer output cached.
    More sessions than that cache holds click at once, so turns evict each other's entries;
    every reply must be the mask its session gets alone."""
    from ihp_rt.backends import ort_backend

    monkeypatch.setattr(ort_backend, "STEM_CACHE", 2)
    backend = open_backend(str(tiny_onnx), "onnxruntime", threads=1)
    assert backend._stem_conv is not None  # the graph was cut: the cached-stem path is the one under test
    client = TestClient(create_app(SharedBackend(backend), ServeConfig(max_sessions=8)))
    rng = np.random.default_rng(5)
    photos = [rng.integers(0, 256, (60 + 10 * i, 80, 3), dtype=np.uint8) for i in range(5)]
    sids = [open_session(client, p) for p in photos]
    clicks = [[(int(rng.integers(80)), int(rng.integers(60)), int(rng.integers(20))) for _ in range(5)] for _ in sids]
    replies: dict[int, list[np.ndarray]] = {i: [] for i in range(len(sids))}
    start = threading.Barrier(len(sids))

    def annotate(i: int) -> None:
        start.wait(timeout=60)
        for x, y, label in clicks[i]:
            reply = client.post(f"/sessions/{sids[i]}/clicks", json={"x": x, "y": y, "label": label})
            replies[i].append(decode_label_rle(reply.json()["mask"]))

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(len(sids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    alone = Session(open_backend(str(tiny_onnx), "onnxruntime", threads=1))
    for i, photo in enumerate(photos):
        assert len(replies[i]) == len(clicks[i])
        alone.set_image(photo)
        for k, (x, y, label) in enumerate(clicks[i]):
            alone.add_click(x, y, label)
            assert np.array_equal(replies[i][k], alone.predict().labels), (i, k)


def test_serve_and_eval_name_their_click_limits_apart() -> None:
    """`eval --max-clicks` counts correction clicks per image; the server's limit is another
    thing (clicks a session may hold) and has its own name."""
    from ihp_rt.cli import _serve_config, build_parser

    parser = build_parser()
    serve = parser.parse_args(["serve", "--max-session-clicks", "7"])
    assert _serve_config(serve).max_session_clicks == 7
    assert parser.parse_args(["eval", "--data", "d", "--out", "o", "--max-clicks", "3"]).max_clicks == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--max-clicks", "7"])
