"""The job queue in Redis: many workers on many hosts, and no load on the observed database.

:class:`RedisJobQueue` keeps the promises of :class:`~quiver.observers.jobqueue.SqlJobQueue`
with Lua scripts, each of which Redis runs alone: enqueueing is idempotent on the action's key
(a dead job of that key is queued again), a claim moves a batch of due jobs to the lease set
in one step (two workers never claim one job), and a job whose lease expired is claimed again
(at least once). Times are the Redis server's clock, the same for every worker.

Every key starts with the queue's prefix (``quiver:jobs:<table>`` by default):

=========================  ========================================================
``<p>:seq``                the last job id given (``INCR``)
``<p>:job:<id>``           hash: the job, with the fields of the SQL queue's columns
``<p>:keys``               hash: idempotency key -> job id
``<p>:due:<name>``         sorted set: queued jobs of function ``name`` by ``run_after``
``<p>:leased:<name>``      sorted set: running jobs of ``name`` by ``lease_until``
``<p>:status:<status>``    sorted set: the jobs in ``queued|running|done|dead``, by id
``<p>:ids``                sorted set: every job, by id
=========================  ========================================================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from quiver.observers.jobqueue import JobRow, NewJob, job_row
from quiver.runtime.errors import PermanentError, QuiverError, RetryableError
from quiver.sql.changelog import json_text

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = [
    "REDIS_SCHEMES",
    "RedisJobQueue",
    "default_key_prefix",
    "redact_redis_url",
    "redis_url_problem",
]

REDIS_SCHEMES = ("redis", "rediss", "unix")
#: Seconds to wait for Redis to accept a connection or answer a command.
_TIMEOUT_S = 10.0
_URL_FIX = (
    "write redis://[:password@]host[:port][/db] (rediss:// for TLS,"
    " unix:///path/redis.sock?db=0 for a socket)"
)
_SERVER_FIX = "check that Redis is running and that the host and port in the URL are right"
_LOGIN_FIX = "check the user and password in the URL (or the ${VAR} it reads them from)"

# The fields a claim or a listing returns, in JobRow's order.
_FIELDS = (
    "id", "name", "idempotency_key", "payload", "event", "event_id", "observer", "action",
    "status", "attempts", "run_after", "last_error",
)  # fmt: skip
_LUA_FIELDS = "{" + ", ".join(f"'{f}'" for f in _FIELDS) + "}"
_LUA_NOW = (
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
    "local function at(s) return string.format('%.6f', s) end\n"
)

# ARGV: prefix, key, name, payload, event, event_id, observer, action, stamp.
# Returns the job's id, and 1 when this call queued it (0: it was there already).
_ENQUEUE = (
    _LUA_NOW
    + """
local p, key, name, stamp = ARGV[1], ARGV[2], ARGV[3], ARGV[9]
local id = redis.call('HGET', p .. ':keys', key)
if id then
  local job = p .. ':job:' .. id
  if redis.call('HGET', job, 'status') ~= 'dead' then return {id, 0} end
  redis.call('ZREM', p .. ':status:dead', id)
  redis.call('HDEL', job, 'last_error', 'lease_until')
  redis.call('HSET', job, 'status', 'queued', 'attempts', 0, 'run_after', at(now),
             'updated_at', stamp)
else
  id = tostring(redis.call('INCR', p .. ':seq'))
  redis.call('HSET', p .. ':job:' .. id, 'id', id, 'name', name, 'idempotency_key', key,
             'payload', ARGV[4], 'event', ARGV[5], 'event_id', ARGV[6], 'observer', ARGV[7],
             'action', ARGV[8], 'status', 'queued', 'attempts', 0, 'run_after', at(now),
             'created_at', stamp, 'updated_at', stamp)
  redis.call('HSET', p .. ':keys', key, id)
  redis.call('ZADD', p .. ':ids', id, id)
end
redis.call('ZADD', p .. ':status:queued', id, id)
redis.call('ZADD', p .. ':due:' .. name, at(now), id)
return {id, 1}
"""
)

# ARGV: prefix, limit, owner, lease seconds, stamp, names... Up to ``limit`` due jobs (queued
# and due, or running with an expired lease), the longest due first, each one more attempt and
# leased to ``owner``.
_CLAIM = (
    _LUA_NOW
    + f"""
local p, limit, owner, lease, stamp = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local fields = {_LUA_FIELDS}
local found = {{}}
for i = 6, #ARGV do
  local name = ARGV[i]
  for _, set in ipairs({{{{'due', at(now)}}, {{'leased', '(' .. at(now)}}}}) do
    local hits = redis.call('ZRANGEBYSCORE', p .. ':' .. set[1] .. ':' .. name, '-inf', set[2],
                            'WITHSCORES', 'LIMIT', 0, limit)
    for j = 1, #hits, 2 do
      found[#found + 1] = {{tonumber(hits[j]), name, tonumber(hits[j + 1])}}
    end
  end
end
table.sort(found, function(a, b)
  if a[3] ~= b[3] then return a[3] < b[3] end
  return a[1] < b[1]
end)
local until_ = at(now + tonumber(lease))
local out = {{}}
for i = 1, math.min(limit, #found) do
  local id, name = string.format('%d', found[i][1]), found[i][2]
  local job = p .. ':job:' .. id
  redis.call('ZREM', p .. ':due:' .. name, id)
  redis.call('ZADD', p .. ':leased:' .. name, until_, id)
  redis.call('ZREM', p .. ':status:queued', id)
  redis.call('ZADD', p .. ':status:running', id, id)
  redis.call('HINCRBY', job, 'attempts', 1)
  redis.call('HSET', job, 'status', 'running', 'lease_until', until_, 'owner', owner,
             'updated_at', stamp)
  out[#out + 1] = redis.call('HMGET', job, unpack(fields))
end
return out
"""
)

# ARGV: prefix, id, name, status (done, queued, dead), stamp, error ('' for none: kept),
# has error (1/0), delay seconds (queued: due again that much later).
_SETTLE = (
    _LUA_NOW
    + """
local p, id, name, status, stamp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local job = p .. ':job:' .. id
if redis.call('EXISTS', job) == 0 then return 0 end
for _, s in ipairs({'queued', 'running', 'done', 'dead'}) do
  redis.call('ZREM', p .. ':status:' .. s, id)
end
redis.call('ZREM', p .. ':due:' .. name, id)
redis.call('ZREM', p .. ':leased:' .. name, id)
redis.call('ZADD', p .. ':status:' .. status, id, id)
redis.call('HDEL', job, 'lease_until')
redis.call('HSET', job, 'status', status, 'updated_at', stamp)
if ARGV[7] == '1' then redis.call('HSET', job, 'last_error', ARGV[6]) end
if status == 'queued' then
  local due = at(now + tonumber(ARGV[8]))
  redis.call('HSET', job, 'run_after', due)
  redis.call('ZADD', p .. ':due:' .. name, due, id)
end
return 1
"""
)

T = TypeVar("T")


def default_key_prefix(queue: str) -> str:
    """The prefix of a queue's keys when its configuration names none."""
    return f"quiver:jobs:{queue}"


def redact_redis_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user, colon, _ = auth.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{host}"


def redis_url_problem(url: str) -> tuple[str, str] | None:
    """What is wrong with ``url`` as a Redis URL, and the fix; None when nothing is."""
    shown = redact_redis_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{shown!r} is no Redis URL: {exc}", _URL_FIX
    if parts.scheme not in REDIS_SCHEMES:
        return f"{shown!r} is no Redis URL (scheme {parts.scheme or 'missing'!r})", _URL_FIX
    if parts.scheme == "unix" and not parts.path:
        return f"{shown!r} names no socket path", "write unix:///path/redis.sock?db=0"
    if parts.scheme != "unix" and not parts.hostname:
        return f"{shown!r} names no host", _URL_FIX
    if port == 0:
        return f"{shown!r}: port 0", "give the port Redis listens on (6379 by default)"
    path_db = parts.path.strip("/") if parts.scheme != "unix" else ""
    for db in [path_db, *parse_qs(parts.query).get("db", [])]:
        if db and not db.isdigit():
            return f"{shown!r}: database {db!r} is no number", "end the URL with /0 (or another db)"
    from redis.connection import parse_url

    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return f"{shown!r}: {exc}", _URL_FIX
    return None


class RedisJobQueue:
    """The job queue in Redis under ``prefix`` (see the module's text)."""

    def __init__(self, url: str, prefix: str, where: str = "queue") -> None:
        from redis.asyncio import Redis

        self.url = url
        self.prefix = prefix
        self.where = where
        self._client: Redis | None = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=_TIMEOUT_S,
            socket_timeout=_TIMEOUT_S,
        )
        self._enqueue: AsyncScript = self._client.register_script(_ENQUEUE)
        self._claim: AsyncScript = self._client.register_script(_CLAIM)
        self._settle: AsyncScript = self._client.register_script(_SETTLE)

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise PermanentError.one("the job queue is closed", self.where, "")
        return self._client

    async def _call(self, doing: str, work: Callable[[], Awaitable[T]]) -> T:
        """``work``, its Redis failures as Quiver's errors (connection trouble: retryable)."""
        from redis import exceptions as errors

        try:
            return await work()
        except QuiverError:
            raise
        except errors.AuthenticationError as exc:
            raise PermanentError.one(
                f"Redis at {redact_redis_url(self.url)} refused the login while {doing}: {exc}",
                self.where,
                _LOGIN_FIX,
            ) from None
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            raise RetryableError.one(
                f"cannot reach Redis at {redact_redis_url(self.url)} while {doing}: {exc}",
                self.where,
                _SERVER_FIX,
            ) from None
        except errors.RedisError as exc:
            raise PermanentError.one(
                f"Redis at {redact_redis_url(self.url)} failed while {doing}: {exc}",
                self.where,
                "check the key prefix: its keys must be this queue's alone",
            ) from None

    async def ensure(self) -> None:
        """Check that Redis answers (nothing to create: keys appear with the first job)."""
        await self._call("connecting", self.client.ping)

    async def enqueue(self, job: NewJob) -> None:
        args = [
            self.prefix,
            job.idempotency_key,
            job.name,
            json_text(job.payload).decode(),
            json_text(job.event).decode(),
            str(job.event_id),
            job.observer,
            job.action,
            _now(),
        ]
        await self._call("enqueueing a job", lambda: self._enqueue(keys=[], args=args))

    async def claim(
        self, names: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[JobRow]:
        if not names or limit < 1:
            return []
        args = [self.prefix, str(limit), owner, repr(float(lease)), _now(), *names]
        rows = await self._call("claiming jobs", lambda: self._claim(keys=[], args=args))
        return [job_row(r) for r in rows]

    async def _move(self, job: JobRow, status: str, error: str | None, delay: float) -> None:
        args = [
            self.prefix, str(job.id), job.name, status, _now(), error or "",
            "0" if error is None else "1", repr(float(delay)),
        ]  # fmt: skip
        await self._call(f"marking job {job.id} {status}", lambda: self._settle(keys=[], args=args))

    async def done(self, job: JobRow) -> None:
        await self._move(job, "done", None, 0.0)

    async def retry_later(self, job: JobRow, error: str, delay: float) -> None:
        await self._move(job, "queued", error, delay)

    async def bury(self, job: JobRow, error: str) -> None:
        await self._move(job, "dead", error, 0.0)

    async def jobs(self, status: str | None, limit: int) -> list[JobRow]:
        if limit < 1:  # as SQL's LIMIT 0 (ZRANGE's -1 would be the last one)
            return []
        index = f"{self.prefix}:status:{status}" if status else f"{self.prefix}:ids"
        client = self.client

        async def read() -> list[Any]:
            ids = await client.zrange(index, 0, limit - 1)
            async with client.pipeline(transaction=False) as pipe:
                for i in ids:
                    pipe.hmget(f"{self.prefix}:job:{i!s}", list(_FIELDS))  # decoded: text
                found: list[Any] = await pipe.execute()
            return [r for r in found if r[0] is not None]  # removed meanwhile

        return [job_row(r) for r in await self._call("listing jobs", read)]

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
