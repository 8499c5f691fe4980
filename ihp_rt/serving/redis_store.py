"""Sessions in Redis, shared by any number of ``ihp-rt serve --redis URL`` workers.

Per session (``P`` is the key prefix, ``ihp-rt:`` by default) one hash, and one index::

    P session:<id>  hash  image hash, height, width, model, version, expiry time, the clicks
                          ("x,y,label;..."), the last RECENT_OPS operation ids (a retried
                          commit is applied once) and the uploaded image bytes
    P sessions      zset  id -> expiry time: the session count and which sessions to purge

One key per session because Redis evicts whole keys: under an evicting ``maxmemory-policy`` a
session is dropped whole or kept whole, never left with its version but not its clicks (which
would let the next compare-and-set succeed on an empty list). The hash is the truth; the index
only counts and purges, and is rebuilt by use if Redis evicts it. :func:`connect` refuses an
evicting policy unless told otherwise: a dropped session is a 404 in the middle of someone's work.
(Earlier versions kept a session in four keys named ``s:``, ``i:``, ``c:``, ``o:`` and counted
them in ``live``: other names, so during an upgrade each version answers 404 for the other's
sessions rather than misreading them, and the old keys expire on their own.)

Every operation is one Lua script, so each is atomic in Redis: the session limit (count and
add in one step), the click limit (check and append in one step), undo (pop), reset, expiry,
and the compare-and-set on the version that makes a change land only with the mask computed
for it. Expiry times come from Redis's own clock (``TIME``), so workers' clocks need not
agree; tests inject a clock instead. Each hash also gets a Redis TTL a little past the
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
    SessionNotFound,
    SessionState,
    StoreUnavailable,
    click_limit,
    new_session_id,
    not_found,
    store_full,
)

KEEP_AFTER_EXPIRY_S = 60  # a key's Redis TTL beyond its session's: the backstop, never the rule
SAFE_POLICY = "noeviction"  # the one maxmemory-policy that never drops a session

# Every script's first write is one that may grow memory (HSET, never DEL or ZREM first), so
# a Redis at its maxmemory refuses the script before it changes anything (StoreOutOfMemory).
_PRELUDE = """
local function now_from(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function key_of(prefix, id) return prefix .. 'session:' .. id end
local function drop(live, prefix, id)
  redis.call('DEL', key_of(prefix, id))
  redis.call('ZREM', live, id)
end
local function purge(live, prefix, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', live, '-inf', now, 'LIMIT', 0, 64)) do
    drop(live, prefix, id)
  end
end
local function alive(live, prefix, id, now)
  local expires = redis.call('HGET', key_of(prefix, id), 'expires')
  if expires and tonumber(expires) > now then return true end
  drop(live, prefix, id)  -- expired, deleted or evicted: gone whole
  return false
end
local function touch(live, prefix, id, now, ttl, keep_ms)
  local key = key_of(prefix, id)
  redis.call('HSET', key, 'expires', now + ttl)
  redis.call('ZADD', live, now + ttl, id)
  redis.call('PEXPIRE', key, keep_ms)
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
if redis.call('EXISTS', key_of(prefix, id)) == 1 then return {'ok'} end  -- a retried create
local full = room(live, prefix, now, tonumber(ARGV[5]))
if full then return full end
redis.call('HSET', key_of(prefix, id), 'hash', ARGV[7], 'height', ARGV[8], 'width', ARGV[9], 'model', ARGV[10],
           'version', 0, 'clicks', '', 'ops', '', 'image', ARGV[11])
touch(live, prefix, id, now, tonumber(ARGV[3]), ARGV[4])
return {'ok'}
"""  # ARGV[3..] ttl, keep_ms, capacity, id, hash, height, width, model, image

_GET = _PRELUDE + """
local live, prefix, id = KEYS[1], ARGV[1], ARGV[5]
local now = now_from(ARGV[2])
if not alive(live, prefix, id, now) then return false end
touch(live, prefix, id, now, tonumber(ARGV[3]), ARGV[4])
return redis.call('HMGET', key_of(prefix, id), 'hash', 'height', 'width', 'model', 'version', 'clicks')
"""  # ARGV[3..] ttl, keep_ms, id

_COMMIT = _PRELUDE + """
local live, prefix, id = KEYS[1], ARGV[1], ARGV[5]
local now = now_from(ARGV[2])
if not alive(live, prefix, id, now) then return {'gone'} end
local key = key_of(prefix, id)
local function state(status)
  touch(live, prefix, id, now, tonumber(ARGV[3]), ARGV[4])
  local row = redis.call('HMGET', key, 'version', 'clicks')
  return {status, row[1], row[2]}
end
local row = redis.call('HMGET', key, 'version', 'clicks', 'ops')
local version, clicks, ops = row[1], row[2], row[3]
if string.find(' ' .. ops .. ' ', ' ' .. ARGV[7] .. ' ', 1, true) then return state('done') end
if version ~= ARGV[6] then return {'conflict'} end
local op = ARGV[8]
if op == 'push' then
  local count = clicks == '' and 0 or select(2, string.gsub(clicks, ';', '')) + 1
  if count >= tonumber(ARGV[10]) then return {'limit'} end
  clicks = clicks == '' and ARGV[9] or clicks .. ';' .. ARGV[9]
elseif op == 'pop' then
  clicks = string.match(clicks, '^(.*);') or ''
else
  clicks = ''
end
local kept = {}
for done in string.gmatch(ops, '%S+') do kept[#kept + 1] = done end
kept[#kept + 1] = ARGV[7]
while #kept > tonumber(ARGV[11]) do table.remove(kept, 1) end
redis.call('HSET', key, 'version', tonumber(version) + 1, 'clicks', clicks, 'ops', table.concat(kept, ' '))
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


class EvictingRedis(IhpError):
    """Redis may evict keys at its maxmemory (its policy is not noeviction), so a session could
    vanish while someone annotates it; refused at start unless the operator accepts that."""


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
        self.lost = "lost when the session store restarted"  # how a 404 explains a session gone early
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
        self._live = prefix + "sessions"
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

    def check_eviction(self, allow: bool) -> None:
        """Refuse a Redis whose maxmemory-policy may evict sessions, unless ``allow``: then its
        404s say that a session may also have been evicted (whole: see the module's docstring)."""
        if allow:
            self.lost = "lost when the session store restarted or evicted it"
            return
        policy = self._call(lambda: self.client.info("memory"))["maxmemory_policy"]
        if policy != SAFE_POLICY:
            raise EvictingRedis(
                f"the session store ({self.where}) has maxmemory-policy {policy}: at its maxmemory Redis would "
                "evict sessions people are annotating. Set it to noeviction (redis-server --maxmemory-policy "
                "noeviction, or CONFIG SET maxmemory-policy noeviction) with a maxmemory of at least --max-sessions "
                "x --max-upload-mb, or start with --redis-allow-eviction to accept evicted sessions as 404s")

    def create(self, image: bytes, image_hash: str, height: int, width: int, model: str) -> str:
        session_id = new_session_id()
        self._refuse_if_full(self._run("create", self.ttl_s, self._keep_ms, self.capacity, session_id, image_hash,
                                       height, width, model, image))
        return session_id

    def get(self, session_id: str) -> SessionState:
        found = self._run("get", self.ttl_s, self._keep_ms, session_id)
        if found is None:
            raise self._not_found(session_id)
        key, height, width, model, version, clicks = found
        return SessionState(session_id, key.decode(), int(height), int(width), model.decode(), _clicks(clicks),
                            int(version))

    def image(self, session_id: str) -> bytes:
        data = self._call(lambda: self.client.hget(self.prefix + "session:" + session_id, "image"))
        if data is None:
            raise self._not_found(session_id)
        return data

    def commit(self, state: SessionState, change: Change, op_id: str) -> SessionState:
        click = f"{change.click.x},{change.click.y},{change.click.label}" if change.click else ""
        reply = self._run("commit", self.ttl_s, self._keep_ms, state.id, state.version, op_id, change.op, click,
                          self.max_clicks, RECENT_OPS)
        status = reply[0].decode()
        if status == "gone":
            raise self._not_found(state.id)
        if status == "conflict":
            raise SessionConflict(f"session {state.id!r} changed while this request was computed")
        if status == "limit":
            raise click_limit(self.max_clicks)
        return SessionState(state.id, state.image_hash, state.height, state.width, state.model, _clicks(reply[2]),
                            int(reply[1]))

    def remove(self, session_id: str) -> None:
        if not self._run("remove", session_id):
            raise self._not_found(session_id)

    def _not_found(self, session_id: str) -> SessionNotFound:
        return not_found(session_id, self.ttl_s, self.lost)

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


def _clicks(text: bytes) -> tuple[Click, ...]:
    """The click list as the scripts keep it: "x,y,label" joined by ";"."""
    return tuple(Click(*map(int, row.split(b","))) for row in text.split(b";")) if text else ()


def connect(url: str, config: ServeConfig, clock: Callable[[], float] | None = None,
            allow_eviction: bool = False) -> RedisStore:
    """A store over ``url`` with the server's limits, checked reachable and not evicting now: a
    worker that cannot keep its sessions should fail at start, in one line, not on a request."""
    store = RedisStore(url, config.max_sessions, config.session_ttl_s, config.max_session_clicks, clock)
    store.ping()
    store.check_eviction(allow_eviction)
    return store
