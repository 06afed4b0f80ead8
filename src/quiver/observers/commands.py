"""CLI commands of this package: ``quiver observers run|check`` and ``quiver dlq ...``.

Only typer is imported at module level; everything else inside the command bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quiver.schema.commands import Debug, fail, failures_reported

if TYPE_CHECKING:
    from collections.abc import Callable

    from quiver.config.settings import QuiverSettings
    from quiver.observers.dispatcher import Dispatcher
    from quiver.observers.jobqueue import JobQueue
    from quiver.observers.store import DispatchStore
    from quiver.schema.ir import Schema

__all__ = ["register", "start_beside_http"]

observers_app = typer.Typer(
    name="observers", help="Run actions on committed changes.", no_args_is_help=True
)
dlq_app = typer.Typer(
    name="dlq",
    help="Deliveries that failed for good: list, show, retry, purge.",
    no_args_is_help=True,
)
jobs_app = typer.Typer(
    name="jobs",
    help="Jobs enqueued by the `job` action: run them, list them.",
    no_args_is_help=True,
)

Config = Annotated[
    Path | None, typer.Option("--config", "-c", help="quiver.yaml (default: ./quiver.yaml).")
]
Db = Annotated[str | None, typer.Option("--db", metavar="URL", help="Database URL.")]
App = Annotated[
    Path | None,
    typer.Option("--app", help="Python file whose @quiver.observer functions run too."),
]


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``quiver`` app."""
    app.add_typer(observers_app)
    app.add_typer(dlq_app)
    app.add_typer(jobs_app)


def start_beside_http(schema: Schema, settings: QuiverSettings) -> Callable[[], None]:
    """With ``dispatcher.in_process`` and observers configured, dispatch in a thread of the
    serving process; returns what stops it (after the scan under way)."""
    if not (settings.dispatcher.in_process and settings.observers):
        return lambda: None
    import logging
    import threading

    from quiver.observers.service import open_dispatcher
    from quiver.runtime.metrics import expose

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    opened: list[BaseException | None] = []
    ready = threading.Event()

    async def main() -> None:
        try:
            dispatcher = await open_dispatcher(settings, schema=schema)
        except BaseException as exc:  # reported by the serving thread
            opened.append(exc)
            ready.set()
            return
        withdraw = expose(dispatcher.metrics.registry)  # on the server's /metrics
        opened.append(None)
        ready.set()
        try:
            await dispatcher.run(stop)
        except Exception:
            logging.getLogger("quiver.observers").exception("the dispatcher stopped")
        finally:
            withdraw()
            await dispatcher.close()

    def work() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=work, name="quiver-observers", daemon=True)
    thread.start()
    ready.wait()
    if opened[0] is not None:
        raise opened[0]
    typer.echo(f"Observers: {len(settings.observers)} dispatched in this process")

    def halt() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)

    return halt


def _settings(config: Path | None, db: str | None) -> QuiverSettings:
    from quiver.config.loader import load_settings

    return load_settings(config, {"database.url": db} if db else None)


def _declared(app_file: Path | None) -> list[Any]:
    if app_file is None:
        return []
    from quiver.observers.authoring import declared_in

    return list(declared_in(app_file))


async def _open(config: Path | None, db: str | None, app_file: Path | None) -> Dispatcher:
    from quiver.config.loader import setting_locator
    from quiver.observers.service import open_dispatcher

    settings = _settings(config, db)
    return await open_dispatcher(settings, _declared(app_file), locate=setting_locator(config))


@observers_app.command("check")
def check_command(
    config: Config = None, db: Db = None, app_file: App = None, debug: Debug = False
) -> None:
    """Check every observer against the entities it watches; print them."""
    from quiver.config.loader import setting_locator
    from quiver.observers.service import check_observers, load_schema

    with failures_reported(debug):
        settings = _settings(config, db)
        schema = asyncio.run(load_schema(settings))
        observers = check_observers(settings, schema, _declared(app_file), setting_locator(config))
    for o in observers:
        ops = ", ".join(sorted(o.on))
        actions = ", ".join(a.name for a in o.actions)
        when = f" when {o.condition.text}" if o.condition.text else ""
        typer.echo(f"{o.name}: {o.entity} on {ops}{when} -> {actions}")
    typer.echo("ok")


@observers_app.command("run")
def run_command(
    config: Config = None,
    db: Db = None,
    app_file: App = None,
    once: Annotated[
        bool, typer.Option("--once", help="Dispatch what is pending, then stop.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve the dispatcher's Prometheus metrics at http://HOST:PORT/metrics.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address the metrics server binds.")
    ] = "127.0.0.1",
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            min=0.1,
            help="Seconds a claim on a batch of events lasts (renewed while delivering);"
            " events of a dispatcher that died are taken over once it expires.",
        ),
    ] = 30.0,
    lanes: Annotated[
        int,
        typer.Option(
            "--lanes",
            min=1,
            max=64,
            help="Batches delivered at once, each claimed on its own (1 with dispatcher.ordered).",
        ),
    ] = 2,
    debug: Debug = False,
) -> None:
    """Read the change log and run the matching observers' actions until stopped.

    Several dispatchers may run against one database: each claims the batch it delivers."""
    from quiver.config.loader import setting_locator
    from quiver.observers.service import open_dispatcher
    from quiver.runtime.logs import configure_logging

    async def main() -> None:
        settings = _settings(config, db)
        configure_logging(settings.log.format, settings.log.level)
        dispatcher = await open_dispatcher(
            settings, _declared(app_file), locate=setting_locator(config), lease=lease, lanes=lanes
        )
        stops: list[Callable[[], None]] = []
        try:
            if metrics_port is not None:
                stops.append(_serve_metrics(dispatcher, metrics_host, metrics_port))
            if once:
                while await dispatcher.run_once() >= dispatcher.settings.batch_size:
                    pass
            else:
                await dispatcher.run()
        finally:
            for stop in stops:
                stop()
            await dispatcher.close()

    with failures_reported(debug), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _serve_metrics(dispatcher: Dispatcher, host: str, port: int) -> Callable[[], None]:
    """Serve the dispatcher's metrics on ``host:port`` from a thread; returns what stops it."""
    from prometheus_client import start_http_server

    from quiver.runtime.errors import ConfigError
    from quiver.runtime.listen import problem_of

    try:
        server, thread = start_http_server(port, host, registry=dispatcher.metrics.registry)
    except OSError as exc:
        problem = problem_of(exc, host, port)
        raise ConfigError.one(
            f"cannot serve metrics on {host}:{port}: {problem.reason}",
            "--metrics-port",
            problem.fix,
        ) from None
    bound = server.server_address[1]
    typer.echo(f"Metrics: http://{host}:{bound}/metrics")

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def _with_dispatcher(
    config: Path | None, db: str | None, app_file: Path | None, work: Any, debug: bool
) -> Any:
    async def main() -> Any:
        dispatcher = await _open(config, db, app_file)
        try:
            return await work(dispatcher)
        finally:
            await dispatcher.close()

    with failures_reported(debug):
        return asyncio.run(main())


def _with_store(config: Path | None, db: str | None, work: Any, debug: bool) -> Any:
    from quiver.observers.service import open_store

    async def main() -> Any:
        store = await open_store(_settings(config, db))
        try:
            return await work(store)
        finally:
            await store.db.close()

    with failures_reported(debug):
        return asyncio.run(main())


@dlq_app.command("list")
def list_command(
    config: Config = None,
    db: Db = None,
    limit: Annotated[int, typer.Option("--limit", help="Most rows shown.")] = 100,
    debug: Debug = False,
) -> None:
    """One line per dead letter: id, event, observer.action, attempts, error."""

    async def work(store: DispatchStore) -> None:
        rows = await store.dead_letters(limit)
        for r in rows:
            typer.echo(
                f"{r.id}\tevent {r.event_id}\t{r.observer}.{r.action}\t"
                f"{r.attempts} attempts\t{r.failed_at}\t{r.error[:120]}"
            )
        typer.echo(f"{len(rows)} dead letter{'s' if len(rows) != 1 else ''}", err=True)

    _with_store(config, db, work, debug)


@dlq_app.command("show")
def show_command(
    dead_id: Annotated[int, typer.Argument(help="Id of the dead letter (quiver dlq list).")],
    config: Config = None,
    db: Db = None,
    debug: Debug = False,
) -> None:
    """Everything about one dead letter, its payload included, as JSON."""
    import orjson

    from quiver.sql.changelog import json_text

    async def work(store: DispatchStore) -> None:
        row = await store.dead_letter_by_id(dead_id)
        if row is None:
            raise fail(f"no dead letter {dead_id}; see quiver dlq list")
        doc = {
            "id": row.id,
            "event_id": row.event_id,
            "observer": row.observer,
            "action": row.action,
            "idempotency_key": row.idempotency_key,
            "attempts": row.attempts,
            "failed_at": row.failed_at,
            "error": row.error,
            "payload": row.payload,
        }
        typer.echo(json_text(doc, option=orjson.OPT_INDENT_2).decode())

    _with_store(config, db, work, debug)


@dlq_app.command("retry")
def retry_command(
    dead_id: Annotated[
        int | None, typer.Argument(help="Id of the dead letter; omit with --all.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
    config: Config = None,
    db: Db = None,
    app_file: App = None,
    debug: Debug = False,
) -> None:
    """Deliver dead letters again (same idempotency key); delivered ones leave the DLQ."""
    if (dead_id is None) == (not every):
        raise fail("give the id of one dead letter, or --all")

    async def work(d: Dispatcher) -> int:
        if every:
            rows = await d.store.dead_letters(1_000_000)
        else:
            row = await d.store.dead_letter_by_id(dead_id or 0)
            if row is None:
                raise fail(f"no dead letter {dead_id}; see quiver dlq list")
            rows = [row]
        failed = 0
        for row in rows:
            try:
                await d.redeliver(row)
                typer.echo(f"{row.id}: delivered")
            except Exception as exc:
                failed += 1
                typer.echo(f"{row.id}: failed again: {exc}", err=True)
        return failed

    failed = _with_dispatcher(config, db, app_file, work, debug)
    if failed:
        raise typer.Exit(1)


@dlq_app.command("purge")
def purge_command(
    dead_id: Annotated[
        int | None, typer.Argument(help="Id of the dead letter; omit with --all.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Purge every dead letter.")] = False,
    config: Config = None,
    db: Db = None,
    debug: Debug = False,
) -> None:
    """Delete dead letters for good; they are never delivered."""
    if (dead_id is None) == (not every):
        raise fail("give the id of one dead letter, or --all")

    async def work(store: DispatchStore) -> None:
        count = await store.purge(None if every else dead_id)
        typer.echo(f"purged {count} dead letter{'s' if count != 1 else ''}")

    _with_store(config, db, work, debug)


@observers_app.command("install-triggers")
def install_triggers_command(
    config: Config = None,
    db: Db = None,
    entity: Annotated[
        list[str] | None,
        typer.Option("--entity", help="Only this entity's table (repeatable; default: all)."),
    ] = None,
    drop: Annotated[bool, typer.Option("--drop", help="Remove the triggers instead.")] = False,
    debug: Debug = False,
) -> None:
    """Create change-log triggers so writes made outside Quiver are observed too."""
    with failures_reported(debug):
        done = asyncio.run(_install_triggers(_settings(config, db), entity or [], drop))
    verb = "Dropped" if drop else "Installed"
    typer.echo(f"{verb} change-log triggers on {len(done)} tables: {', '.join(done)}")


async def _install_triggers(settings: QuiverSettings, names: list[str], drop: bool) -> list[str]:
    from quiver.observers.service import load_schema
    from quiver.observers.triggers import install_triggers
    from quiver.runtime.errors import ConfigError
    from quiver.sql.changelog import writers_table
    from quiver.sql.database import open_database

    schema = await load_schema(settings)
    log, d = settings.mutations.change_log_table, settings.dispatcher
    # Quiver's own tables: a trigger on the change log would log its own inserts.
    own = {log, writers_table(log), d.ledger_table, d.dead_letter_table}
    known = {e.name: e for e in schema.entities if e.source not in own}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError.one(
            f"no entity named {', '.join(unknown)}",
            "--entity",
            f"use one of: {', '.join(sorted(known))}",
        )
    entities = [known[n] for n in names] if names else list(known.values())
    database = await open_database(str(settings.database.url), pool_min=1, pool_max=1)
    try:
        return await install_triggers(
            database, entities, settings.mutations.change_log_table, drop=drop
        )
    finally:
        await database.close()


Table = Annotated[
    str,
    typer.Option(
        "--table", help="The queue's table (the job action's `table`; in Redis, its name)."
    ),
]
QueueUrl = Annotated[
    str | None,
    typer.Option(
        "--queue",
        metavar="URL",
        help="Redis URL of the queue (redis://host:6379/0); default: the one the config's job"
        " actions of --table name, else the database table.",
    ),
]
KeyPrefix = Annotated[
    str | None,
    typer.Option(
        "--key-prefix", help="Redis: the first part of the queue's keys (quiver:jobs:<table>)."
    ),
]


def _job_queue(
    settings: QuiverSettings,
    store: DispatchStore,
    table: str,
    url: str | None,
    key_prefix: str | None,
) -> JobQueue:
    """The queue of ``quiver jobs``: ``--queue``, else the config's, else the table."""
    from quiver.observers.service import configured_job_queue, open_job_queue

    where = "--queue"
    if url is None:
        configured = configured_job_queue(settings, table)
        if configured is not None:
            url, key_prefix = configured[0], key_prefix or configured[1]
            where = f"the job actions' queue of table {table!r}"
    return open_job_queue(store, table, url, key_prefix, where)


async def _close_queue(queue: JobQueue) -> None:
    """Close a Redis queue's client (a table's queue closes with the store's database)."""
    from quiver.observers.redisqueue import RedisJobQueue

    if isinstance(queue, RedisJobQueue):
        await queue.close()


def _described(queue: JobQueue) -> str:
    """Where ``quiver jobs work`` takes its jobs from, for its first line."""
    from quiver.observers.jobqueue import SqlJobQueue
    from quiver.observers.redisqueue import RedisJobQueue, redact_redis_url

    if isinstance(queue, RedisJobQueue):
        return f"{redact_redis_url(queue.url)} {queue.prefix}"
    return queue.table_name if isinstance(queue, SqlJobQueue) else type(queue).__name__


@jobs_app.command("work")
def work_command(
    app_file: Annotated[
        Path, typer.Option("--app", help="Python file whose @job functions this worker runs.")
    ],
    config: Config = None,
    db: Db = None,
    table: Table = "quiver_jobs",
    queue_url: QueueUrl = None,
    key_prefix: KeyPrefix = None,
    once: Annotated[bool, typer.Option("--once", help="Run what is due, then stop.")] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Most jobs run at once.")
    ] = 8,
    lease: Annotated[
        float,
        typer.Option(
            "--lease",
            min=0.1,
            help="Seconds a claimed job is held; a job still running after it (its worker"
            " died) is run again by any worker.",
        ),
    ] = 300.0,
    debug: Debug = False,
) -> None:
    """Run the due jobs of this file's functions, with retries, until stopped."""
    from quiver.observers.jobs import JobWorker, jobs_in
    from quiver.observers.service import open_store
    from quiver.runtime.logs import configure_logging

    async def main() -> None:
        settings = _settings(config, db)
        configure_logging(settings.log.format, settings.log.level)
        functions = jobs_in(app_file)
        store = await open_store(settings)
        queue = None
        try:
            queue = _job_queue(settings, store, table, queue_url, key_prefix)
            await queue.ensure()
            d = settings.dispatcher
            worker = JobWorker(
                queue, store, functions, d.retry, concurrency=concurrency,
                lease=lease, poll_interval=d.poll_interval,
            )  # fmt: skip
            if once:
                while await worker.run_once():
                    pass
                typer.echo(
                    f"{worker.done} done, {worker.retried} due again later,"
                    f" {worker.dead} dead-lettered"
                )
            else:
                typer.echo(f"Jobs: {', '.join(sorted(functions))} from {_described(queue)}")
                await worker.run()
        finally:
            if queue is not None:
                await _close_queue(queue)
            await store.db.close()

    with failures_reported(debug), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@jobs_app.command("list")
def jobs_list_command(
    config: Config = None,
    db: Db = None,
    table: Table = "quiver_jobs",
    queue_url: QueueUrl = None,
    key_prefix: KeyPrefix = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only jobs in this state: queued, running, done, dead."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Most rows shown.")] = 100,
    debug: Debug = False,
) -> None:
    """One line per job: id, name, status, attempts, idempotency key, last error."""
    from quiver.observers.jobqueue import STATUSES

    if status is not None and status not in STATUSES:
        raise fail(f"--status {status!r}: use one of {', '.join(STATUSES)}")

    async def work(store: DispatchStore) -> None:
        queue = _job_queue(_settings(config, db), store, table, queue_url, key_prefix)
        try:
            await queue.ensure()
            rows = await queue.jobs(status, limit)
        finally:
            await _close_queue(queue)
        for r in rows:
            typer.echo(
                f"{r.id}\t{r.name}\t{r.status}\t{r.attempts} attempts\t{r.idempotency_key}"
                f"\t{(r.last_error or '')[:120]}"
            )
        typer.echo(f"{len(rows)} job{'s' if len(rows) != 1 else ''}", err=True)

    _with_store(config, db, work, debug)
