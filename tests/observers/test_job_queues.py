"""The job queue's contract, held by the observed database's table and by Redis alike:
idempotent enqueueing, claims that two workers never share while the leases hold, expired
leases claimed again, retries due after their delay, dead jobs, exact JSON payloads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from quiver.observers.jobqueue import JobQueue, NewJob, SqlJobQueue
from quiver.observers.redisqueue import RedisJobQueue
from quiver.sql.changelog import json_text, json_value
from quiver.sql.database import open_database
from tests.observers.conftest import REDIS_URL, drop_keys

pytestmark = pytest.mark.asyncio(loop_scope="session")

BACKENDS = ("sqlite", "postgresql", "redis")


class Queues:
    """Queues over one store: each :meth:`open` is another worker's own connection."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.prefix = f"quiver_t:{uuid.uuid4().hex[:12]}:jobs"
        self.opened: list[JobQueue] = []

    async def open(self) -> JobQueue:
        queue: JobQueue
        if self.kind == "redis":
            queue = RedisJobQueue(REDIS_URL, self.prefix)
        else:
            queue = SqlJobQueue(await open_database(self.url, pool_min=1, pool_max=2))
        await queue.ensure()
        self.opened.append(queue)
        return queue

    async def close(self) -> None:
        for queue in self.opened:
            await queue.close()
        if self.kind == "redis":
            await drop_keys(self.prefix)


@pytest_asyncio.fixture(params=BACKENDS, loop_scope="session")
async def queues(request: pytest.FixtureRequest) -> AsyncIterator[Queues]:
    kind: str = request.param
    url = REDIS_URL if kind == "redis" else request.getfixturevalue(f"fresh_{kind}")
    opened = Queues(kind, url)
    try:
        yield opened
    finally:
        await opened.close()


def _job(n: int, name: str = "send", payload: Any = None, key: str | None = None) -> NewJob:
    return NewJob(
        name=name,
        idempotency_key=key or f"{n}:welcome:enqueue",
        payload={"n": n} if payload is None else payload,
        event={"id": n, "op": "INSERT", "after": {"id": n}},
        event_id=n,
        observer="welcome",
        action="enqueue",
    )


async def test_an_action_delivered_twice_enqueues_one_job(queues: Queues) -> None:
    queue = await queues.open()
    await queue.enqueue(_job(1))
    await queue.enqueue(_job(1, payload={"n": "again"}))
    await (await queues.open()).enqueue(_job(1))  # another dispatcher, the same key
    [job] = await queue.jobs(None, 10)
    assert (job.status, job.attempts, job.payload) == ("queued", 0, {"n": 1})
    assert await queue.jobs(None, 0) == [] and len(await queue.jobs("queued", 1)) == 1
    assert job.idempotency_key == "1:welcome:enqueue" and job.event_id == 1


async def test_racing_workers_claim_each_job_once_while_the_leases_hold(queues: Queues) -> None:
    queue = await queues.open()
    for n in range(120):
        await queue.enqueue(_job(n, name="send" if n % 3 else "other"))
    workers = [await queues.open() for _ in range(4)]
    claimed: list[tuple[str, int]] = []

    async def work(i: int, worker: JobQueue) -> None:
        while rows := await worker.claim(["send", "other"], 7, f"w{i}", 60.0):
            claimed.extend((f"w{i}", r.id) for r in rows)
            assert all(r.status == "running" and r.attempts == 1 for r in rows)
            await asyncio.sleep(0)

    await asyncio.gather(*(work(i, w) for i, w in enumerate(workers)))
    ids = [job_id for _, job_id in claimed]
    assert len(ids) == 120 and len(set(ids)) == 120  # however the claims interleaved
    assert await queue.claim(["send", "other"], 50, "late", 60.0) == []


async def test_only_the_named_functions_jobs_are_claimed(queues: Queues) -> None:
    queue = await queues.open()
    await queue.enqueue(_job(1, name="send"))
    await queue.enqueue(_job(2, name="bill"))
    assert [r.name for r in await queue.claim(["bill"], 10, "w", 60.0)] == ["bill"]
    assert await queue.claim(["bill"], 10, "w", 60.0) == []
    assert await queue.claim([], 10, "w", 60.0) == []
    assert [r.name for r in await queue.claim(["send", "bill"], 10, "w", 60.0)] == ["send"]


async def test_a_job_whose_lease_expired_is_claimed_again_with_one_more_attempt(
    queues: Queues,
) -> None:
    queue, other = await queues.open(), await queues.open()
    await queue.enqueue(_job(1))
    [first] = await queue.claim(["send"], 10, "dead-worker", 0.3)
    assert await other.claim(["send"], 10, "w2", 60.0) == []  # the lease holds
    await asyncio.sleep(0.4)
    [again] = await other.claim(["send"], 10, "w2", 60.0)
    assert again.id == first.id and again.attempts == 2
    assert await queue.claim(["send"], 10, "dead-worker", 0.3) == []  # w2 holds it now
    await other.done(again)
    [done] = await queue.jobs("done", 10)
    assert done.attempts == 2 and await queue.jobs("running", 10) == []


async def test_a_retried_job_is_due_after_its_delay_and_a_buried_one_never(
    queues: Queues,
) -> None:
    queue = await queues.open()
    await queue.enqueue(_job(1))
    await queue.enqueue(_job(2))
    one, two = await queue.claim(["send"], 10, "w", 60.0)
    await queue.retry_later(one, "RuntimeError: smtp down", 0.5)
    await queue.bury(two, "no such mailbox")
    [queued] = await queue.jobs("queued", 10)
    assert queued.last_error == "RuntimeError: smtp down" and queued.attempts == 1
    assert await queue.claim(["send"], 10, "w", 60.0) == []  # not due yet
    await asyncio.sleep(0.6)
    [again] = await queue.claim(["send"], 10, "w", 60.0)
    assert again.id == one.id and again.attempts == 2
    [dead] = await queue.jobs("dead", 10)
    assert (dead.id, dead.last_error, dead.attempts) == (two.id, "no such mailbox", 1)
    await queue.enqueue(_job(2))  # quiver dlq retry: the dead job is queued again
    [requeued] = await queue.jobs("queued", 10)
    assert (requeued.id, requeued.attempts, requeued.last_error) == (two.id, 0, None)
    assert [r.id for r in await queue.claim(["send"], 10, "w", 60.0)] == [two.id]
    statuses = [(j.id, j.status) for j in await queue.jobs(None, 10)]
    assert statuses == [(one.id, "running"), (two.id, "running")]


async def test_a_payload_travels_through_the_queue_exactly(queues: Queues) -> None:
    text = (
        '{"big": 123456789012345678901234567890, "huge": 1e400, "tiny": 1e-400,'
        ' "price": 0.1, "i64": -9223372036854775808, "u64": 18446744073709551615,'
        ' "text": "caf\\u00e9 \\u0000 \\ud83d\\ude00 \\"q\\"", "none": null,'
        ' "nested": [1, {"a": true, "b": []}], "": ""}'
    )
    payload = json_value(text)
    queue = await queues.open()
    await queue.enqueue(_job(1, payload=payload))
    await queue.enqueue(_job(2, payload=[1.5, "x", None]))
    await queue.enqueue(_job(3, payload="just text"))
    one, two, three = await queue.claim(["send"], 10, "w", 60.0)
    assert one.payload == payload and json_text(one.payload) == json_text(payload)
    assert json_text(one.payload) == json_text(json_value(text))
    assert (two.payload, three.payload) == ([1.5, "x", None], "just text")
    assert one.event == {"id": 1, "op": "INSERT", "after": {"id": 1}}


async def test_every_redis_key_of_a_queue_is_under_its_prefix(queues: Queues) -> None:
    if queues.kind != "redis":
        pytest.skip("Redis's keys")
    queue = await queues.open()
    assert isinstance(queue, RedisJobQueue)
    await queue.enqueue(_job(1))
    await queue.enqueue(_job(2, name="bill"))
    [job] = await queue.claim(["send"], 10, "w", 60.0)
    await queue.bury(job, "boom")
    p = queues.prefix
    keys = {k async for k in queue.client.scan_iter(f"{p}:*")}
    assert keys == {
        f"{p}:seq", f"{p}:keys", f"{p}:ids", f"{p}:job:1", f"{p}:job:2", f"{p}:due:bill",
        f"{p}:status:queued", f"{p}:status:dead",
    }  # fmt: skip
    await queue.close()
    # Another prefix on the same Redis is another queue.
    elsewhere = RedisJobQueue(REDIS_URL, f"{p}:elsewhere")
    try:
        assert await elsewhere.jobs(None, 10) == []
        assert await elsewhere.claim(["bill"], 10, "w", 60.0) == []
    finally:
        await elsewhere.close()
