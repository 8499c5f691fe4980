"""Sessions in Redis, shared by any number of ``ihp-rt serve --redis URL`` workers.

Per session (``P`` is the key prefix, ``ihp-rt:`` by default)::

    P s:<id>   hash    image hash, height, width, label set, version
    P i:<id>   string  the uploaded image bytes
    P c:<id>   list    the clicks, "x,y,label" each
    P o:<id>   list    the last RECENT_OPS operation ids (a retried commit is applied once)
    P live     zset    id -> expiry time: the session count and the idle TTL, across workers

Every operation is one Lua script, so each is atomic in Redis: the session limit (count and
add in one step), the click limit (check and append in one step), undo (pop), reset, expiry,
and the compare-and-set on the version that makes a change land only with the mask computed
for it. Expiry times come from Redis's own clock (``TIME``), so workers' clocks need not
agree; tests inject a clock instead. Each key also gets a Redis TTL a little past the
session's, so nothing outlives its session even if no request ever purges it.

This is a single Redis (or a primary with replicas, via its URL): the scripts reach keys of
sessions other than the one named, which Redis Cluster would refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ihp_rt.clicks import Click
from ihp_rt.errors import BackendError, IhpError
from ihp_rt.serving.config import ServeConfig
from ihp_rt.serving.store import (
    RECENT_OPS,
    Change,
    SessionConflict,
    SessionState,
    StoreUnavailable,
    click_limit,
    new_session_id,
    not_found,
    store_full,
)

KEEP_AFTER_EXPIRY_S = 60  # a key's Redis TTL beyond its session's: the backstop, never the rule

_PRELUDE = """
local function now_from(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function keys_of(prefix, id)
  return prefix .. 's:' .. id, prefix .. 'i:' .. id, prefix .. 'c:' .. id, prefix .. 'o:' .. id
end
local function drop(live, prefix, id)
  redis.call('DEL', keys_of(prefix, id))
  redis.call('ZREM', live, id)
end
local function purge(live, prefix, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', live, '-inf', now, 'LIMIT', 0, 64)) do
    drop(live, prefix, id)
  end
end
local function alive(live, prefix, id, now)
  local deadline = redis.call('ZSCORE', live, id)
  if not deadline then return false end
  if tonumber(deadline) <= now or redis.call('EXISTS', prefix .. 's:' .. id) == 0 then
    drop(live, prefix, id)
    return false
  end
  return true
end
local function touch(live, prefix, id, now, ttl, keep_ms)
  redis.call('ZADD', live, now + ttl, id)
  for _, key in ipairs({keys_of(prefix, id)}) do redis.call('PEXPIRE', key, keep_ms) end
end
local function room(live, prefix, now, capacity)
  purge(live, prefix, now)
  if redis.call('ZCOUNT', live, '(' .. now, '+inf') < capacity then return nil end
  local first = redis.call('ZRANGEBYSCORE', live, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return {'full', tostring(tonumber(first[2]) - now)}
end
"""

# KEYS[1] = live; ARGV = prefix, now, then per script:
_ROOM = _PRELUDE + """
return room(KEYS[1], ARGV[1], now_from(ARGV[2]), tonumber(ARGV[3])) or {'ok'}
"""  # ARGV[3] capacity

_COUNT = _PRELUDE + """
local now = now_from(ARGV[2])
purge(KEYS[1], ARGV[1], now)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""

_CREATE = _PRELUDE + """
local live, prefix, id = KEYS[1], ARGV[1], ARGV[6]
local now = now_from(ARGV[2])
if redis.call('EXISTS', prefix .. 's:' .. id) == 1 then return {'ok'} end  -- a retried create
local full = room(live, prefix, now, tonumber(ARGV[5]))
if full then return full end
redis.call('HSET', prefix .. 's:' .. id, 'hash', ARGV[7], 'height', ARGV[8], 'width', ARGV[9],
           'labels', ARGV[10], 'version', 0)
redis.call('SET', prefix .. 'i:' .. id, ARGV[11])
touch(live, prefix, id, now, tonumber(ARGV[3]), ARGV[4])
return {'ok'}
"""  # ARGV[3..] ttl, keep_ms, capacity, id, hash, height, width, label set, image

_GET = _PRELUDE + """
local live, prefix, id = KEYS[1], ARGV[1], ARGV[5]
local now = now_from(ARGV[2])
if not alive(live, prefix, id, now) then return false end
touch(live, prefix, id, now, tonumber(ARGV[3]), ARGV[4])
return {redis.call('HMGET', prefix .. 's:' .. id, 'hash', 'height', 'width', 'labels', 'version'),
        redis.call('LRANGE', prefix .. 'c:' .. id, 0, -1)}
"""  # ARGV[3..] ttl, keep_ms, id

_COMMIT = _PRELUDE + """
local live, prefix, id = KEYS[1], ARGV[1], ARGV[5]
local now = now_from(ARGV[2])
if not alive(live, prefix, id, now) then return {'gone'} end
local meta, clicks, ops = prefix .. 's:' .. id, prefix .. 'c:' .. id, prefix .. 'o:' .. id
local function state(status)
  touch(live, prefix, id, now, tonumber(ARGV[3]), ARGV[4])
  return {status, redis.call('HGET', meta, 'version'), redis.call('LRANGE', clicks, 0, -1)}
end
if redis.call('LPOS', ops, ARGV[7]) then return state('done') end
if redis.call('HGET', meta, 'version') ~= ARGV[6] then return {'conflict'} end
local op = ARGV[8]
if op == 'push' then
  if redis.call('LLEN', clicks) >= tonumber(ARGV[10]) then return {'limit'} end
  redis.call('RPUSH', clicks, ARGV[9])
elseif op == 'pop' then
  redis.call('RPOP', clicks)
else
  redis.call('DEL', clicks)
end
redis.call('HINCRBY', meta, 'version', 1)
redis.call('LPUSH', ops, ARGV[7])
redis.call('LTRIM', ops, 0, tonumber(ARGV[11]) - 1)
return state('ok')
"""  # ARGV[3..] ttl, keep_ms, id, version, op id, op, click, max clicks, recent ops

_REMOVE = _PRELUDE + """
local now = now_from(ARGV[2])
if not alive(KEYS[1], ARGV[1], ARGV[3], now) then return 0 end
drop(KEYS[1], ARGV[1], ARGV[3])
return 1
"""  # ARGV[3] id


class StoreError(IhpError):
    """Redis answered, but with an error: a server fault (500), not worth a blind retry."""


class StoreOutOfMemory(StoreUnavailable):
    """Redis is at its maxmemory (policy noeviction) and refuses writes: a 503 with Retry-After,
    as for an unreachable Redis, since it passes as sessions are deleted or expire. Redis
    refuses a script only at its first write, and only if that write may grow memory, so none
    is left half-done. Every request but a delete starts with a read that marks the session
    used (a write), so reads are refused too; a delete, which frees memory, still works."""


def _redis():
    try:
        import redis
    except ImportError as e:
        raise BackendError(f"--redis needs the redis client of the serve extra: pip install 'ihp-rt[serve]' ({e})"
                           ) from None
    return redis


class RedisStore:
    """The :class:`~ihp_rt.serving.store.SessionStore` contract over one Redis."""

    def __init__(self, url: str, capacity: int, ttl_s: float, max_clicks: int,
                 clock: Callable[[], float] | None = None, prefix: str = "ihp-rt:") -> None:
        redis = _redis()
        from redis.backoff import ExponentialWithJitterBackoff
        from redis.retry import Retry

        self.capacity, self.ttl_s, self.max_clicks = capacity, ttl_s, max_clicks
        self.prefix, self._clock = prefix, clock
        # A few quick retries ride out a dropped connection (a restarted Redis); a Redis that is
        # really down answers 503 within a second instead of holding the request.
        self.client = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), 3))
        kwargs = self.client.connection_pool.connection_kwargs
        self.where = f"redis at {kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}"  # no password
        self._unavailable = (redis.ConnectionError, redis.TimeoutError)
        self._out_of_memory = redis.exceptions.OutOfMemoryError
        self._redis_error = redis.RedisError
        self._live = prefix + "live"
        self._keep_ms = str(round((ttl_s + KEEP_AFTER_EXPIRY_S) * 1000))
        scripts = {"room": _ROOM, "count": _COUNT, "create": _CREATE, "get": _GET, "commit": _COMMIT,
                   "remove": _REMOVE}
        self._scripts = {name: self.client.register_script(text) for name, text in scripts.items()}

    def ping(self) -> None:
        """Fail now, in one line, if Redis cannot be reached (a worker's start-up check)."""
        self._call(lambda: self.client.ping())

    def __len__(self) -> int:
        return int(self._run("count"))

    def check_room(self) -> None:
        self._refuse_if_full(self._run("room", self.capacity))

    def create(self, image: bytes, image_hash: str, height: int, width: int, label_set: str) -> str:
        session_id = new_session_id()
        self._refuse_if_full(self._run("create", self.ttl_s, self._keep_ms, self.capacity, session_id, image_hash,
                                       height, width, label_set, image))
        return session_id

    def get(self, session_id: str) -> SessionState:
        found = self._run("get", self.ttl_s, self._keep_ms, session_id)
        if found is None:
            raise not_found(session_id, self.ttl_s)
        (key, height, width, label_set, version), clicks = found
        return SessionState(session_id, key.decode(), int(height), int(width), label_set.decode(),
                            _clicks(clicks), int(version))

    def image(self, session_id: str) -> bytes:
        data = self._call(lambda: self.client.get(self.prefix + "i:" + session_id))
        if data is None:
            raise not_found(session_id, self.ttl_s)
        return data

    def commit(self, state: SessionState, change: Change, op_id: str) -> SessionState:
        click = f"{change.click.x},{change.click.y},{change.click.label}" if change.click else ""
        reply = self._run("commit", self.ttl_s, self._keep_ms, state.id, state.version, op_id, change.op, click,
                          self.max_clicks, RECENT_OPS)
        status = reply[0].decode()
        if status == "gone":
            raise not_found(state.id, self.ttl_s)
        if status == "conflict":
            raise SessionConflict(f"session {state.id!r} changed while this request was computed")
        if status == "limit":
            raise click_limit(self.max_clicks)
        return SessionState(state.id, state.image_hash, state.height, state.width, state.label_set,
                            _clicks(reply[2]), int(reply[1]))

    def remove(self, session_id: str) -> None:
        if not self._run("remove", session_id):
            raise not_found(session_id, self.ttl_s)

    def _refuse_if_full(self, reply: Sequence[bytes]) -> None:
        if reply[0] == b"full":
            raise store_full(self.capacity, float(reply[1]))

    def _run(self, script: str, *args: object) -> Any:
        now = "" if self._clock is None else repr(float(self._clock()))
        return self._call(lambda: self._scripts[script](keys=[self._live], args=[self.prefix, now, *args]))

    def _call(self, command: Callable[[], Any]) -> Any:
        try:
            return command()
        except self._unavailable as e:
            raise StoreUnavailable(f"the session store ({self.where}) cannot be reached: {e}") from None
        except self._out_of_memory as e:  # before RedisError, which it is too
            raise StoreOutOfMemory(f"the session store ({self.where}) is full: Redis refuses writes at its "
                                   f"maxmemory ({e}); retry once sessions are deleted or expire, or give Redis more "
                                   "memory (its maxmemory should be at least --max-sessions x --max-upload-mb)"
                                   ) from None
        except self._redis_error as e:
            raise StoreError(f"the session store ({self.where}) failed: {e}") from None


def _clicks(rows: Sequence[bytes]) -> tuple[Click, ...]:
    return tuple(Click(*map(int, row.split(b","))) for row in rows)


def connect(url: str, config: ServeConfig, clock: Callable[[], float] | None = None) -> RedisStore:
    """A store over ``url`` with the server's limits, checked reachable now: a worker that
    cannot reach its sessions should fail at start, in one line, not on its first request."""
    store = RedisStore(url, config.max_sessions, config.session_ttl_s, config.max_session_clicks, clock)
    store.ping()
    return store
