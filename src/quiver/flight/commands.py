"""CLI of the Flight server: ``quiver flight`` runs it alone; :func:`start_beside_http` starts
it beside HTTP for ``quiver serve`` and ``quiver demo``.

Only typer is imported at module level, so ``quiver --help`` stays fast.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from quiver.graphql.commands import (
    Config,
    Db,
    Debug,
    LogFormat,
    SchemaFile,
    Sets,
    _check_permissions,
    _fail,
    _log_format,
    _no_database,
    _schema_for,
    _settings,
)

if TYPE_CHECKING:
    from quiver.config.settings import QuiverSettings
    from quiver.schema.ir import Schema

__all__ = ["register", "start_beside_http"]


def register(app: typer.Typer) -> None:
    """Add ``quiver flight`` to the ``quiver`` app."""
    app.command("flight")(flight_command)


def start_beside_http(schema: Schema, settings: QuiverSettings) -> Callable[[], None]:
    """Start the Flight server unless ``flight.enabled`` is false; returns what stops it.

    A Flight port that is taken does not keep HTTP from serving: it is one warning line with
    the fix (a JSON record with ``log.format: json``), and HTTP starts alone (``quiver flight``
    fails instead).
    """
    if not settings.flight.enabled:
        return lambda: None
    from quiver.flight.server import start_flight_server
    from quiver.runtime.errors import ConfigError

    try:
        handle = start_flight_server(schema, settings)
    except ConfigError as err:
        detail = err.details[0]
        message = (
            f"Arrow Flight not started: {detail.message} ({detail.fix}; "
            "flight.enabled: false turns it off)"
        )
        if settings.log.format == "json":  # every line on stderr is then one JSON record
            import logging

            from quiver.runtime.logs import configure_logging

            configure_logging(settings.log.format, settings.log.level)
            logging.getLogger("quiver.flight").warning(message)
        else:
            typer.echo(f"warning: {message}", err=True)
        return lambda: None
    if settings.log.format == "text":  # JSON logs have the server's own record of it
        typer.echo(f"Arrow Flight at {handle.location}")
    return handle.stop


def flight_command(
    config: Config = None,
    db: Db = None,
    schema_file: SchemaFile = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (flight.host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (flight.port, 8815).")
    ] = None,
    sets: Sets = None,
    log_format: LogFormat = None,
    debug: Debug = False,
) -> None:
    """Serve the Arrow Flight server alone (no HTTP): tables and GraphQL results as Arrow."""
    import asyncio

    settings: QuiverSettings | None = None
    try:
        settings = _settings(
            config,
            db,
            sets,
            **{
                "schema_file": schema_file,
                "flight.host": host,
                "flight.port": port,
                "log.format": log_format,
                "log.level": "debug" if debug else None,
            },
        )
        if not settings.database.url:
            raise _no_database()
        schema = asyncio.run(_schema_for(settings, config))
        _check_permissions(settings, schema, config)
        from quiver.flight.server import start_flight_server
        from quiver.runtime.logs import configure_logging

        configure_logging(settings.log.format, settings.log.level)
        handle = start_flight_server(schema, settings)
    except Exception as exc:
        raise _fail(exc, debug, _log_format(log_format, settings)) from None
    if settings.log.format == "text":  # JSON logs have the server's own record of it
        typer.echo(f"Arrow Flight at {handle.location} (press Ctrl-C to stop)")
    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        handle.stop()
