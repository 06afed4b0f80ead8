"""The ``quiver`` command line. Each command is a thin call into a package below.

The commands are loaded lazily: the root group knows every command's name and one-line help
(:data:`COMMANDS`), and imports the command module of a package only when one of its commands
runs (or its own help or completion is asked for). ``quiver run`` never imports the GraphQL,
Flight or observer commands, and ``quiver --help`` imports none of them. Command modules only
import typer at module level; the heavy imports happen inside the command bodies.

``quiver run FILE [OPTIONS]`` in its ordinary forms does not import typer at all: the console
script reads those arguments itself (:func:`quiver.pipeline.commands.parse_run_arguments`,
tested against typer's reading of each option) and hands anything else (help, completion, a
mistake, another command) to the typer app, :data:`app`, built when first used. Importing
typer and building its parameter converters costs about 15 ms of CPU, 5% of a short run.
"""

from __future__ import annotations

import gc

# No collection while the command line's own imports run (see main()); back on below.
_collecting = gc.isenabled()
gc.disable()

import errno  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator, MutableMapping  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, cast  # noqa: E402

from quiver import __version__  # noqa: E402

if _collecting:
    gc.enable()

if TYPE_CHECKING:
    import typer

    from quiver.config.settings import QuiverSettings
    from quiver.schema.ir import Schema

__all__ = ["COMMANDS", "app", "main", "script"]

#: The typer app of every command, built on first use (see ``__getattr__``).
app: typer.Typer

#: Every top-level command, in the order ``quiver --help`` lists them: the package whose
#: ``commands`` module registers it, and the first paragraph of its help (checked against the
#: command itself by the tests).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "graphql",
        "Serve the Chinook music-store demo database with GraphiQL, no setup needed.",
    ),
    "serve": (
        "graphql",
        "Serve GraphQL over HTTP for a database (reflected) or a compiled schema.",
    ),
    "check": (
        "graphql",
        "Validate the settings, connect to the database, reflect it and summarise the API.",
    ),
    "flight": (
        "flight",
        "Serve the Arrow Flight server alone (no HTTP): tables and GraphQL results as Arrow.",
    ),
    "compile": (
        "schema",
        "Compile an authored API (@quiver.type classes, @quiver.query functions) to schema.json.",
    ),
    "run": (
        "pipeline",
        "Run a pipeline. Exit codes: 0 ok, 1 failed, 2 invalid pipeline, 3 rejected rows\n"
        "with --strict, 130 interrupted (SIGINT), 143 stopped (SIGTERM).",
    ),
    "validate": (
        "pipeline",
        "Check a pipeline (config, scripts, SQL, schemas) without processing data.",
    ),
    "schema": ("graphql", "Inspect the GraphQL schema an app or a database produces."),
    "plugins": ("pipeline", "Pipeline components: built-in and installed plugins."),
    "observers": ("observers", "Run actions on committed changes."),
    "dlq": ("observers", "Deliveries that failed for good: list, show, retry, purge."),
    "jobs": ("observers", "Jobs enqueued by the `job` action: run them, list them."),
    "ingest": ("ingest", "Ingestion pipelines: their dead-letter queues."),
}


def _flight_beside_http(schema: Schema, settings: QuiverSettings) -> Callable[[], None]:
    from quiver.flight import commands as flight_commands

    return flight_commands.start_beside_http(schema, settings)


def _observers_beside_http(schema: Schema, settings: QuiverSettings) -> Callable[[], None]:
    from quiver.observers import commands as observer_commands

    return observer_commands.start_beside_http(schema, settings)


def _check_compiled_permissions(*args: Any) -> None:
    from quiver.graphql import commands as graphql_commands

    graphql_commands.check_compiled_permissions(*args)


def _register(package: str, app: typer.Typer) -> None:
    """Add the commands of ``package`` to ``app``."""
    if package == "graphql":
        from quiver.graphql import commands as graphql_commands

        graphql_commands.register(app, companions=[_flight_beside_http, _observers_beside_http])
    elif package == "flight":
        from quiver.flight import commands as flight_commands

        flight_commands.register(app)
    elif package == "schema":
        from quiver.schema import commands as schema_commands

        schema_commands.register(app, checks=[_check_compiled_permissions])
    elif package == "pipeline":
        from quiver.pipeline import commands as pipeline_commands

        pipeline_commands.register(app)
    elif package == "observers":
        from quiver.observers import commands as observer_commands

        observer_commands.register(app)
    elif package == "ingest":
        from quiver.ingest import commands as ingest_commands

        ingest_commands.register(app)
    else:  # pragma: no cover - COMMANDS names only the packages above
        raise ValueError(f"no commands in package {package!r}")


class _LazyCommands(MutableMapping[str, Any]):
    """The root group's commands by name: each package's command module is imported when
    one of its commands is first looked up."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}
        self._packages: set[str] = set()

    def _load(self, package: str) -> None:
        if package in self._packages:
            return
        self._packages.add(package)
        import typer
        import typer.main

        sub = typer.Typer()
        _register(package, sub)
        group = typer.main.get_group(sub)
        for name, command in group.commands.items():
            self._loaded.setdefault(name, command)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded and name in COMMANDS:
            self._load(COMMANDS[name][0])
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*COMMANDS, *self._loaded]))

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._loaded


#: Commands that turn the garbage collector back on themselves, once their imports are done.
_COLLECTING_AFTER_IMPORTS = frozenset({"run"})

#: Commands whose process the console script ends at once when they are done (see script()):
#: they close every file they write before they return.
_ENDING_AT_ONCE = frozenset({"run"})
_ending: dict[str, bool] = {"at_once": False}


def _build_app() -> typer.Typer:
    """The typer app of every command (:data:`app`)."""
    # a module global: typer reads the callbacks' annotations (``typer.Context``) from here
    global typer
    import typer
    from typer.core import TyperCommand, TyperGroup

    class _LazyGroup(TyperGroup):
        """The root group: lists every command from :data:`COMMANDS` without importing it."""

        def __init__(self, **attrs: Any) -> None:
            super().__init__(**attrs)
            commands = _LazyCommands()
            commands.update(self.commands)
            self.commands = commands
            self._listing = False

        @contextmanager
        def _only_listing(self) -> Iterator[None]:
            self._listing = True
            try:
                yield
            finally:
                self._listing = False

        def list_commands(self, ctx: Any) -> list[str]:
            return list(self.commands)

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            if self._listing and cmd_name in COMMANDS:
                # the name and help line are all a listing shows
                return TyperCommand(name=cmd_name, help=COMMANDS[cmd_name][1])
            return self.commands.get(cmd_name)

        def format_help(self, ctx: Any, formatter: Any) -> None:
            with self._only_listing():
                super().format_help(ctx, formatter)

        def shell_complete(self, ctx: Any, incomplete: str) -> Any:
            with self._only_listing():
                return super().shell_complete(ctx, incomplete)

    built = typer.Typer(
        name="quiver",
        cls=_LazyGroup,
        help="Quiver: compiled GraphQL over SQL databases, Arrow Flight, and data pipelines.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
    )

    @built.callback()
    def _root(
        ctx: typer.Context,
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """Quiver: compiled GraphQL over SQL databases, Arrow Flight, and data pipelines."""
        _started(ctx.invoked_subcommand)

    return built


def _version(value: bool) -> None:
    if value:
        import typer

        typer.echo(f"quiver {__version__}")
        raise typer.Exit()


def _started(command: str | None) -> None:
    """What the root group does before ``command`` runs."""
    if command not in _COLLECTING_AFTER_IMPORTS:
        gc.enable()
    _ending["at_once"] = command in _ENDING_AT_ONCE


def __getattr__(name: str) -> Any:
    """:data:`app`, built on first use."""
    if name == "app":
        built = globals()["app"] = _build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    # Quiver does no linear algebra: without this, importing numpy starts an OpenBLAS thread
    # per core that spins after use and takes CPU from the pipeline's own threads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # Arrow buffers from the system allocator: mimalloc, Arrow's default, gives freed memory
    # back after each batch, to be faulted in and zeroed again by the next one (see
    # docs/pipelines/engine.md, "Memory"). Read when pyarrow first allocates.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    # gRPC's C core logs to stderr on its own ("E1206 ... add_port.cc:83] Failed to add port"):
    # Quiver reports what goes wrong itself, in its own words. GRPC_VERBOSITY=ERROR (or DEBUG)
    # in the environment shows them again. Read when grpc is first imported.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # Starting a command imports some 450 modules: hundreds of thousands of objects that live
    # as long as the process. Collecting while they are made finds no garbage yet takes about a
    # tenth of a short run, so the collector is off until the command starts (`quiver run`:
    # until its imports are frozen, see quiver.pipeline.commands).
    gc.disable()
    _run_without_typer(sys.argv[1:])
    _app()()


def _app() -> typer.Typer:
    """:data:`app`, built now if it was not yet."""
    built: typer.Typer | None = globals().get("app")
    return built if built is not None else __getattr__("app")


def _run_without_typer(args: list[str]) -> None:
    """``quiver ARGS`` when it is ``quiver run`` with arguments that
    :func:`~quiver.pipeline.commands.parse_run_arguments` reads: runs the command as the typer
    app would and raises ``SystemExit`` with its exit code. Returns, having done nothing, for
    any other command line (help, shell completion, a mistake, another command)."""
    if os.name != "posix" or args[:1] != ["run"]:
        return  # (typer expands wildcards in the arguments on Windows)
    if any(name.endswith("_COMPLETE") for name in os.environ):
        return  # shell completion asked for: typer answers it
    from quiver.config.pydantic_plugins import settle_pydantic_plugins
    from quiver.pipeline import commands

    arguments = commands.parse_run_arguments(args[1:])
    if arguments is None:
        return
    _started("run")
    # (the typer app builds pydantic models while it reads the arguments, before this could)
    settle_pydantic_plugins()
    # what typer's main does (typer.core._main) when the command raises
    try:
        code = commands.run_command(**arguments)
    except KeyboardInterrupt:
        code = 130
    except EOFError:
        _aborted()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        _pipe_closed()
    sys.exit(code)


def _aborted() -> NoReturn:
    """Typer's ending of a command that met the end of its input (exit code 1)."""
    from typer import _click, core, rich_utils

    _click.echo(file=sys.stderr)
    if core.HAS_RICH and core.DEFAULT_MARKUP_MODE is not None:
        rich_utils.rich_abort_error()
    else:
        _click.echo("Aborted!", file=sys.stderr)
    sys.exit(1)


def _pipe_closed() -> NoReturn:
    """Typer's ending of a command whose output pipe was closed (exit code 1)."""
    from typer._click.utils import PacifyFlushWrapper

    sys.stdout = cast(TextIO, PacifyFlushWrapper(sys.stdout))
    sys.stderr = cast(TextIO, PacifyFlushWrapper(sys.stderr))
    sys.exit(1)


def script() -> None:
    """The ``quiver`` console script: :func:`main`, then, after ``quiver run``, the process
    ends at once with the command's exit code.

    Python's own shutdown frees the objects of some 450 modules one by one and runs the
    extensions' destructors: about 15 ms after a short run, for nothing the run needs. The
    process still waits for its threads, runs the ``atexit`` functions and flushes its output
    first, and closes the files a step left open (:func:`_end_at_once`).
    :func:`main` itself always raises ``SystemExit``, for callers in the same process.
    """
    inherited = _written_files()
    try:
        main()
    except SystemExit as done:
        if _ending["at_once"]:
            _end_at_once(done.code, inherited)
        raise


def _end_at_once(code: object, inherited: set[tuple[int, int, int]] | None) -> None:
    """End the process with exit ``code`` as Python's shutdown would, without freeing each
    object: the ``atexit`` functions run, files the process left open are closed (their
    buffers written), the standard streams are flushed, then ``os._exit``.

    Python's shutdown would close a file left open only when it frees it, and where the file
    sits in a reference cycle it may free the buffer under a text wrapper first, losing what
    the wrapper held: here the files are closed outermost first, so nothing is lost.

    Returns, leaving the ordinary shutdown to end the process, when that shutdown would do
    more: a thread it waits for still runs, a file or pipe is still open for writing that no
    Python object holds (native code's), a stream fails to flush, or the code is not a number.
    ``inherited``: what :func:`_written_files` found at the start.
    """
    import atexit
    import threading

    if code is not None and not isinstance(code, int):
        return
    main_thread = threading.main_thread()
    if any(not t.daemon for t in threading.enumerate() if t is not main_thread):
        return
    atexit._run_exitfuncs()
    # the objects made since the run froze the rest (quiver.pipeline.commands): a few thousand
    _close_outermost_first(_open_files(gc.get_objects()))
    written = _written_files()
    if inherited is None or written is None:
        return
    if not written <= inherited:
        # a file opened before the freeze (by a step as it loaded): look among all objects
        gc.unfreeze()
        _close_outermost_first(_open_files(gc.get_objects()))
        written = _written_files()
        if written is None or not written <= inherited:
            return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return  # the ordinary shutdown reports it (and exits with 120)
    _flush_c_streams()
    os._exit(code or 0)


def _open_files(objects: list[Any]) -> list[Any]:
    """The file objects among ``objects`` that are still open, but for the standard streams
    and memory streams (which hold nothing the process leaves behind)."""
    import io

    standard = {id(s) for s in (sys.stdin, sys.stdout, sys.stderr)}
    standard.update(id(getattr(s, "buffer", None)) for s in (sys.stdout, sys.stderr))
    is_file: dict[type, bool] = {}
    found = []
    for obj in objects:
        kind = type(obj)
        known = is_file.get(kind)
        if known is None:
            memory = issubclass(kind, (io.BytesIO, io.StringIO))
            known = is_file[kind] = issubclass(kind, io.IOBase) and not memory
        if known and id(obj) not in standard:
            try:
                if obj.closed:
                    continue
            except ValueError:  # a wrapper whose buffer was detached
                continue
            found.append(obj)
    return found


def _close_outermost_first(files: list[Any]) -> None:
    """Close ``files`` as freeing them would, each before the files it writes through (a text
    wrapper before its buffer, a gzip file before the file under it). A file that fails to
    close is reported on stderr the way Python reports a failing finalizer."""
    ids = {id(f) for f in files}
    inner: dict[int, set[int]] = {}
    for f in files:
        reached: set[int] = set()
        for ref in gc.get_referents(f):
            if id(ref) in ids:
                reached.add(id(ref))
            elif isinstance(ref, dict):  # a file class written in Python: through __dict__
                reached.update(id(v) for v in ref.values() if id(v) in ids)
        inner[id(f)] = reached
    order: list[Any] = []
    left = list(files)
    while left:
        held = set().union(*(inner[id(f)] for f in left))
        outer = [f for f in left if id(f) not in held] or left  # a cycle: any order
        order.extend(outer)
        taken = {id(f) for f in outer}
        left = [f for f in left if id(f) not in taken]
    for f in order:
        try:
            f.close()
        except Exception as exc:  # reported as the finalizer would report it
            sys.stderr.write(f"Exception ignored while closing {f!r}: {exc!r}\n")


def _written_files() -> set[tuple[int, int, int]] | None:
    """The descriptors past the standard three that are open for writing on a file or a
    pipe, as (descriptor, device, inode); None where the process cannot list them."""
    if os.name != "posix":
        return None
    import fcntl
    import stat

    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        found: set[tuple[int, int, int]] = set()
        for name in names:
            fd = int(name)
            if fd <= 2:
                continue
            try:
                info = os.fstat(fd)
                flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            except OSError:  # the listing's own descriptor, closed since
                continue
            writing = flags & os.O_ACCMODE != os.O_RDONLY
            if writing and (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
                found.add((fd, info.st_dev, info.st_ino))
        return found
    return None


def _flush_c_streams() -> None:
    """Flush what native code wrote through C's ``stdio`` (``exit()`` would)."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # no C library to load by that name
        ctypes.CDLL(None).fflush(None)
