"""Two workers (two apps in this process, each with its own network and caches) sharing their
sessions in one real redis-server: any request may reach either, and every mask, limit and
expiry is what one in-process server gives. The same in separate processes, with one killed,
is tests/test_scale_out.py."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("redis", reason="the serve extra (redis client) is not installed")
from fastapi.testclient import TestClient

from ihp_rt.backends import open_backend
from ihp_rt.serving import ServeConfig, decode_label_rle
from ihp_rt.serving.app import create_app
from ihp_rt.serving.redis_store import RedisStore
from ihp_rt.session import Session, SharedBackend


@pytest.fixture
def workers(tiny_checkpoint, redis_url, clock) -> list[TestClient]:
    config = ServeConfig(max_sessions=3, session_ttl_s=60, max_upload_bytes=200_000, max_session_clicks=4)
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    return [TestClient(create_app(SharedBackend(open_backend(tiny_checkpoint, "torch")), config, store=RedisStore(
        redis_url, config.max_sessions, config.session_ttl_s, config.max_session_clicks, clock, prefix)))
        for _ in range(2)]


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def photo() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (90, 120, 3), dtype=np.uint8)


def upload(client: TestClient, photo: np.ndarray):
    return client.post("/sessions", files={"image": ("p.png", png(photo), "image/png")})


def test_clicks_alternating_between_workers_give_the_masks_of_one_session(workers, photo, tiny_checkpoint) -> None:
    a, b = workers
    sid = upload(a, photo).json()["session_id"]
    alone = Session.open(tiny_checkpoint)
    alone.set_image(photo)
    steps = [("click", (10, 20, "hair")), ("click", (100, 70, 5)), ("undo", None), ("click", (60, 40, "face")),
             ("click", (5, 80, 1)), ("reset", None), ("click", (30, 30, 2))]
    for k, (op, click) in enumerate(steps):
        worker = workers[(k + 1) % 2]  # b first: a worker that never saw the upload
        if op == "click":
            x, y, label = click
            reply = worker.post(f"/sessions/{sid}/clicks", json={"x": x, "y": y, "label": label})
            alone.add_click(x, y, label)
        else:
            reply = worker.post(f"/sessions/{sid}/{op}")
            alone.undo() if op == "undo" else alone.reset()
        assert reply.status_code == 200, reply.text
        expected = alone.predict()
        assert np.array_equal(decode_label_rle(reply.json()["mask"]), expected.labels), (k, op)
        assert len(reply.json()["clicks"]) == len(expected.clicks)
    assert a.get(f"/sessions/{sid}/clicks").json() == b.get(f"/sessions/{sid}/clicks").json()
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(a.get(f"/sessions/{sid}/mask.png").content))),
                          alone.predict().labels)
    with b.websocket_connect(f"/sessions/{sid}/ws") as ws:
        ws.send_text(json.dumps({"op": "undo"}))
        assert ws.receive_json()["clicks"] == []
    assert b.app.state.sessions.images.misses == 1  # b rebuilt the image once, then kept it
    assert a.app.state.sessions.images.misses == 0  # a prepared it at upload
    assert b.delete(f"/sessions/{sid}").status_code == 204
    assert a.post(f"/sessions/{sid}/undo").status_code == 404


def test_a_retry_on_the_other_worker_is_applied_once(workers, photo) -> None:
    """A click whose reply was lost is resent with its Idempotency-Key, and the load balancer
    hands the retry to the other worker: the store still holds it once."""
    a, b = workers
    sid = upload(a, photo).json()["session_id"]
    click = {"json": {"x": 10, "y": 20, "label": "hair"}, "headers": {"Idempotency-Key": "k1"}}
    first, retry = a.post(f"/sessions/{sid}/clicks", **click), b.post(f"/sessions/{sid}/clicks", **click)
    assert first.status_code == retry.status_code == 200, retry.text
    assert retry.json()["clicks"] == first.json()["clicks"] and retry.json()["mask"] == first.json()["mask"]
    assert len(a.get(f"/sessions/{sid}/clicks").json()["clicks"]) == 1


def test_limits_and_expiry_hold_across_workers(workers, photo, clock) -> None:
    a, b = workers
    sid = upload(a, photo).json()["session_id"]
    for i in range(4):
        assert workers[i % 2].post(f"/sessions/{sid}/clicks", json={"x": i, "y": i, "label": 1}).status_code == 200
    refused = b.post(f"/sessions/{sid}/clicks", json={"x": 9, "y": 9, "label": 1})
    assert refused.status_code == 409 and "maximum of 4 clicks" in refused.json()["detail"]

    others = [upload(b, photo).json()["session_id"], upload(a, photo).json()["session_id"]]
    full = upload(b, photo)
    assert full.status_code == 429 and "maximum of 3 sessions" in full.json()["detail"]
    assert int(full.headers["retry-after"]) == 60
    assert a.get("/ready").status_code == 503 and b.get("/ready").json()["sessions"] == 3

    clock.now += 30
    b.get(f"/sessions/{sid}/clicks")  # used on b: alive for a too
    clock.now += 40
    for gone in others:
        response = a.post(f"/sessions/{gone}/undo")
        assert response.status_code == 404 and "expired" in response.json()["detail"]
    assert len(a.get(f"/sessions/{sid}/clicks").json()["clicks"]) == 4
    assert b.get("/ready").json()["sessions"] == 1


def test_a_full_redis_is_a_503_to_retry_not_a_500(workers, photo, redis_url) -> None:
    """Redis at its maxmemory (noeviction) refuses writes with OOM, and every session script
    writes (a read marks the session used): each request is a 503 with Retry-After, like an
    unreachable Redis, that changes nothing; a delete, which frees memory, still works."""
    import redis

    a, b = workers
    sid = upload(a, photo).json()["session_id"]
    assert a.post(f"/sessions/{sid}/clicks", json={"x": 1, "y": 2, "label": 1}).status_code == 200
    server = redis.Redis.from_url(redis_url)
    server.config_set("maxmemory-policy", "noeviction")
    server.config_set("maxmemory", max(1, server.info("memory")["used_memory"] // 2))  # already over it
    try:
        for response in (b.get(f"/sessions/{sid}/clicks"), a.get(f"/sessions/{sid}/mask.png"),
                         b.post(f"/sessions/{sid}/clicks", json={"x": 3, "y": 4, "label": 1}), upload(a, photo)):
            assert response.status_code == 503 and "maxmemory" in response.json()["detail"], response.text
            assert response.headers["Retry-After"] == "1"
        assert b.delete(f"/sessions/{sid}").status_code == 204
    finally:
        server.config_set("maxmemory", 0)
    assert b.get(f"/sessions/{sid}/clicks").status_code == 404
    assert upload(a, photo).status_code == 201


def test_a_worker_on_another_model_refuses_the_session_with_a_409(redis_url, clock, photo) -> None:
    """A rolling update: workers of the old and the new model share one Redis. A session is
    refused (409, saying why) by a worker whose model differs in its weights (same spec and
    version), its label set, its click radius or how it answers corrections, and is left as it
    was for the workers of its own model; so no session holds masks from two models."""
    from ihp_rt.labels import get_label_set
    from ihp_rt.model import Checkpoint, build_model
    from ihp_rt.serving.model_identity import model_identity
    from ihp_rt.spec import ModelSpec

    def worker(checkpoint: Checkpoint, click_radius: int = 4, corrections: bool = True) -> TestClient:
        config = ServeConfig(max_sessions=3, session_ttl_s=60, max_upload_bytes=200_000, max_session_clicks=4,
                             click_radius=click_radius)
        store = RedisStore(redis_url, config.max_sessions, config.session_ttl_s, config.max_session_clicks, clock,
                           prefix)
        backend = open_backend(checkpoint, "torch")
        if not corrections:  # as an ihp-rt before corrections: the network on every click
            backend.corrector = None
        return TestClient(create_app(SharedBackend(backend), config, store=store,
                                     model_id=model_identity(checkpoint.spec, checkpoint)))

    prefix = f"t{uuid.uuid4().hex[:8]}:"
    spec = ModelSpec(labels=get_label_set("lip"), backbone="mobilenetv3_large", input_size=64, model_version="v1")
    old, twin = (Checkpoint(build_model(spec, seed=seed).eval(), spec, {}) for seed in (0, 1))
    atr = ModelSpec(labels=get_label_set("atr"), backbone="mobilenetv3_large", input_size=64, model_version="v1")
    a, b = worker(old), worker(old)
    sid = upload(a, photo).json()["session_id"]
    first = a.post(f"/sessions/{sid}/clicks", json={"x": 10, "y": 20, "label": 2})
    assert first.status_code == 200
    newer = [worker(twin), worker(Checkpoint(build_model(atr, seed=0).eval(), atr, {})), worker(old, click_radius=0),
             worker(old, corrections=False)]
    assert len({w.get("/info").json()["model"] for w in [a, *newer]}) == 5
    for other in newer:
        for response in (other.post(f"/sessions/{sid}/clicks", json={"x": 30, "y": 40, "label": 1}),
                         other.post(f"/sessions/{sid}/undo"), other.get(f"/sessions/{sid}/mask.png")):
            assert response.status_code == 409, response.text
            detail = response.json()["detail"]
            assert "one session's masks must come from one model" in detail and "upload the image again" in detail
            assert a.get("/info").json()["model"] in detail and other.get("/info").json()["model"] in detail
    again = b.post(f"/sessions/{sid}/clicks", json={"x": 30, "y": 40, "label": 1})  # the old model's workers go on
    assert again.status_code == 200 and len(again.json()["clicks"]) == 2
    fresh = upload(newer[0], photo).json()["session_id"]  # a new session is the new model's
    assert newer[0].post(f"/sessions/{fresh}/clicks", json={"x": 1, "y": 2, "label": 1}).status_code == 200
    assert a.post(f"/sessions/{fresh}/undo").status_code == 409


def test_serve_refuses_an_unreachable_redis_in_one_line(capsys) -> None:
    """Before loading a model: a worker that cannot reach its sessions must not start."""
    from ihp_rt.cli import main
    from ihp_rt.serving.runner import free_port

    assert main(["serve", "--redis", f"redis://127.0.0.1:{free_port()}/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ihp-rt: error: the session store (redis at 127.0.0.1:") and "cannot be reached" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_refuses_an_evicting_redis_in_one_line(redis_url, capsys) -> None:
    """Before loading a model: at its maxmemory an evicting Redis would drop sessions in use."""
    import redis

    from ihp_rt.cli import main

    server = redis.Redis.from_url(redis_url)
    server.config_set("maxmemory-policy", "volatile-lru")  # every session key has a TTL: evictable too
    try:
        assert main(["serve", "--redis", redis_url]) == 2
    finally:
        server.config_set("maxmemory-policy", "noeviction")
    err = capsys.readouterr().err
    assert err.startswith("ihp-rt: error: the session store (redis at 127.0.0.1:") and len(err.splitlines()) == 1
    assert "has maxmemory-policy volatile-lru" in err and "--redis-allow-eviction" in err
