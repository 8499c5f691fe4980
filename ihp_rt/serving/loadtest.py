"""A bounded load test on loopback: N sessions click concurrently, a fixed number of clicks
each, within a fixed time cap; per-click latency percentiles and the error count.

Each client is what one annotator's browser does: upload the image once, then send clicks
(over the WebSocket, as the page does, or over HTTP) and wait for each mask. Against several
workers sharing one Redis, sessions are created round-robin, and over HTTP each session's
clicks alternate between workers (the worst case for their caches: what a load balancer
without session affinity does); a WebSocket stays with the worker it was opened on.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ihp_rt.errors import InputError


@dataclass
class LoadReport:
    """What the run did and how long each click took (milliseconds, client side)."""

    url: str
    transport: str
    sessions: int
    clicks_per_session: int
    max_duration_s: float
    workers: int = 1
    clicks_done: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def summary(self) -> dict:
        lat = np.asarray(self.latencies_ms or [np.nan])
        return {
            "workers": self.workers, "sessions": self.sessions, "transport": self.transport,
            "clicks_planned": self.sessions * self.clicks_per_session, "clicks_done": self.clicks_done,
            "errors": len(self.errors), "duration_s": round(self.duration_s, 2),
            "clicks_per_s": round(self.clicks_done / self.duration_s, 2) if self.duration_s else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
            "max_ms": round(float(lat.max()), 1), "mean_ms": round(statistics.fmean(lat), 1),
        }


def check_target(urls: Sequence[str] | None, workers: int, **started_only: object) -> None:
    """Refuse ``--url`` together with options of the servers this command would start
    (``--workers`` and ``started_only``: ``--redis``, ``--model``, ...; None where not given).
    With ``--url`` no server is started, so they would be silently ignored, and a report of
    "--workers 2" measured against one given server would pass for a two-worker figure."""
    if not urls:
        return
    given = (["--workers"] if workers != 1 else []) + [
        "--" + name.replace("_", "-") for name, value in started_only.items() if value is not None]
    if given:
        names = " and ".join([", ".join(given[:-1]), given[-1]] if len(given) > 1 else given)
        raise InputError(f"{names} {'configure' if len(given) > 1 else 'configures'} the servers `ihp-rt loadtest` "
                         "starts, and with --url it starts none (the load goes to servers already running): drop "
                         f"{'them' if len(given) > 1 else 'it'} or --url (repeat --url for several running workers)")


@contextmanager
def started_workers(server_args: list[str], workers: int, redis_url: str | None) -> Iterator[list[str]]:
    """``workers`` ``ihp-rt serve`` processes on loopback, yielding their URLs; with more than
    one (or a ``redis_url``) they share sessions in Redis, a throw-away redis-server by default."""
    from ihp_rt.serving.runner import spawn_redis, spawn_servers

    if workers < 1:
        raise ValueError(f"workers must be 1 or more, got {workers}")
    with ExitStack() as stack:
        if redis_url is None and workers > 1:
            redis_url = stack.enter_context(spawn_redis())
        args = [*server_args, *(["--redis", redis_url] if redis_url else [])]
        yield [server.url for server in stack.enter_context(spawn_servers(args, workers))]


def run_load(urls: str | Sequence[str], image: bytes, sessions: int, clicks_per_session: int, max_duration_s: float,
             transport: str = "ws", seed: int = 0) -> LoadReport:
    """Run the load; clicks not sent before ``max_duration_s`` are simply not done (reported)."""
    import httpx

    if transport not in ("ws", "http"):
        raise ValueError(f"transport must be 'ws' or 'http', got {transport!r}")
    urls = [urls] if isinstance(urls, str) else list(urls)
    report = LoadReport(" ".join(urls), transport, sessions, clicks_per_session, max_duration_s, workers=len(urls))
    lock = threading.Lock()
    deadline = time.monotonic() + max_duration_s

    def record(latency_ms: float | None = None, error: str | None = None) -> None:
        with lock:
            if error is not None:
                report.errors.append(error)
            else:
                report.latencies_ms.append(latency_ms)
                report.clicks_done += 1

    def worker(index: int) -> None:
        rng = np.random.default_rng([seed, index])
        url = urls[index % len(urls)]
        with httpx.Client(base_url=url, timeout=60.0) as client:
            created = client.post("/sessions", files={"image": ("load.jpg", image, "image/jpeg")})
            if created.status_code != 201:
                record(error=f"session {index}: POST /sessions -> {created.status_code} {created.text[:200]}")
                return
            info = created.json()
            clicks = [{"x": int(rng.integers(info["width"])), "y": int(rng.integers(info["height"])),
                       "label": int(rng.integers(len(info["labels"])))} for _ in range(clicks_per_session)]
            sid = info["session_id"]
            try:
                with _sender(transport, urls, index, client, sid) as send:
                    for click in clicks:
                        if time.monotonic() > deadline:
                            break
                        start = time.perf_counter()
                        error = send(click)
                        if error:
                            record(error=error)
                        else:
                            record((time.perf_counter() - start) * 1e3)
            finally:
                client.delete(f"/sessions/{sid}")

    start = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        for future in [pool.submit(worker, i) for i in range(sessions)]:
            try:
                future.result()
            except Exception as e:  # a transport failure is a load-test error, reported with the others
                record(error=f"{type(e).__name__}: {e}")
    report.duration_s = time.perf_counter() - start
    return report


@contextmanager
def _sender(transport: str, urls: list[str], index: int, client,
            session_id: str) -> Iterator[Callable[[dict], str | None]]:
    """A function that sends one click and returns None, or the error it got. Over HTTP, click
    k of session i goes to worker (i + k) mod N."""
    if transport == "http":
        turn = itertools.count(index)

        def send(click: dict) -> str | None:
            url = urls[next(turn) % len(urls)]
            response = client.post(f"{url}/sessions/{session_id}/clicks", json=click)
            return None if response.status_code == 200 else f"click -> {response.status_code} {response.text[:200]}"
        yield send
        return
    from websockets.sync.client import connect

    url = urls[index % len(urls)]
    with connect(url.replace("http", "ws", 1) + f"/sessions/{session_id}/ws", open_timeout=30) as socket:
        def send(click: dict) -> str | None:
            socket.send(json.dumps({"op": "click", **click}))
            reply = json.loads(socket.recv(timeout=60))
            return f"click -> {reply['error']}" if "error" in reply else None
        yield send


def write_report(report: LoadReport, out: Path, machine: str) -> tuple[Path, Path]:
    """load.json (every latency) and load.md (the README table row)."""
    out.mkdir(parents=True, exist_ok=True)
    s = report.summary
    (out / "load.json").write_text(json.dumps({"summary": s, "machine": machine, **asdict(report)}, indent=1))
    table = ("| workers | sessions | transport | clicks done / planned | errors | duration s | clicks/s | p50 ms "
             "| p95 ms | max ms |\n"
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
             f"| {s['workers']} | {s['sessions']} | {s['transport']} | {s['clicks_done']} / {s['clicks_planned']} | "
             f"{s['errors']} | "
             f"{s['duration_s']} | {s['clicks_per_s']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |\n")
    (out / "load.md").write_text(f"Machine: {machine}\n\n{table}")
    return out / "load.json", out / "load.md"
