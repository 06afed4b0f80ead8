"""The ``job`` action enqueues one job per event into a table of the observed database or into
Redis, and the worker runs the registered job functions with retries, the dead-letter table
and ``dlq retry``; ``quiver jobs work|list`` as a user runs them. Every behaviour holds for
both queues (the ``backend`` fixture), on every dialect."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from quiver.observers.dispatcher import Dispatcher
from quiver.observers.jobs import JobSpec, JobWorker, jobs_in
from quiver.observers.service import open_dispatcher
from quiver.runtime.errors import ErrorDetail, PermanentError
from tests.graphql.servers import QUIVER
from tests.observers.conftest import QueueBackend, Shop
from tests.observers.test_commands import quiver

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAYLOAD = (
    '{"author": {{ after.id | json }}, "name": {{ after.name | json }},'
    ' "key": {{ idempotency_key | json }}}'
)


def _observer(backend: QueueBackend | None = None, **action: Any) -> dict[str, Any]:
    queue = backend.action() if backend is not None else {}
    return {
        "name": "welcome",
        "entity": "Author",
        "on": ["insert"],
        "actions": [{"type": "job", "name": "enqueue", "job": "send_welcome", **queue, **action}],
    }


async def _authors(shop: Shop, *names: str) -> None:
    inputs = ", ".join(f'{{name: "{n}", email: "{n}@x"}}' for n in names)
    await shop.mutate(f"mutation {{ createAuthors(inputs: [{inputs}]) {{ id }} }}")


def _worker(d: Dispatcher, backend: QueueBackend, fn: Any, name: str = "send_welcome") -> JobWorker:
    queue = backend.queue(d)
    return JobWorker(queue, d.store, {name: JobSpec(name, fn, "test")}, d.settings.retry)


async def test_the_job_action_enqueues_one_job_per_event_that_the_worker_runs(
    shop: Shop, backend: QueueBackend
) -> None:
    d = await shop.dispatcher([_observer(backend, payload=PAYLOAD)])
    ran: list[dict[str, Any]] = []

    async def send_welcome(payload: dict[str, Any]) -> None:
        ran.append(payload)

    try:
        await _authors(shop, "ann", "bob")
        assert await d.run_once() == 2
        # Delivered again (a dispatcher that died before its ledger row): no second job.
        [observer] = d.observers
        events = await d.store.pending(["Author"], 3600, 10)
        assert events == []
        jobs = await backend.queue(d).jobs(None, 10)
        assert [(j.name, j.status, j.attempts) for j in jobs] == [("send_welcome", "queued", 0)] * 2
        from quiver.observers.event import Job

        first = jobs[0]
        again = Job(first.event_id, first.observer, first.action, first.event)
        await observer.actions[0].action.run(again)
        assert len(await backend.queue(d).jobs(None, 10)) == 2
        worker = _worker(d, backend, send_welcome)
        assert await worker.run_once() == 2
        assert await worker.run_once() == 0
        assert sorted(p["name"] for p in ran) == ["ann", "bob"]
        assert {p["key"] for p in ran} == {j.idempotency_key for j in jobs}
        assert ran[0]["key"] == f"{jobs[0].event_id}:welcome:enqueue"
        done = await backend.queue(d).jobs("done", 10)
        assert [j.attempts for j in done] == [1, 1]
    finally:
        await d.close()


async def test_a_failing_job_is_retried_then_dead_lettered_and_dlq_retry_runs_it_again(
    shop: Shop, backend: QueueBackend
) -> None:
    d = await shop.dispatcher([_observer(backend)])  # max_attempts 3, delays of 10-20 ms
    calls: list[int] = []
    fail = True

    def send_welcome(payload: dict[str, Any]) -> None:  # a plain function: runs in a thread
        calls.append(payload["event_id"])
        if fail:
            raise RuntimeError("smtp down")

    try:
        await _authors(shop, "ann")
        await d.run_once()
        worker = _worker(d, backend, send_welcome)
        for _ in range(50):
            await worker.run_once()
            if worker.dead:
                break
            await asyncio.sleep(0.03)
        assert len(calls) == 3 and worker.retried == 2 and worker.dead == 1
        [dead] = await d.store.dead_letters()
        assert dead.attempts == 3 and "RuntimeError: smtp down" in dead.error
        assert dead.idempotency_key == f"{calls[0]}:welcome:enqueue"
        assert dead.payload["after"]["name"] == "ann"
        [job_row] = await backend.queue(d).jobs("dead", 10)
        assert job_row.last_error == "RuntimeError: smtp down"
        fail = False
        await d.redeliver(dead)  # quiver dlq retry: the job is queued again
        assert await d.store.dead_letters() == []
        assert await worker.run_once() == 1
        assert len(calls) == 4
        [done] = await backend.queue(d).jobs("done", 10)
        assert done.attempts == 1
    finally:
        await d.close()


async def test_a_permanent_error_and_an_invalid_payload_are_dead_lettered_at_once(
    shop: Shop, backend: QueueBackend
) -> None:
    d = await shop.dispatcher(
        [
            _observer(backend),
            {**_observer(backend, payload="{ {{ after.name }} }"), "name": "broken"},
        ]
    )

    async def send_welcome(payload: dict[str, Any]) -> None:
        raise PermanentError([ErrorDetail("no such mailbox", "smtp", "")])

    try:
        await _authors(shop, "ann")
        await d.run_once()
        [bad] = await d.store.dead_letters()  # the broken template: never enqueued
        assert bad.observer == "broken" and "invalid JSON" in bad.error and bad.attempts == 1
        worker = _worker(d, backend, send_welcome)
        assert await worker.run_once() == 1
        dead = await d.store.dead_letters()
        assert len(dead) == 2 and "no such mailbox" in dead[1].error and dead[1].attempts == 1
    finally:
        await d.close()


async def test_two_workers_never_run_one_job_at_once(shop: Shop, backend: QueueBackend) -> None:
    d = await shop.dispatcher([_observer(backend)])
    running: list[int] = []
    seen: list[int] = []

    async def send_welcome(payload: dict[str, Any]) -> None:
        running.append(payload["event_id"])
        seen.append(payload["event_id"])
        await asyncio.sleep(0.05)
        running.remove(payload["event_id"])

    try:
        await _authors(shop, *(f"a{i}" for i in range(20)))
        await d.run_once()
        one, two = _worker(d, backend, send_welcome), _worker(d, backend, send_welcome)
        one.batch_size = two.batch_size = 7
        while sum(await asyncio.gather(one.run_once(), two.run_once())):
            pass
        assert sorted(seen) == sorted(set(seen)) and len(seen) == 20
        assert one.done + two.done == 20
    finally:
        await d.close()


async def test_job_functions_are_found_in_a_file_and_duplicates_are_refused(
    tmp_path: Path,
) -> None:
    app = tmp_path / "jobs.py"
    app.write_text(
        "from quiver.observers.jobs import job\n"
        "@job('a')\nasync def first(p): pass\n"
        "@job()\ndef second(p): pass\n"
    )
    assert sorted(jobs_in(app)) == ["a", "second"]
    app.write_text(
        "from quiver.observers.jobs import job\n"
        "@job('a')\ndef x(p): pass\n@job('a')\ndef y(p): pass\n"
    )
    with pytest.raises(Exception, match="two job functions named 'a'"):
        jobs_in(app)


async def test_an_unknown_field_in_the_payload_template_is_reported(shop: Shop) -> None:
    with pytest.raises(Exception, match=r"actions\[0\].payload: the entity has no field 'nme'"):
        await open_dispatcher(shop.settings([_observer(payload='{"n": {{ after.nme | json }}}')]))


def _commands_skipped(shop: Shop, backend: QueueBackend) -> None:
    """The commands run on SQLite with the table, and on SQLite and PostgreSQL with Redis."""
    if shop.dialect == "mysql" or (backend.kind == "table" and shop.dialect != "sqlite"):
        pytest.skip("the commands are shared; the dialects are covered above")


def _config(tmp_path: Path, shop: Shop, backend: QueueBackend) -> Path:
    """quiver.yaml of one observer whose job action enqueues into ``backend``."""
    cfg = tmp_path / "quiver.yaml"
    doc = {"database": {"url": shop.url}, "observers": [_observer(backend, payload=PAYLOAD)]}
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


async def test_quiver_jobs_work_and_list(shop: Shop, backend: QueueBackend, tmp_path: Path) -> None:
    _commands_skipped(shop, backend)
    out_file = tmp_path / "ran.txt"
    app = tmp_path / "jobs.py"
    app.write_text(
        "from quiver.observers.jobs import job\n"
        "@job('send_welcome')\n"
        "async def send_welcome(payload):\n"
        f"    with open({str(out_file)!r}, 'a') as f:\n"
        "        f.write(payload['name'] + '\\n')\n"
    )
    cfg = _config(tmp_path, shop, backend)
    await _authors(shop, "ann", "bob")
    code, _, err = await quiver("observers", "run", "--once", "-c", str(cfg))
    assert code == 0, err
    code, out, err = await quiver("jobs", "list", "-c", str(cfg))
    assert code == 0 and "2 jobs" in err and out.count("\tqueued\t") == 2, out
    code, out, err = await quiver("jobs", "work", "--once", "--app", str(app), "-c", str(cfg))
    assert code == 0 and "2 done, 0 due again later, 0 dead-lettered" in out, err
    assert sorted(out_file.read_text().split()) == ["ann", "bob"]
    code, out, _ = await quiver("jobs", "list", "--status", "done", "-c", str(cfg))
    assert out.count("\tdone\t") == 2
    code, _, err = await quiver("jobs", "list", "--status", "finished", "-c", str(cfg))
    assert code == 1 and "use one of queued, running, done, dead" in err


async def test_a_job_of_a_killed_worker_runs_again_once_its_lease_expired(
    shop: Shop, backend: QueueBackend, tmp_path: Path
) -> None:
    _commands_skipped(shop, backend)
    started = tmp_path / "started.txt"
    app = tmp_path / "jobs.py"
    app.write_text(
        "import time\n"
        "from quiver.observers.jobs import job\n"
        "@job('send_welcome')\n"
        "def send_welcome(payload):\n"
        f"    with open({str(started)!r}, 'a') as f:\n"
        "        f.write(payload['key'] + '\\n')\n"
        f"    if len(open({str(started)!r}).read().split()) == 1:\n"
        "        time.sleep(3600)  # the first run hangs until its worker is killed\n"
    )
    cfg = _config(tmp_path, shop, backend)
    await _authors(shop, "ann")
    code, _, err = await quiver("observers", "run", "--once", "-c", str(cfg))
    assert code == 0, err
    proc = await asyncio.create_subprocess_exec(
        QUIVER, "jobs", "work", "--app", str(app), "-c", str(cfg), "--lease", "6",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(600):
        if started.exists() and started.read_text():
            break
        await asyncio.sleep(0.05)
    expired = time.monotonic() + 6.2  # the lease began before the job did
    proc.send_signal(signal.SIGKILL)  # the job is running; done is never written
    assert await proc.wait() == -signal.SIGKILL
    code, out, _ = await quiver("jobs", "list", "-c", str(cfg))
    assert out.count("\trunning\t1 attempts\t") == 1, out
    code, out, err = await quiver("jobs", "work", "--once", "--app", str(app), "-c", str(cfg))
    assert code == 0 and "0 done" in out, err  # the lease holds: nobody takes it over
    await asyncio.sleep(expired - time.monotonic())
    code, out, err = await quiver("jobs", "work", "--once", "--app", str(app), "-c", str(cfg))
    assert code == 0 and "1 done, 0 due again later, 0 dead-lettered" in out, err
    first, again = started.read_text().split()
    assert first == again  # the same job, with the action's idempotency key
    code, out, _ = await quiver("jobs", "list", "--status", "done", "-c", str(cfg))
    assert out.count("\tdone\t2 attempts\t") == 1, out


async def test_a_bad_or_unreachable_redis_is_one_line_naming_it(shop: Shop, tmp_path: Path) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("the checks do not depend on the database")
    app = tmp_path / "jobs.py"
    app.write_text("from quiver.observers.jobs import job\n@job('send_welcome')\ndef f(p): pass\n")
    cfg = tmp_path / "quiver.yaml"

    def config(**action: Any) -> str:
        doc = {"database": {"url": shop.url}, "observers": [_observer(**action)]}
        cfg.write_text(yaml.safe_dump(doc))
        return str(cfg)

    code, _, err = await quiver("observers", "check", "-c", config(queue="http://cache:6379"))
    assert code == 1 and "Traceback" not in err, err
    assert "observers[0] (welcome).actions[0].queue: 'http://cache:6379' is no Redis URL" in err
    assert "quiver.yaml:" in err and "write redis://" in err
    code, _, err = await quiver(
        "observers", "check", "-c", config(queue="redis://:s3cret@cache:6379/zero")
    )
    assert code == 1 and "database 'zero' is no number" in err and "s3cret" not in err, err
    code, _, err = await quiver("observers", "check", "-c", config(key_prefix="jobs"))
    assert code == 1 and "actions[0].key_prefix: key_prefix names the keys of a Redis" in err
    code, _, err = await quiver("observers", "check", "-c", config(queue_url="redis://x"))
    assert code == 1 and "actions[0].queue_url: Extra inputs are not permitted" in err, err
    # Redis that does not answer: the dispatcher and the worker stop with one line.
    down = "redis://:s3cret@127.0.0.1:1/0"
    code, _, err = await quiver("observers", "run", "--once", "-c", config(queue=down))
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in err and "s3cret" not in err
    assert "observer welcome, action enqueue: queue" in err
    code, _, err = await quiver(
        "jobs", "work", "--once", "--app", str(app), "-c", config(), "--queue", down
    )
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--queue: cannot reach Redis at redis://:***@127.0.0.1:1/0" in err
    code, _, err = await quiver("jobs", "list", "-c", config(), "--queue", "redis:/nohost")
    assert code == 1 and "--queue: 'redis:/nohost' names no host" in err, err
    code, _, err = await quiver("jobs", "list", "-c", config(queue=down))
    assert code == 1 and "the job actions' queue of table 'quiver_jobs'" in err, err


async def test_two_worker_processes_run_each_job_once(
    shop: Shop, backend: QueueBackend, tmp_path: Path
) -> None:
    _commands_skipped(shop, backend)
    ran = tmp_path / "ran.txt"
    app = tmp_path / "jobs.py"
    app.write_text(
        "import asyncio, os\n"
        "from quiver.observers.jobs import job\n"
        "@job('send_welcome')\n"
        "async def send_welcome(payload):\n"
        "    await asyncio.sleep(0.02)\n"
        f"    with open({str(ran)!r}, 'a') as f:\n"
        "        f.write(f\"{payload['key']} {os.getpid()}\\n\")\n"
    )
    cfg = _config(tmp_path, shop, backend)
    await _authors(shop, *(f"a{i}" for i in range(120)))
    code, _, err = await quiver("observers", "run", "--once", "-c", str(cfg))
    assert code == 0, err
    # 120 jobs, claimed 50 at a time: both processes claim batches while the other runs its.
    work = ("jobs", "work", "--once", "--app", str(app), "-c", str(cfg), "--concurrency", "2")
    (one, out1, err1), (two, out2, err2) = await asyncio.gather(quiver(*work), quiver(*work))
    assert one == two == 0, err1 + err2
    lines = ran.read_text().split("\n")[:-1]
    keys = [line.split()[0] for line in lines]
    assert len(keys) == 120 and len(set(keys)) == 120
    done = [int(out.split(" done")[0]) for out in (out1, out2)]
    assert sum(done) == 120, (out1, out2)
