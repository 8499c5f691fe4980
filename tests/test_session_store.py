"""The session store contract, run on both stores: the in-process one and Redis (a real
``redis-server`` on a loopback port, persistence off). Limits, undo, reset, expiry and
compare-and-set must hold across workers, so the Redis cases use two clients -- two
workers -- racing on one server."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable

import pytest

from ihp_rt.clicks import Click
from ihp_rt.serving.store import (
    RECENT_OPS,
    Change,
    ClickLimit,
    MemoryStore,
    SessionConflict,
    SessionNotFound,
    SessionStore,
    StoreFull,
    StoreUnavailable,
)
from tests.conftest import Clock

Factory = Callable[..., SessionStore]


@pytest.fixture(params=["memory", "redis"])
def make_store(request, redis_url_or_none) -> Factory:
    """Stores of one kind sharing their sessions: for Redis, each call is another worker's
    client on the same server (and key prefix); for memory, the one in-process store."""
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    made: dict[str, SessionStore] = {}

    def make(capacity: int = 4, ttl_s: float = 60.0, max_clicks: int = 3, clock: Clock | None = None) -> SessionStore:
        clock = clock or Clock()
        if request.param == "memory":
            return made.setdefault("memory", MemoryStore(capacity, ttl_s, max_clicks, clock))
        needs_redis_client()
        from ihp_rt.serving.redis_store import RedisStore

        return RedisStore(redis_url_or_none(), capacity, ttl_s, max_clicks, clock=clock, prefix=prefix)

    return make


@pytest.fixture
def redis_url_or_none(request) -> Callable[[], str]:
    """The Redis URL, started (or the test skipped) only when a Redis case asks for it."""
    return lambda: request.getfixturevalue("redis_url")


def needs_redis_client() -> None:
    """Skip a Redis case (only that case: the in-process store's run without the client)."""
    pytest.importorskip("redis", reason="the serve extra (redis client) is not installed")


def new(store: SessionStore, data: bytes = b"image bytes") -> str:
    return store.create(data, "hash-of-" + data.decode(errors="replace"), 90, 120, "lip")


def test_create_get_and_each_change(make_store) -> None:
    store = make_store()
    sid = new(store, b"\x89PNG\x00\xff")
    state = store.get(sid)
    assert (state.height, state.width, state.model, state.clicks, state.version) == (90, 120, "lip", (), 0)
    assert store.image(sid) == b"\x89PNG\x00\xff"  # bytes round-trip exactly
    a, b = Click(1, 2, 3), Click(4, 5, 6)
    state = store.commit(state, Change("push", a), "op1")
    state = store.commit(state, Change("push", b), "op2")
    assert state.clicks == (a, b) and state.version == 2 and store.get(sid) == state
    state = store.commit(state, Change("pop"), "op3")
    assert store.get(sid).clicks == (a,)
    store.commit(state, Change("clear"), "op4")
    assert store.get(sid).clicks == () and store.get(sid).version == 4
    assert len(store) == 1
    store.remove(sid)
    with pytest.raises(SessionNotFound):
        store.get(sid)
    with pytest.raises(SessionNotFound):
        store.remove(sid)
    assert len(store) == 0


def test_a_stale_version_is_refused_and_a_retried_op_applied_once(make_store) -> None:
    store = make_store()
    sid = new(store)
    start = store.get(sid)
    moved = store.commit(start, Change("push", Click(1, 1, 1)), "first")
    with pytest.raises(SessionConflict):
        store.commit(start, Change("push", Click(2, 2, 2)), "second")  # computed on a state that moved on
    assert store.get(sid) == moved
    again = store.commit(start, Change("push", Click(1, 1, 1)), "first")  # the same op, its reply lost
    assert again == moved and store.get(sid).clicks == (Click(1, 1, 1),)


def test_a_session_remembers_its_last_recent_ops_operations(make_store) -> None:
    store = make_store(max_clicks=RECENT_OPS + 2)
    sid = new(store)
    first = store.get(sid)
    state = store.commit(first, Change("push", Click(0, 0, 1)), "op-0")
    for i in range(1, RECENT_OPS):
        state = store.commit(state, Change("pop" if i % 2 else "push", Click(i, i, 1)), f"op-{i}")
    assert store.commit(first, Change("push", Click(0, 0, 1)), "op-0") == state  # still known: applied once
    state = store.commit(state, Change("push", Click(9, 9, 1)), "one-more")
    with pytest.raises(SessionConflict):  # op-0 forgotten: now a new operation on a stale version
        store.commit(first, Change("push", Click(0, 0, 1)), "op-0")
    assert store.get(sid) == state


def test_click_limit(make_store) -> None:
    store = make_store(max_clicks=2)
    sid = new(store)
    state = store.get(sid)
    for i in range(2):
        state = store.commit(state, Change("push", Click(i, i, 1)), f"op{i}")
    with pytest.raises(ClickLimit, match="maximum of 2 clicks"):
        store.commit(state, Change("push", Click(9, 9, 1)), "op9")
    state = store.commit(state, Change("pop"), "undo")  # undo frees a slot
    assert len(store.commit(state, Change("push", Click(9, 9, 1)), "op10").clicks) == 2


def test_session_limit_expiry_and_retry_after(make_store) -> None:
    clock = Clock()
    store = make_store(capacity=2, ttl_s=60, clock=clock)
    first, second = new(store), new(store)
    with pytest.raises(StoreFull, match="maximum of 2 sessions") as full:
        store.check_room()
    assert full.value.retry_after_s == 60
    clock.now += 20
    with pytest.raises(StoreFull) as full:
        new(store)
    assert full.value.retry_after_s == 40
    store.get(first)  # used: its 60 s start again
    clock.now += 45  # second idle 65 s > 60 s
    with pytest.raises(SessionNotFound, match="expired after 60 s idle"):
        store.get(second)
    assert len(store) == 1
    third = new(store)  # the expired one's slot is free
    clock.now += 50  # first idle 95 s, third 50 s
    assert store.get(third).id == third
    with pytest.raises(SessionNotFound):
        store.get(first)
    clock.now += 60
    assert len(store) == 0


def test_racing_workers_lose_no_click_and_overfill_nothing(make_store) -> None:
    """Eight threads (on two clients: two workers) push onto one session with read, compute,
    compare-and-set; twelve create sessions against a limit of five."""
    stores = [make_store(capacity=5, max_clicks=100), make_store(capacity=5, max_clicks=100)]
    sid = new(stores[0])
    errors: list[BaseException] = []

    def click(i: int) -> None:
        store = stores[i % 2]
        try:
            for attempt in range(200):
                state = store.get(sid)
                try:
                    store.commit(state, Change("push", Click(i, attempt, 1)), f"click-{i}")
                    return
                except SessionConflict:
                    continue
            raise AssertionError(f"thread {i} never committed")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(c.x for c in stores[1].get(sid).clicks) == list(range(8))
    assert stores[1].get(sid).version == 8

    created: list[str] = []
    refused: list[StoreFull] = []

    def create(i: int) -> None:
        try:
            created.append(new(stores[i % 2]))
        except StoreFull as e:
            refused.append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert (len(created), len(refused), len(stores[0])) == (4, 8, 5)  # 4 new beside the clicked one


def test_an_unreachable_redis_is_a_clear_503_error() -> None:
    needs_redis_client()
    from ihp_rt.serving.redis_store import RedisStore
    from ihp_rt.serving.runner import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", 4, 60.0, 3)  # nothing listens there
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        store.get("abc")
    with pytest.raises(StoreUnavailable):
        store.ping()


def test_an_evicting_redis_is_refused_or_loses_whole_sessions_never_their_clicks() -> None:
    """Redis under an evicting policy (allkeys-lru, maxmemory far below the sessions held) drops
    keys as it likes. A worker refuses it at start unless told to accept it; then a session Redis
    touched must come back whole -- its image and every committed click -- or not at all (a 404
    that says it may have been evicted), never with its clicks gone and its version kept, which
    would let the next commit succeed on an empty list."""
    needs_redis_client()
    import numpy as np

    from ihp_rt.serving.config import ServeConfig
    from ihp_rt.serving.redis_store import EvictingRedis, connect
    from ihp_rt.serving.runner import spawn_redis

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    rng = np.random.default_rng(5)
    config = ServeConfig(max_sessions=10_000, session_ttl_s=600, max_session_clicks=10)
    with spawn_redis(options=["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"]) as url:
        with pytest.raises(EvictingRedis, match=r"has maxmemory-policy allkeys-lru: .* --redis-allow-eviction"):
            connect(url, config)
        store = connect(url, config, allow_eviction=True)
        held: dict[str, tuple[bytes, tuple[Click, ...]]] = {}
        lost: list[SessionNotFound] = []
        for i in range(240):
            image = rng.bytes(16_000)
            sid = store.create(image, f"hash-{i}", 90, 120, "lip")
            clicks = (Click(i % 90, 1, 1), Click(2, i % 90, 2))
            state = store.get(sid)
            for k, click in enumerate(clicks):
                state = store.commit(state, Change("push", click), f"op-{i}-{k}")
            held[sid] = (image, clicks)
            for other, (other_image, other_clicks) in list(held.items()):
                try:
                    state = store.get(other)
                    assert (state.clicks, state.version) == (other_clicks, 2), (i, other)
                    assert store.image(other) == other_image
                except SessionNotFound as e:
                    lost.append(e)
                    del held[other]
        assert len(lost) > 20 and len(held) > 5  # Redis did evict, and kept some sessions whole
        assert "restarted or evicted it" in str(lost[0])
