"""CLI commands of this package: ``quiver ingest dlq list|show|replay|purge``.

The dead-letter queue of a pipeline (its ``dlq:`` section) holds the batches a sink refused
for good; these commands read the pipeline file to find it and its sinks. Only typer is
imported at module level; everything else inside the command bodies.

Exit codes: 0 done; 1 an entry failed again, or the queue or an entry is missing; 2 the
pipeline file or an option (``--sink``, ``--variable``) is invalid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from quiver.pipeline.dead_letters import DeadLetterEntry, DeadLetterQueue
    from quiver.pipeline.plan import PipelinePlan

__all__ = ["register"]

EXIT_FAILED = 1
EXIT_INVALID = 2

ingest_app = typer.Typer(
    name="ingest", help="Ingestion pipelines: their dead-letter queues.", no_args_is_help=True
)
dlq_app = typer.Typer(
    name="dlq",
    help="Batches a pipeline's sink refused for good: list, show, replay, purge.",
    no_args_is_help=True,
)
ingest_app.add_typer(dlq_app)

Pipeline = Annotated[str, typer.Argument(help="Pipeline YAML file (its `dlq:` section).")]
Variables = Annotated[
    list[str] | None,
    typer.Option("--variable", "-v", help="Set ${KEY} in the pipeline: KEY=VALUE (repeatable)."),
]
Ids = Annotated[
    list[str] | None,
    typer.Argument(help="Entry ids (quiver ingest dlq list); omit with --all.", show_default=False),
]
Every = Annotated[bool, typer.Option("--all", help="Every entry of the queue.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")]


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``quiver`` app."""
    app.add_typer(ingest_app)


@dlq_app.command("list")
def list_command(
    pipeline: Pipeline,
    variable: Variables = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    debug: Debug = False,
) -> None:
    """One line per entry, oldest first: id, sink, rows, attempts, first failure, error."""
    import orjson

    with _reported(debug):
        _, queue = _open(pipeline, variable)
        entries = queue.entries()
        for e in entries:
            if as_json:
                typer.echo(orjson.dumps(e.to_json()).decode())
            else:
                message = " ".join(e.message.split())
                typer.echo(
                    f"{e.id}\t{e.sink}\t{e.rows} rows\t{e.attempts} attempts\t"
                    f"{e.first_failure}\t{e.error_class}: {message[:160]}"
                )
        _, size = queue.size()
        typer.echo(
            f"{_entries(len(entries))}, {size:,} bytes in {queue.path}",
            err=True,
        )


@dlq_app.command("show")
def show_command(
    pipeline: Pipeline,
    entry_id: Annotated[str, typer.Argument(help="Id of the entry (quiver ingest dlq list).")],
    rows: Annotated[int, typer.Option("--rows", min=0, help="Rows shown.")] = 10,
    variable: Variables = None,
    debug: Debug = False,
) -> None:
    """Everything about one entry as JSON: its record, columns and first rows."""
    from quiver.pipeline.rejects import json_text

    with _reported(debug):
        _, queue = _open(pipeline, variable)
        entry = _entry(queue, entry_id, pipeline)
        try:
            table = queue.read(entry.id)
        except KeyError:
            raise _missing(queue, entry_id, pipeline) from None
        doc = entry.to_json()
        doc["columns"] = {f.name: str(f.type) for f in table.schema}
        doc["rows_shown"] = table.slice(0, rows).to_pylist()
        typer.echo(json_text(doc, indent=True))  # values JSON cannot hold escaped


@dlq_app.command("replay")
def replay_command(
    pipeline: Pipeline,
    ids: Ids = None,
    every: Every = False,
    sink: Annotated[
        str | None,
        typer.Option(
            "--sink",
            help="Deliver to this sink of the pipeline (default: the one that refused each entry).",
        ),
    ] = None,
    variable: Variables = None,
    debug: Debug = False,
) -> None:
    """Deliver entries to their sink again, under the pipeline's retry rules.

    An entry leaves the queue once the sink committed it; one that fails again stays, its
    attempts counted, and the command exits 1."""
    import asyncio

    from quiver.pipeline.redelivery import ReplayOutcome, replay_entries

    def show(o: ReplayOutcome) -> None:
        if o.delivered:
            typer.echo(f"{o.entry_id}: {o.rows} rows delivered to '{o.sink}'")
        else:
            typer.echo(f"{o.entry_id}: failed again ({o.sink}): {o.error}", err=True)

    with _reported(debug):
        plan, queue = _open(pipeline, variable)
        entries = _chosen(queue, ids, every, pipeline)
        outcomes = asyncio.run(
            replay_entries(plan, queue, entries, sink=sink, log=_log, on_outcome=show)
        )
    failed = sum(not o.delivered for o in outcomes)
    typer.echo(f"{len(outcomes) - failed} delivered, {failed} failed", err=True)
    if failed:
        raise typer.Exit(EXIT_FAILED)


@dlq_app.command("purge")
def purge_command(
    pipeline: Pipeline,
    ids: Ids = None,
    every: Every = False,
    variable: Variables = None,
    debug: Debug = False,
) -> None:
    """Delete entries for good; their rows are never delivered."""
    with _reported(debug):
        _, queue = _open(pipeline, variable)
        _check_choice(ids, every, pipeline)
        present = queue.ids()
        # by id only, so that a damaged record can be purged too
        chosen = present if every else [_full_id(queue, i, pipeline, present) for i in ids or []]
        chosen = list(dict.fromkeys(chosen))
        count = sum(queue.remove(i) for i in chosen)
        queue.refresh()
    typer.echo(f"purged {_entries(count)}")


# ----------------------------------------------------------------------------- helpers


class _CommandError(Exception):
    """One clear error line for the user; the exit code goes with it."""

    def __init__(self, message: str, fix: str = "", code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.fix = fix
        self.code = code


@contextlib.contextmanager
def _reported(debug: bool) -> Iterator[None]:
    """Quiver's errors as ``error:`` lines with their fix; exit 2 for an invalid pipeline."""
    from quiver.runtime.errors import ConfigError, QuiverError

    try:
        yield
    except _CommandError as exc:
        _error(str(exc), exc.fix)
        raise typer.Exit(exc.code) from None
    except QuiverError as exc:
        if debug:
            raise
        for d in exc.details:
            _error(f"{d.where}: {d.message}" if d.where else d.message, d.fix)
        raise typer.Exit(EXIT_INVALID if isinstance(exc, ConfigError) else EXIT_FAILED) from None
    except OSError as exc:
        if debug:
            raise
        _error(f"{exc.filename or 'the dead-letter queue'}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_FAILED) from None


def _error(message: str, fix: str = "") -> None:
    typer.echo(f"error: {message}", err=True)
    if fix:
        typer.echo(f"  fix: {fix}", err=True)


def _log(message: str, level: str) -> None:
    if level in ("warning", "error"):
        typer.echo(f"{level}: {message}", err=True)


def _open(file: str, variables: list[str] | None) -> tuple[PipelinePlan, DeadLetterQueue]:
    """The pipeline's plan and its dead-letter queue, which must exist."""
    from quiver.pipeline.commands import parse_variables
    from quiver.pipeline.config import load_pipeline
    from quiver.pipeline.planner import compile_plan
    from quiver.pipeline.redelivery import queue_of

    plan = compile_plan(load_pipeline(file, parse_variables(variables or [])))
    queue = queue_of(plan, _log)
    if not queue.exists():
        raise _CommandError(
            f"no dead-letter queue at {queue.path} (dlq.path of {file})",
            "check dlq.path; the directory is created by the first `quiver run` of the pipeline",
        )
    return plan, queue


def _chosen(
    queue: DeadLetterQueue, ids: list[str] | None, every: bool, file: str
) -> list[DeadLetterEntry]:
    _check_choice(ids, every, file)
    if every:
        return queue.entries()
    entries = [_entry(queue, i, file) for i in ids or []]
    return list({e.id: e for e in entries}.values())


def _check_choice(ids: list[str] | None, every: bool, file: str) -> None:
    if bool(ids) == every:
        raise _CommandError(
            "give the ids of entries, or --all",
            f"see the ids with: quiver ingest dlq list {file}",
        )


def _entry(queue: DeadLetterQueue, entry_id: str, file: str) -> DeadLetterEntry:
    full = _full_id(queue, entry_id, file, queue.ids())
    try:
        return queue.get(full)
    except KeyError:
        raise _missing(queue, entry_id, file) from None


def _full_id(queue: DeadLetterQueue, given: str, file: str, present: list[str]) -> str:
    """The id ``given`` names: itself, or the one id ending with it (``3f9a1c``)."""
    if given in present:
        return given
    matches = [i for i in present if given and i.endswith(given)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise _CommandError(
            f"{given!r} names {len(matches)} entries of the dead-letter queue {queue.path}: "
            + ", ".join(matches[:5]),
            "give the whole id",
        )
    raise _missing(queue, given, file)


def _missing(queue: DeadLetterQueue, entry_id: str, file: str) -> _CommandError:
    return _CommandError(
        f"no entry {entry_id!r} in the dead-letter queue {queue.path}",
        f"see the ids with: quiver ingest dlq list {file}",
    )


def _entries(n: int) -> str:
    return f"{n} entr{'ies' if n != 1 else 'y'}"
