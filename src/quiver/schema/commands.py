"""CLI command of this package: ``quiver compile``.

Only typer is imported at module level; everything else inside the command bodies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from quiver.schema.ir import Schema

__all__ = ["Debug", "compile_command", "fail", "failures_reported", "register"]


#: A check of a compiled schema against quiver.yaml (``config``, or ./quiver.yaml), run by
#: ``quiver compile`` before it writes anything; it prints its problems and exits 1.
CompileCheck = Callable[["Schema", Path | None, bool], None]
_compile_checks: list[CompileCheck] = []


def register(app: typer.Typer, checks: list[CompileCheck] | None = None) -> None:
    """Add this package's commands to the ``quiver`` app. ``checks`` run on every compiled
    schema (the packages above this one supply them: the permissions check plans filters)."""
    _compile_checks[:] = checks or []
    app.command("compile")(compile_command)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr, each line of it so; the exit (status 1) for the
    caller to raise."""
    for line in message.splitlines() or [message]:
        typer.echo(f"error: {line}", err=True)
    return typer.Exit(1)


@contextlib.contextmanager
def failures_reported(debug: bool) -> Iterator[None]:
    """Quiver's errors and the system's as one ``error:`` line (re-raised with --debug)."""
    from quiver.runtime.errors import QuiverError

    try:
        yield
    except QuiverError as exc:
        if debug:
            raise
        raise fail(str(exc)) from None
    except OSError as exc:
        if debug:
            raise
        raise fail(f"cannot reflect the database: {exc}") from None


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
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="quiver.yaml whose names: section names the --extend-db tables "
            "(default: ./quiver.yaml when present).",
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

    with failures_reported(debug):
        names = None
        if extend_db:
            from quiver.config.loader import load_settings

            names = load_settings(config, {"database.url": extend_db}).names
        result = asyncio.run(
            compile_app(app_file, check_db=check_db, extend_db=extend_db, names=names)
        )
    if debug and result.import_traceback:
        typer.echo(result.import_traceback, err=True, nl=False)
    for line in result.lines():
        typer.echo(line, err=True)
    if result.schema is None:
        count = len(result.errors)
        typer.echo(f"{count} error{'s' if count != 1 else ''}; nothing written", err=True)
        raise typer.Exit(1)
    for check in _compile_checks:
        check(result.schema, config, debug)
    text = result.schema.to_json() + "\n"
    if str(output) == "-":
        typer.echo(text, nl=False)
        return
    try:
        _write_atomically(output, text)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
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
