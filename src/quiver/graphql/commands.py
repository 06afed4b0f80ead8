"""CLI commands of this package: ``quiver demo``, ``quiver serve``, ``quiver check`` and
``quiver schema print``.

Only typer (and the typer-only command module of quiver.schema) is imported at module level, so
``quiver --help`` stays fast; each command imports what it needs when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from quiver.runtime.wording import plural
from quiver.schema import commands as schema_commands

if TYPE_CHECKING:
    from quiver.config.settings import QuiverSettings
    from quiver.schema.ir import Schema

__all__ = ["register"]

EXAMPLE_QUERY = """{
  artists(limit: 3, orderBy: {name: ASC}) {
    name
    albums { title }
  }
}"""


schema_app = typer.Typer(
    name="schema",
    help="Inspect the GraphQL schema an app or a database produces.",
    no_args_is_help=True,
)


#: Starts a server that runs beside HTTP for ``quiver serve`` and ``quiver demo`` (the Flight
#: server); returns what stops it. Given by the command line, which sits above both.
Companion = Callable[["Schema", "QuiverSettings"], Callable[[], None]]
_companions: list[Companion] = []


def register(app: typer.Typer, companions: Sequence[Companion] = ()) -> None:
    """Add this package's commands to the ``quiver`` app; ``companions`` start beside HTTP."""
    _companions[:] = list(companions)
    app.command("demo")(demo_command)
    app.command("serve")(serve_command)
    app.command("check")(check_command)
    app.add_typer(schema_app, name="schema")


Host = Annotated[str | None, typer.Option("--host", help="Address to bind (server.host).")]
Port = Annotated[int | None, typer.Option("--port", help="Port to listen on (server.port).")]
Config = Annotated[
    str | None,
    typer.Option("--config", "-c", help="Settings file (default: quiver.yaml here, when present)."),
]
Db = Annotated[
    str | None,
    typer.Option("--db", metavar="URL", help="Database URL (overrides database.url)."),
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a setting, e.g. --set graphql.max_depth=8."
    ),
]
Debug = Annotated[bool, typer.Option("--debug", help="Show the traceback of errors.")]
SchemaFile = Annotated[
    str | None,
    typer.Option(
        "--schema", metavar="FILE", help="Compiled schema.json to serve instead of reflecting."
    ),
]


def _complete_log_format(incomplete: str) -> list[str]:
    """What shell completion offers after --log-format."""
    return [f for f in ("text", "json") if f.startswith(incomplete)]


LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        metavar="text|json",
        help="Log format (log.format).",
        autocompletion=_complete_log_format,
    ),
]


def _fail(exc: BaseException, debug: bool, log_format: str = "text") -> typer.Exit:
    """Report ``exc`` on stderr as one line per problem (the traceback with --debug).

    With ``log_format`` json each line is a JSON log record (level error, the traceback in
    its ``exception``), as every other line the server writes.
    """
    import traceback

    from quiver.runtime.errors import QuiverError

    if isinstance(exc, QuiverError):
        lines = str(exc).splitlines() or [type(exc).__name__]
    else:
        message = str(exc).splitlines()[0] if str(exc) else ""
        lines = [f"{type(exc).__name__}: {message} (run with --debug for the traceback)"]
    if log_format == "json":
        from quiver.runtime.logs import json_line, timestamp

        for line in lines:
            record: dict[str, Any] = {
                "ts": timestamp(),
                "level": "error",
                "message": line,
                "logger": "quiver",
            }
            if debug:
                record["exception"] = "".join(traceback.format_exception(exc))
            typer.echo(json_line(record), err=True)
        return typer.Exit(1)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    return typer.Exit(1)


def _log_format(flag: str | None, settings: QuiverSettings | None) -> str:
    """The log format of a command's output: the settings' once read, else ``--log-format``,
    else ``QUIVER_LOG_FORMAT`` (for errors found while reading the settings)."""
    import os

    if settings is not None:
        return settings.log.format
    return flag or os.environ.get("QUIVER_LOG_FORMAT", "text").strip()


def _announce(settings: QuiverSettings, text: str, logger: str = "quiver") -> None:
    """Tell the user what started: a line on stdout, or an info record in JSON logs."""
    if settings.log.format == "json":
        import logging

        from quiver.runtime.logs import configure_logging

        configure_logging(settings.log.format, settings.log.level)
        logging.getLogger(logger).info(text)
    else:
        typer.echo(text)


def _settings(
    config: str | None, db: str | None, sets: list[str] | None, **server: Any
) -> QuiverSettings:
    from quiver.config.loader import load_settings, parse_override

    overrides: dict[str, Any] = dict(parse_override(s) for s in sets or ())
    if db is not None:
        overrides["database.url"] = db
    for key, value in server.items():
        if value is not None:
            overrides[key] = value
    return load_settings(config, overrides)


async def _schema_for(settings: QuiverSettings, config: str | None = None) -> Schema:
    """The schema to serve: the compiled file, or the database reflected with the settings'
    names (whose problems are placed in ``config``, default ./quiver.yaml)."""
    from quiver.config.loader import located, setting_locator
    from quiver.runtime.errors import ConfigError

    try:
        return await _schema_of(settings)
    except ConfigError as err:
        if not any(d.where.startswith("names.") for d in err.details):
            raise
        locate = setting_locator(config)
        raise ConfigError(
            [located(d, locate) if d.where.startswith("names.") else d for d in err.details]
        ) from None


async def _schema_of(settings: QuiverSettings) -> Schema:
    from quiver.observers.tables import without_own_tables
    from quiver.schema.reflect import reflect_database

    if settings.schema_file:
        from quiver.schema.ir import load_schema_file

        return without_own_tables(load_schema_file(settings.schema_file), settings)
    if not settings.database.url:
        raise _no_database()
    schema = await reflect_database(
        settings.database.url, schemas=settings.database.schemas or None, names=settings.names
    )
    return without_own_tables(schema, settings)


def _no_database() -> Exception:
    from quiver.runtime.errors import ConfigError

    return ConfigError.one(
        "no database to serve",
        "database.url",
        "pass --db postgresql://user@host/db (or sqlite:///file.db), or set database.url "
        "in quiver.yaml",
    )


def _check_graphql(schema: Schema) -> None:
    from quiver.graphql.typesystem import build_graphql_schema
    from quiver.schema.catalog import build_catalog

    build_graphql_schema(build_catalog(schema))


def _check_permissions(settings: QuiverSettings, schema: Schema, config: str | None) -> None:
    """The permissions of quiver.yaml must name roles, entities, fields and claims that
    exist, with filters that fit their entities."""
    auth = settings.auth
    if auth.permissions is not None or any(k.role for k in auth.api_keys):
        from quiver.config.loader import setting_locator
        from quiver.graphql.access import check_permissions

        check_permissions(settings, schema, setting_locator(config))


def check_compiled_permissions(schema: Schema, config: Path | None, debug: bool) -> None:
    """``quiver compile``'s check of quiver.yaml's auth.permissions (``config``, or
    ./quiver.yaml when present) against the compiled schema: every problem on its own line,
    and exit 1 (nothing written)."""
    from quiver.config.loader import DEFAULT_CONFIG_FILE, load_settings, setting_locator
    from quiver.graphql.access import check_permissions
    from quiver.runtime.errors import ConfigError

    if config is None and not Path(DEFAULT_CONFIG_FILE).is_file():
        return
    with schema_commands.failures_reported(debug):
        settings = load_settings(config)
    try:
        check_permissions(settings, schema, setting_locator(config))
    except ConfigError as err:
        for detail in err.details:
            typer.echo(f"error: {detail.render()}", err=True)
        count = len(err.details)
        typer.echo(f"{count} error{'s' if count != 1 else ''}; nothing written", err=True)
        raise typer.Exit(1) from None


def _check_observers(settings: QuiverSettings, schema: Schema) -> None:
    """The observers of quiver.yaml must name fields their entities have."""
    if settings.observers:
        from quiver.observers.service import check_observers

        check_observers(settings, schema)


def demo_command(
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on [default: 8000].")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind [default: 127.0.0.1].")
    ] = None,
    debug: Debug = False,
) -> None:
    """Serve the Chinook music-store demo database with GraphiQL, no setup needed.

    quiver.yaml is not read; QUIVER_* variables apply (QUIVER_SERVER_PORT, QUIVER_FLIGHT_PORT).
    """
    import asyncio

    try:
        from quiver.config.loader import load_settings
        from quiver.demo.chinook import ensure_sqlite
        from quiver.schema.reflect import reflect_database

        path = ensure_sqlite()
        url = f"sqlite:///{path.absolute()}"
        given = {"server.host": host, "server.port": port, "log.level": "debug" if debug else None}
        overrides = {key: value for key, value in given.items() if value is not None}
        settings = load_settings(None, {**overrides, "database.url": url}, base={})
        schema = asyncio.run(reflect_database(url))
        _check_graphql(schema)
        from quiver.graphql.server import reserve_port

        reserve_port(settings)
    except Exception as exc:
        raise _fail(exc, debug) from None
    host, port = settings.server.host, settings.server.port
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    endpoint = f"http://{shown}:{port}{settings.graphql.path}"
    typer.echo(
        f"Quiver demo: the Chinook music store ({plural(len(schema.entities), 'type')}) from {path}"
    )
    typer.echo(f"GraphQL and GraphiQL: {endpoint}")
    typer.echo("Try this query in GraphiQL, or with curl:")
    typer.echo(EXAMPLE_QUERY)
    typer.echo(
        f"  curl -s {endpoint} -H 'content-type: application/json' "
        '-d \'{"query": "{ artists(limit: 3) { name } }"}\''
    )
    typer.echo("Press Ctrl-C to stop.")
    _serve(schema, settings, debug)


def serve_command(
    config: Config = None,
    db: Db = None,
    schema_file: SchemaFile = None,
    host: Host = None,
    port: Port = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help="Server processes (server.workers).")
    ] = None,
    sets: Sets = None,
    log_format: LogFormat = None,
    debug: Debug = False,
) -> None:
    """Serve GraphQL over HTTP for a database (reflected) or a compiled schema."""
    import asyncio

    settings: QuiverSettings | None = None
    try:
        settings = _settings(
            config,
            db,
            sets,
            **{
                "schema_file": schema_file,
                "server.host": host,
                "server.port": port,
                "server.workers": workers,
                "log.format": log_format,
                "log.level": "debug" if debug else None,
            },
        )
        if not settings.database.url:
            raise _no_database()
        schema = asyncio.run(_schema_for(settings, config))
        _check_graphql(schema)
        _check_observers(settings, schema)
        _check_permissions(settings, schema, config)
        from quiver.graphql.server import reserve_port

        # A taken port is the one error line, before anything says the server is serving.
        reserve_port(settings)
    except Exception as exc:
        raise _fail(exc, debug, _log_format(log_format, settings)) from None
    server = settings.server
    shown = f"[{server.host}]" if ":" in server.host else server.host
    _announce(
        settings,
        f"Serving {plural(len(schema.entities), 'type')} at "
        f"http://{shown}:{server.port}{settings.graphql.path} "
        f"({plural(server.workers, 'worker')})",
        "quiver.graphql.server",
    )
    _serve(schema, settings, debug)


def _serve(schema: Schema, settings: QuiverSettings, debug: bool) -> None:
    from quiver.graphql.server import run_server

    stops: list[Callable[[], None]] = []
    try:
        for start in _companions:
            stops.append(start(schema, settings))
        run_server(schema, settings)
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        raise _fail(exc, debug, settings.log.format) from None
    finally:
        for stop in reversed(stops):
            stop()


def check_command(
    config: Config = None,
    db: Db = None,
    sets: Sets = None,
    debug: Debug = False,
) -> None:
    """Validate the settings, connect to the database, reflect it and summarise the API."""
    import asyncio

    try:
        settings = _settings(config, db, sets)
        schema = asyncio.run(_check(settings, config))
    except Exception as exc:
        raise _fail(exc, debug) from None
    from quiver.sql.url import parse_database_url

    relations = sum(len(e.relations) for e in schema.entities)
    where = parse_database_url(settings.database.url).redacted() if settings.database.url else ""
    typer.echo("settings: ok")
    if where:
        typer.echo(f"database: {where} reachable")
    typer.echo(f"schema: {plural(len(schema.entities), 'type')}, {plural(relations, 'relation')}")
    for entity in schema.entities:
        key = entity.primary_key
        keyed = f"key ({', '.join(key)})" if len(key) > 1 else f"key {key[0]}" if key else ""
        typer.echo(
            f"  {entity.name} ({entity.source}): {plural(len(entity.fields), 'field')}, "
            f"{plural(len(entity.relations), 'relation')}, {keyed or 'no primary key'}"
        )
    typer.echo("ok")


async def _check(settings: QuiverSettings, config: str | None = None) -> Schema:
    schema = await _schema_for(settings, config)
    _check_graphql(schema)
    _check_observers(settings, schema)
    _check_permissions(settings, schema, config)
    if settings.database.url:
        from quiver.graphql.engine import GraphQLEngine

        engine = await GraphQLEngine.open(schema, settings)
        try:
            await engine.database.ping()
            engine.prepare("{ __typename }")
        finally:
            await engine.close()
    return schema


@schema_app.command("print")
def print_command(
    schema_file: Annotated[
        Path | None,
        typer.Option(
            "--schema", metavar="FILE", help="A compiled schema.json (default: ./schema.json)."
        ),
    ] = None,
    db: Annotated[
        str | None, typer.Option("--db", metavar="URL", help="Reflect this database instead.")
    ] = None,
    app_file: Annotated[
        Path | None,
        typer.Option("--app", metavar="FILE", help="Compile this authored app instead."),
    ] = None,
    config: Config = None,
    debug: schema_commands.Debug = False,
) -> None:
    """Print the GraphQL schema (SDL) that 'quiver serve' would serve.

    With --db, the database is reflected as 'quiver serve --db' does: with the names: section
    and database.schemas of quiver.yaml (or --config) and QUIVER_* variables.
    """
    import asyncio

    given = (("--schema", schema_file), ("--db", db), ("--app", app_file))
    chosen = [name for name, value in given if value]
    if len(chosen) > 1:
        raise schema_commands.fail(f"give only one of {', '.join(chosen)}")
    with schema_commands.failures_reported(debug):
        if db:
            schema = asyncio.run(_schema_for(_settings(config, db, None), config))
        elif app_file is not None:
            from quiver.schema.authoring import compile_app

            result = asyncio.run(compile_app(app_file))
            for line in result.lines():
                typer.echo(line, err=True)
            if result.schema is None:
                raise typer.Exit(1)
            schema = result.schema
        else:
            schema = _read_schema(schema_file or Path("schema.json"))

    from graphql import print_schema
    from quiver.graphql.typesystem import build_graphql_schema
    from quiver.schema.catalog import build_catalog

    typer.echo(print_schema(build_graphql_schema(build_catalog(schema))))


def _read_schema(path: Path) -> Schema:
    from pydantic import ValidationError

    from quiver.runtime.errors import ConfigError, ErrorDetail
    from quiver.schema.ir import Schema

    fix = "compile it with 'quiver compile app.py -o FILE'"
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError.one(f"no such schema file: {path}", str(path), fix) from None
    except OSError as exc:
        raise ConfigError.one(f"cannot read {path}: {exc.strerror}", str(path), fix) from None
    try:
        return Schema.from_json(text)
    except ValidationError as exc:
        details = [
            ErrorDetail(
                f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}",
                str(path),
                fix,
            )
            for err in exc.errors()
        ]
        raise ConfigError(details) from None
