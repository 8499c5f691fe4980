"""Proof by fault: real ``ihp-rt serve --redis`` worker processes on loopback in front of one
real ``redis-server`` (persistence off).

- Sessions whose clicks, undos and resets alternate between two workers; one worker is
  killed with SIGKILL in the middle of the sessions and the rest goes to the other. Every
  mask must equal the one a single in-process server gives for the same requests, with no
  5xx and no session lost.
- A worker killed while it computes a click: the client resends the click, with its
  Idempotency-Key, to the other worker (and once more): it is applied once, with the mask a
  single server gives.
- Redis restarted (its sessions gone with it): 503 while it is down, then a clear 404 for a
  lost session, never a 500; new sessions work at once.

The default serving path throughout: the shipped model on ONNX Runtime with its per-image
first-layer cache, one network thread per process so results are bit-identical across them.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("redis", reason="the serve extra (redis client) is not installed")
import httpx
from fastapi.testclient import TestClient

from ihp_rt.serving.runner import ServerProcess, free_port, spawn_redis, spawn_servers
from tests.conftest import EXAMPLES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (Debian: "
                       "apt-get install redis-server; scripts/test.sh does this as root)"),
]
WORKER_ARGS = ["--threads", "1", "--max-sessions", "8"]


@pytest.fixture(scope="module")
def reference() -> TestClient:
    """A single in-process server (its own in-process store) on the same model and threads."""
    from ihp_rt.backends import open_backend
    from ihp_rt.serving.app import create_app
    from ihp_rt.session import SharedBackend
    from ihp_rt.zoo import default_onnx_path

    return TestClient(create_app(SharedBackend(open_backend(default_onnx_path(), "onnxruntime", threads=1))))


def photos() -> list[bytes]:
    """The bundled photo, and a mirrored crop of it as PNG: two images, two sizes."""
    jpeg = (EXAMPLES / "astronaut.jpg").read_bytes()
    crop = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))[40:440, ::-1][:, 60:360]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop)).save(buffer, format="PNG")
    return [jpeg, buffer.getvalue()]


def script(rng: np.random.Generator, width: int, height: int) -> list[tuple[str, dict | None]]:
    """One annotator's requests: clicks with an undo and a reset among them."""
    def click() -> tuple[str, dict]:
        return "clicks", {"x": int(rng.integers(width)), "y": int(rng.integers(height)), "label": int(rng.integers(15))}
    return [click(), click(), ("undo", None), click(), click(), ("reset", None), click(), click()]


def send(base: str | TestClient, session_id: str, op: str, body: dict | None) -> httpx.Response:
    path = f"/sessions/{session_id}/{op}"
    if isinstance(base, TestClient):
        return base.post(path, json=body)
    return httpx.post(base + path, json=body, timeout=60)


def test_two_workers_one_killed_mid_session_lose_nothing(reference) -> None:
    rng = np.random.default_rng(0)
    with spawn_redis() as redis_url, spawn_servers([*WORKER_ARGS, "--redis", redis_url], 2) as workers:
        a, b = workers
        sessions = []  # (worker session id, reference session id, script)
        for i, data in enumerate(photos()):
            created = httpx.post(workers[i % 2].url + "/sessions", files={"image": (f"p{i}", data)}, timeout=60)
            expected = reference.post("/sessions", files={"image": (f"p{i}", data)})
            assert created.status_code == expected.status_code == 201, created.text
            info = created.json()
            sessions.append((info["session_id"], expected.json()["session_id"],
                             script(rng, info["width"], info["height"])))
        served_by = {a.url: 0, b.url: 0}
        failovers = 0
        for step in range(len(sessions[0][2])):
            if step == 3:  # the middle of every session: b dies without a word
                b.process.send_signal(signal.SIGKILL)
                b.process.wait(30)
            for i, (sid, ref_sid, ops) in enumerate(sessions):
                op, body = ops[step]
                target = workers[(step + i) % 2]
                try:
                    reply = send(target.url, sid, op, body)
                except httpx.ConnectError:  # what a load balancer sees of a dead worker: it tries another
                    assert target is b and step >= 3
                    failovers += 1
                    target = a
                    reply = send(target.url, sid, op, body)
                expected = send(reference, ref_sid, op, body)
                assert reply.status_code == 200, (step, i, reply.status_code, reply.text)
                assert reply.json()["clicks"] == expected.json()["clicks"], (step, i)
                assert reply.json()["mask"] == expected.json()["mask"], (step, i)
                served_by[target.url] += 1
        assert b.process.returncode == -signal.SIGKILL and failovers >= 2
        assert served_by[b.url] >= 3 and served_by[a.url] >= 8  # both served, then a alone
        assert httpx.get(a.url + "/ready").json()["sessions"] == len(sessions)  # none lost
        for sid, ref_sid, _ in sessions:
            assert httpx.get(f"{a.url}/sessions/{sid}/clicks").json() == reference.get(
                f"/sessions/{ref_sid}/clicks").json()
        logs = a.log()
    statuses = [json.loads(line)["status"] for line in logs.splitlines() if line.startswith('{"event": "request"')]
    assert statuses and max(statuses) < 500


def test_a_click_in_flight_on_a_killed_worker_is_applied_once_when_resent_to_the_other(reference) -> None:
    """b reads the session for a click (seen on Redis's MONITOR), and is killed with SIGKILL
    while it computes the mask, before it answers: the client's request fails. The client sends
    it again, with the same Idempotency-Key, to a (what a load balancer does with a retry), and
    once more as if that reply were lost too: the session holds the click once, and both
    replies carry the mask a single server gives for the session's clicks."""
    import redis

    data = photos()[0]
    first, second = {"x": 200, "y": 120, "label": 2}, {"x": 260, "y": 300, "label": 5}
    with spawn_redis() as redis_url, spawn_servers([*WORKER_ARGS, "--redis", redis_url], 2) as (a, b):
        sid = httpx.post(a.url + "/sessions", files={"image": ("p", data)}, timeout=60).json()["session_id"]
        ref_sid = reference.post("/sessions", files={"image": ("p", data)}).json()["session_id"]
        assert send(a.url, sid, "clicks", first).status_code == send(reference, ref_sid, "clicks", first).status_code
        key = {"Idempotency-Key": "second-click"}
        outcome: list[httpx.Response | httpx.TransportError] = []

        def post_to_b() -> None:
            try:
                outcome.append(httpx.post(f"{b.url}/sessions/{sid}/clicks", json=second, headers=key, timeout=60))
            except httpx.TransportError as e:
                outcome.append(e)

        with redis.Redis.from_url(redis_url, socket_timeout=60).monitor() as monitor:
            in_flight = threading.Thread(target=post_to_b)
            in_flight.start()
            for command in monitor.listen():
                if sid in command["command"]:  # b has read the session: it is computing the mask now
                    b.process.send_signal(signal.SIGKILL)
                    break
        in_flight.join(60)
        b.process.wait(30)
        assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError), outcome  # b never answered

        retried = httpx.post(f"{a.url}/sessions/{sid}/clicks", json=second, headers=key, timeout=60)
        again = httpx.post(f"{a.url}/sessions/{sid}/clicks", json=second, headers=key, timeout=60)
        expected = send(reference, ref_sid, "clicks", second).json()
        for reply in (retried, again):
            assert reply.status_code == 200, reply.text
            assert reply.json()["clicks"] == expected["clicks"] and len(expected["clicks"]) == 2
            assert reply.json()["mask"] == expected["mask"]
        assert httpx.get(f"{a.url}/sessions/{sid}/clicks").json() == reference.get(f"/sessions/{ref_sid}/clicks").json()


def test_a_restarted_redis_gives_clear_404s_not_500s() -> None:
    port = free_port()
    redis = spawn_redis(port)
    redis_url = redis.__enter__()
    worker: ServerProcess | None = None
    try:
        worker = ServerProcess([*WORKER_ARGS, "--redis", redis_url])
        worker.wait_ready(deadline=time.monotonic() + 120)
        data = photos()[1]
        sid = httpx.post(worker.url + "/sessions", files={"image": ("p", data)}, timeout=60).json()["session_id"]
        assert send(worker.url, sid, "clicks", {"x": 5, "y": 5, "label": 2}).status_code == 200

        redis.__exit__(None, None, None)  # Redis goes away, and its sessions with it
        redis = None
        down = send(worker.url, sid, "undo", None)
        assert down.status_code == 503 and "cannot be reached" in down.json()["detail"], down.text
        assert "retry-after" in down.headers
        assert httpx.get(worker.url + "/ready").status_code == 503

        redis = spawn_redis(port)
        redis.__enter__()
        lost = send(worker.url, sid, "clicks", {"x": 5, "y": 5, "label": 2})
        assert lost.status_code == 404, lost.text
        assert "lost when the session store restarted" in lost.json()["detail"]
        assert httpx.get(f"{worker.url}/sessions/{sid}/mask.png", timeout=60).status_code == 404
        fresh = httpx.post(worker.url + "/sessions", files={"image": ("p", data)}, timeout=60)
        assert fresh.status_code == 201
        assert send(worker.url, fresh.json()["session_id"], "clicks", {"x": 5, "y": 5, "label": 2}).status_code == 200
        statuses = [json.loads(line)["status"] for line in worker.log().splitlines()
                    if line.startswith('{"event": "request"')]
        assert 500 not in statuses
    finally:
        if worker is not None:
            worker.stop()
        if redis is not None:
            redis.__exit__(None, None, None)
