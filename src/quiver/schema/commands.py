"""CLI commands of this package: ``quiver compile`` and ``quiver schema print``.

Only typer is imported at module level; everything else inside the command bodies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from quiver.schema.ir import Schema

schema_app = typer.Typer(
    name="schema",
    help="Inspect the GraphQL schema an app or a database produces.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``quiver`` app."""
    app.command("compile")(compile_command)
    app.add_typer(schema_app, name="schema")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@contextlib.contextmanager
def _failures_reported(debug: bool) -> Iterator[None]:
    """Quiver's errors and the system's as one ``error:`` line (re-raised with --debug)."""
    from quiver.runtime.errors import QuiverError

    try:
        yield
    except QuiverError as exc:
        if debug:
            raise
        raise _fail(str(exc)) from None
    except OSError as exc:
        if debug:
            raise
        raise _fail(f"cannot reflect the database: {exc}") from None


Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")]


def compile_command(
    app_file: Annotated[Path, typer.Argument(help="The Python file that declares the API.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the schema; '-' for stdout.")
    ] = Path("schema.json"),
    check_db: Annotated[
        str | None,
        typer.Option(
            "--check-db",
            metavar="URL",
            help="Check sources, columns and types against this live database.",
        ),
    ] = None,
    extend_db: Annotated[
        str | None,
        typer.Option(
            "--extend-db",
            metavar="URL",
            help="Reflect this database and lay the authored types over it.",
        ),
    ] = None,
    debug: Debug = False,
) -> None:
    """Compile an authored API (@quiver.type classes, @quiver.query functions) to schema.json.

    Every problem is printed as 'file:line: error: message (fix)'; the exit status is 1 if
    there is any error, and then nothing is written.
    """
    import asyncio

    from quiver.schema.authoring import compile_app

    with _failures_reported(debug):
        result = asyncio.run(compile_app(app_file, check_db=check_db, extend_db=extend_db))
    if debug and result.import_traceback:
        typer.echo(result.import_traceback, err=True, nl=False)
    for line in result.lines():
        typer.echo(line, err=True)
    if result.schema is None:
        count = len(result.errors)
        typer.echo(f"{count} error{'s' if count != 1 else ''}; nothing written", err=True)
        raise typer.Exit(1)
    text = result.schema.to_json() + "\n"
    if str(output) == "-":
        typer.echo(text, nl=False)
        return
    try:
        _write_atomically(output, text)
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    entities = len(result.schema.entities)
    typer.echo(f"wrote {output} ({entities} type{'s' if entities != 1 else ''})", err=True)


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it over."""
    import contextlib
    import os
    import tempfile

    try:
        mode = path.stat().st_mode & 0o7777  # keep the permissions of the file replaced
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask  # what open() would have created
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    debug: Debug = False,
) -> None:
    """Print the GraphQL schema (SDL) that 'quiver serve' would serve."""
    import asyncio

    given = (("--schema", schema_file), ("--db", db), ("--app", app_file))
    chosen = [name for name, value in given if value]
    if len(chosen) > 1:
        raise _fail(f"give only one of {', '.join(chosen)}")
    with _failures_reported(debug):
        if db:
            from quiver.schema.reflect import reflect_database

            schema = asyncio.run(reflect_database(db))
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
    from quiver.graphql.schema import build_graphql_schema
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
