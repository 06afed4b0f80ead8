"""CLI commands of the pipeline package: ``quiver run``, ``quiver validate``, ``quiver plugins``.

Only typer is imported at module level; the engine loads inside the command bodies.

Exit codes of ``quiver run``: 0 success; 1 the run failed (nothing was written); 2 the
pipeline file or a variable is invalid; 3 the run finished but rows were rejected and
``--strict`` was given; 130 interrupted by SIGINT, 143 stopped by SIGTERM (within a second,
nothing was written).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from quiver.runtime.wording import plural

if TYPE_CHECKING:
    import typer

    from quiver.pipeline.interrupts import StopSignals

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_TERMINATED",
    "parse_run_arguments",
    "parse_variables",
    "register",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_REJECTED = 3
EXIT_INTERRUPTED = 130  # SIGINT; SIGTERM exits with 143 (128 + the signal number)
EXIT_TERMINATED = 143
DEFAULT_DRY_RUN_ROWS = 10

_VARIABLE_HELP = "Set ${KEY} in the pipeline: KEY=VALUE (repeatable)."
_PATH_MAP_HELP = (
    "Map a Windows path prefix of a FlowEngine file to a local folder: "
    "'C:\\data=/srv/data' (repeatable)."
)


def _optional_value_command() -> type[Any]:
    """The command class of ``quiver run``: lets ``--dry-run`` be given without a number (then
    it means the first 10 rows). Made when the typer app is built (typer is not imported
    before)."""
    from typer.core import TyperCommand

    class _OptionalValueCommand(TyperCommand):
        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            result: list[str] = super().parse_args(ctx, _fill_dry_run(args))
            return result

    return _OptionalValueCommand


def _fill_dry_run(args: list[str]) -> list[str]:
    """``args`` with the number ``--dry-run`` means (10) after each ``--dry-run`` that is not
    followed by one."""
    fixed: list[str] = []
    for i, arg in enumerate(args):
        fixed.append(arg)
        if arg == "--dry-run":
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is None or not nxt.isdigit():
                fixed.append(str(DEFAULT_DRY_RUN_ROWS))
    return fixed


def parse_variables(values: list[str]) -> dict[str, str]:
    from quiver.runtime.errors import ConfigError

    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError.one(
                f"--variable {item!r} is not KEY=VALUE", "command line", "write --variable K=V"
            )
        out[key] = value
    return out


def _console(*, stderr: bool = False) -> Any:
    """A rich console that prints text as given: no emoji codes, no guessed highlighting.

    Output that is not a terminal (a file, a pipe, a scheduler's log) is never wrapped at 80
    columns: tables and lines keep one line per row.
    """
    from rich.console import Console

    console = Console(stderr=stderr, emoji=False, highlight=False)
    if not console.is_terminal:
        console.width = _UNWRAPPED_WIDTH
    return console


_UNWRAPPED_WIDTH = 10_000


class _ConsoleOnFirstUse:
    """A :func:`_console` made when something is first printed: a quiet run that prints
    nothing never imports rich."""

    def __init__(self, *, stderr: bool = False) -> None:
        object.__setattr__(self, "_stderr", stderr)
        object.__setattr__(self, "_made", None)

    def made(self) -> Any:
        """The console, made now if it was not yet."""
        if self._made is None:
            object.__setattr__(self, "_made", _console(stderr=self._stderr))
        return self._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.made(), name, value)


def escape(text: str) -> str:
    """Text shown verbatim by rich (square brackets are markup otherwise)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _print_errors(err: Any, error: Any) -> None:
    details = getattr(err, "details", None) or []
    if not details:
        error.print(f"[red]error:[/] {escape(str(err))}")
        return
    for d in details:
        where = f"{d.where}: " if d.where else ""
        fix = f"\n  [dim]fix:[/] {escape(d.fix)}" if d.fix else ""
        text = escape(f"{where}{d.message}")
        error.print(f"[red]error:[/] {text}{fix}", soft_wrap=True)


#: The flags of ``quiver run``, by the keyword of :func:`run_command` they set.
_RUN_FLAGS = {
    "--resume": "resume",
    "--strict": "strict",
    "--debug": "debug",
    "--quiet": "quiet",
    "-q": "quiet",
}
#: The options of ``quiver run`` that take a value, by the keyword of :func:`run_command`.
_RUN_OPTIONS = {
    "--variable": "variables",
    "-v": "variables",
    "--dry-run": "dry_run",
    "--report": "report",
    "--log-format": "log_format",
    "--workers": "workers",
    "--max-rejects": "max_rejects",
    "--max-reject-ratio": "max_reject_ratio",
    "--path-map": "path_map",
    "--metrics": "metrics",
}
#: The least value of each whole-number option (None: no least).
_RUN_WHOLE = {"dry_run": None, "workers": 1, "max_rejects": 0}
_WHOLE_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")
_RATIO = re.compile(r"[01](?:\.[0-9]{1,15})?")


def parse_run_arguments(args: list[str]) -> dict[str, Any] | None:
    """The keywords of :func:`run_command` that ``quiver run ARGS`` passes, read without typer
    (importing it and building its converters is about 5% of a short run); None when typer
    must read ``args``: help, a mistake (its message), or a form this does not read.

    Reads the option names and value forms of ``quiver run`` that typer reads to the same
    values (tests/test_cli.py compares the two): each option by its own name, its value in the
    next argument, one FILE anywhere among them, a value option at most once (the repeatable
    ``--variable`` and ``--path-map`` aside). Anything else is left to typer: ``--name=value``,
    joined short options, a value that starts with ``-``, a number typer would refuse or read
    some other way, ``--``, ``--help``.
    """
    values: dict[str, Any] = {
        "file": None,
        "variables": [],
        "dry_run": None,
        "resume": False,
        "report": None,
        "log_format": "text",
        "workers": None,
        "strict": False,
        "debug": False,
        "quiet": False,
        "max_rejects": None,
        "max_reject_ratio": None,
        "path_map": [],
        "metrics": None,
    }
    given: set[str] = set()
    rest = iter(_fill_dry_run(args))
    for arg in rest:
        if not _plain(arg):
            return None
        flag = _RUN_FLAGS.get(arg)
        if flag is not None:
            values[flag] = True
            continue
        option = _RUN_OPTIONS.get(arg)
        if option is None:
            if arg.startswith("-") or values["file"] is not None:
                return None
            values["file"] = arg
            continue
        value = next(rest, "")
        if not _plain(value) or value.startswith("-"):
            return None
        if option in ("variables", "path_map"):
            values[option].append(value)
            continue
        if option in given:
            return None
        given.add(option)
        if option in _RUN_WHOLE:
            least = _RUN_WHOLE[option]
            if not _WHOLE_NUMBER.fullmatch(value) or (least is not None and int(value) < least):
                return None
            values[option] = int(value)
        elif option == "max_reject_ratio":
            if not _RATIO.fullmatch(value) or float(value) > 1:
                return None
            values[option] = float(value)
        else:
            values[option] = value
    return values if values["file"] is not None else None


def _plain(arg: str) -> bool:
    """``arg`` is not empty and is text typer reads as it is (no undecodable bytes)."""
    if arg.isascii():
        return arg != ""
    try:
        arg.encode()
    except UnicodeEncodeError:
        return False
    return True


def run_command(
    file: str,
    variables: list[str],
    dry_run: int | None,
    resume: bool,
    report: str | None,
    log_format: str,
    workers: int | None,
    strict: bool,
    debug: bool,
    quiet: bool,
    max_rejects: int | None = None,
    max_reject_ratio: float | None = None,
    path_map: list[str] | None = None,
    metrics: str | None = None,
) -> int:
    """Body of ``quiver run``; returns the exit code.

    SIGINT and SIGTERM are watched from the start (:mod:`quiver.pipeline.interrupts`).
    """
    from quiver.pipeline.interrupts import StopSignals

    with StopSignals() as stops:
        code = _run(
            stops,
            file,
            variables,
            dry_run,
            resume,
            report,
            log_format,
            workers,
            strict,
            debug,
            quiet,
            (max_rejects, max_reject_ratio),
            path_map or [],
            metrics,
        )
        stops.leave()
        return code


def _run(
    stops: StopSignals,
    file: str,
    variables: list[str],
    dry_run: int | None,
    resume: bool,
    report: str | None,
    log_format: str,
    workers: int | None,
    strict: bool,
    debug: bool,
    quiet: bool,
    limits: tuple[int | None, float | None],
    path_maps: list[str],
    metrics: str | None = None,
) -> int:
    import asyncio
    import gc
    import traceback
    import uuid

    _start_v8_early(file)
    from quiver.pipeline.config import load_pipeline, report_problems
    from quiver.pipeline.engine import PipelineEngine
    from quiver.pipeline.path_map import parse_path_map
    from quiver.pipeline.planner import compile_plan
    from quiver.pipeline.preflight import check_pipeline
    from quiver.pipeline.progress import RunProgress, print_summary, script_error_notes
    from quiver.pipeline.report import write_report
    from quiver.pipeline.runlog import RunLog
    from quiver.runtime.delivery import file_error
    from quiver.runtime.errors import ConfigError, OutputClosedError, QuiverError

    error: Any = _ConsoleOnFirstUse(stderr=True)
    out: Any = _ConsoleOnFirstUse()
    if log_format not in ("text", "json"):
        _print_errors(
            ConfigError.one(
                f"unknown log format {log_format!r}", "--log-format", "use text or json"
            ),
            error,
        )
        return EXIT_INVALID
    run_id = uuid.uuid4().hex[:12]
    try:
        spec = load_pipeline(file, parse_variables(variables), path_map=parse_path_map(path_maps))
    except ConfigError as exc:
        if log_format == "json":
            RunLog(run_id, "json").event(
                "invalid_pipeline",
                str(exc),
                level="error",
                errors=[d.render() for d in exc.details],
            )
        else:
            _print_errors(exc, error)
        return EXIT_INVALID
    problems = _override_reject_limits(spec, *limits) or check_pipeline(spec)
    if report and not problems:
        problems = report_problems(spec, report)
    if problems:
        if log_format == "json":
            RunLog(run_id, "json").event(
                "invalid_pipeline",
                f"{plural(len(problems), 'problem')} found in {file}",
                level="error",
                errors=[d.render() for d in problems],
            )
        else:
            _print_errors(ConfigError(problems), error)
        return EXIT_INVALID
    text = log_format == "text"
    log = RunLog(
        run_id,
        "text" if text else "json",
        pipeline=spec.name,
        level="debug" if debug else "info" if not text else "warning" if quiet else "notice",
        # in text mode the command prints failures itself, with their fixes
        hide=frozenset({"run_failed", "run_interrupted"}) if text else frozenset(),
    )
    shown = log_format == "text" and not quiet
    # rich's live display needs the console itself (it enters it as a context manager)
    progress = RunProgress(error.made() if shown else error, spec.name, enabled=shown)
    engine = PipelineEngine(
        compile_plan(spec),
        run_id=run_id,
        log=log,
        dry_run=dry_run,
        resume=resume,
        workers=workers,
        progress=progress.update,
    )
    code = EXIT_OK
    try:
        monitoring = _serve_monitoring(spec, engine, metrics) if dry_run is None else None
    except QuiverError as exc:
        if log_format == "json":
            log.event("run_failed", str(exc), level="error", code=exc.code)
        else:
            _print_errors(exc, error)
        return EXIT_INVALID if isinstance(exc, ConfigError) else EXIT_FAILED

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        stops.attach(task, engine.drain if engine.drains else None)
        try:
            with progress:
                await engine.run()
        finally:
            stops.detach()

    # What loading made (modules, classes, config schemas, components) lives as long as the
    # process: the garbage collector need not walk it again, during the run or at exit.
    # `quiver` starts with the collector off (quiver.cli.main); it collects from here on.
    gc.freeze()
    gc.enable()
    try:
        asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        error.print("[red]interrupted:[/] the run was stopped; no output was written")
        code = stops.exit_code or EXIT_INTERRUPTED
    except ConfigError as exc:
        _print_errors(exc, error)
        code = EXIT_INVALID
    except OutputClosedError as exc:
        # `quiver run ... | head`: ends as a command line tool does when its reader goes
        # away, quietly; what is left to flush goes nowhere instead of failing again at exit
        del exc  # the run's log has its run_failed event
        _discard_standard_output()
        code = EXIT_FAILED
    except QuiverError as exc:
        if log_format == "text":
            _print_errors(exc, error)
        code = EXIT_FAILED
        if debug:
            error.print(escape(traceback.format_exc()))
    finally:
        if monitoring is not None:
            monitoring.stop()
    result = engine.result
    if code == EXIT_OK and result.rejected and strict:
        code = EXIT_REJECTED
    if stops.exit_code is not None and result.status in ("running", "interrupted"):
        code = stops.exit_code
    else:  # the run had ended when the signal came: it keeps its outcome
        stops.outcome(code)
    if dry_run is not None and code in (EXIT_OK, EXIT_REJECTED):
        _print_dry_run(out, result, dry_run)
    elif log_format == "text" and not quiet:
        print_summary(error, result)
    elif log_format == "text":
        for note in script_error_notes(result):
            error.print(escape(note), soft_wrap=True)
    if report:
        try:
            write_report(report, result, code)
        except OSError as exc:  # (its place was checked before the run: a full disk...)
            _print_errors(file_error(exc, report, "--report"), error)
            code = code if code != EXIT_OK else EXIT_FAILED
    return code


def _discard_standard_output() -> None:
    """Point standard output at the null device (its reader has closed it)."""
    import contextlib
    import os
    import sys

    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _start_v8_early(file: str) -> None:
    """When the pipeline file has a ``js`` step, start V8 on a thread of its own now: the
    script check and the step's isolates then find it started, instead of spending some 30 to
    50 ms of one core on it before the first row is read while the other core waits. Only a
    hint: a file that cannot be read or parsed here is reported by the loading that follows."""
    from pathlib import Path

    from quiver.config.yaml_source import load_yaml

    try:
        text = Path(file).read_text(encoding="utf-8")
        if "js" not in text:  # no js step: nothing to parse for
            return
        data = load_yaml(text, file).data
    except Exception:
        return
    if _names_step(data, "js"):
        from quiver.pipeline.js_runtime.v8 import start_v8_in_background

        start_v8_in_background()


def _names_step(data: Any, component: str) -> bool:
    """Whether ``data`` (a parsed pipeline file) holds a step of ``component``: a mapping
    with that key whose value is a mapping of options, or empty."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == component and (value is None or isinstance(value, dict)):
                return True
            if _names_step(value, component):
                return True
    elif isinstance(data, list):
        return any(_names_step(item, component) for item in data)
    return False


def _serve_monitoring(spec: Any, engine: Any, option: str | None) -> Any:
    """Start the run's monitoring endpoint (``--metrics``, else ``telemetry.metrics``) if
    one is asked for; the :class:`~quiver.runtime.monitoring.MonitoringServer`, or None."""
    telemetry = spec.telemetry
    endpoint = option or (telemetry.metrics.endpoint if telemetry.metrics else None)
    if endpoint is None:
        return None
    from quiver.runtime.monitoring import serve_monitoring

    where = "--metrics" if option else "telemetry.metrics.endpoint"
    if option is None and spec.positions is not None:
        where = spec.positions.where(("telemetry", "metrics", "endpoint")) or where
    server = serve_monitoring(
        endpoint, ready=lambda: engine.ready, health=telemetry.health, where=where
    )
    engine.log.event(
        "metrics_serving",
        f"serving metrics on {server.url}/metrics",
        level="info",
        url=f"{server.url}/metrics",
    )
    return server


def _override_reject_limits(
    spec: Any, max_rejects: int | None, max_reject_ratio: float | None
) -> list[Any]:
    """``--max-rejects`` / ``--max-reject-ratio`` in place of the file's ``on_error`` limits;
    the problems found (they need ``policy: reject``)."""
    from quiver.runtime.errors import ErrorDetail

    if max_rejects is None and max_reject_ratio is None:
        return []
    if spec.on_error.policy != "reject":
        return [
            ErrorDetail(
                "--max-rejects and --max-reject-ratio need `on_error: {policy: reject}`: "
                "with fail_fast the first rejected row fails the run",
                "command line",
                "add `on_error: {policy: reject, rejects: rejects.csv}` to the pipeline file",
            )
        ]
    update: dict[str, Any] = {}
    if max_rejects is not None:
        update.update(max_rejects=max_rejects, max_errors=None)
    if max_reject_ratio is not None:
        update["max_reject_ratio"] = max_reject_ratio
    spec.on_error = spec.on_error.model_copy(update=update)
    return []


def _print_dry_run(console: Any, result: Any, rows: int) -> None:
    from rich.table import Table

    from quiver.pipeline.rejects import reject_fields

    for sink, table in result.dry_run.items():
        view = Table(
            title=f"{sink}: first {min(rows, table.num_rows)} row(s) (dry run, nothing written)"
        )
        for name in table.column_names:
            view.add_column(name)
        for row in table.slice(0, rows).to_pylist():
            view.add_row(*["" if v is None else str(v) for v in row.values()])
        console.print(view)
    if result.dry_run_rejects:
        view = Table(title=f"{result.rejected} rejected row(s)")
        for col in ("step", "line", "column", "value", "reason"):
            view.add_column(col)
        for e in result.dry_run_rejects[:rows]:
            view.add_row(*(escape(f) for f in reject_fields(e)[:5]))
        console.print(view)


def validate_command(file: str, variables: list[str], path_maps: list[str] | None = None) -> int:
    """Body of ``quiver validate``: every problem at once, no data processed."""
    from quiver.pipeline.config import load_pipeline
    from quiver.pipeline.path_map import parse_path_map
    from quiver.pipeline.preflight import check_pipeline
    from quiver.runtime.errors import ConfigError, ErrorDetail

    error = _console(stderr=True)
    try:
        spec = load_pipeline(
            file,
            parse_variables(variables),
            collect=True,
            path_map=parse_path_map(path_maps or []),
        )
    except ConfigError as exc:
        _print_errors(exc, error)
        error.print(f"{plural(len(exc.details), 'problem')} found in {file}")
        return EXIT_INVALID
    details: list[ErrorDetail] = [*spec.errors, *check_pipeline(spec)]
    for w in spec.warnings:
        error.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    if details:
        _print_errors(ConfigError(details), error)
        error.print(f"{plural(len(details), 'problem')} found in {file}")
        return EXIT_INVALID
    sources = ", ".join(s.name for s in spec.sources())
    sinks = ", ".join(s.name for s in spec.sinks())
    summary = f"{file}: ok ({plural(len(spec.steps), 'step')}; sources: {sources}; sinks: {sinks})"
    error.print(escape(summary), soft_wrap=True)
    return EXIT_OK


def plugins_list(kind: str | None) -> int:
    from rich.table import Table

    from quiver.pipeline.registry import KINDS, default_registry
    from quiver.runtime.errors import ConfigError

    if kind is not None and kind not in KINDS:
        _print_errors(
            ConfigError.one(f"unknown kind {kind!r}", "--kind", f"use one of: {', '.join(KINDS)}"),
            _console(stderr=True),
        )
        return EXIT_INVALID
    registry = default_registry()
    table = Table(title="pipeline components")
    for col in ("kind", "name", "origin", "summary"):
        table.add_column(col)
    for k in KINDS:
        if kind and k != kind:
            continue
        for spec in registry.specs(k):
            try:
                summary = spec.load().summary
            except ConfigError as exc:
                summary = f"[dim]unavailable: {exc.details[0].message}[/]"
            table.add_row(spec.kind, spec.name, spec.origin, summary)
    _console().print(table)
    return EXIT_OK


def plugins_describe(name: str) -> int:
    from rich.table import Table

    from quiver.pipeline.describe import describe_fields
    from quiver.pipeline.registry import KINDS, default_registry
    from quiver.runtime.errors import ConfigError
    from quiver.runtime.hints import did_you_mean

    console, error = _console(), _console(stderr=True)
    registry = default_registry()
    kind_part, _, bare = name.rpartition(":") if name.split(":")[0] in KINDS else ("", "", name)
    kinds = [k for k in KINDS if (not kind_part or k == kind_part)]
    found = [registry.find(k, bare) for k in kinds if bare in registry.names(k)]
    if not found:
        known = sorted({n for k in KINDS for n in registry.names(k)})
        hint = did_you_mean(bare, known)
        _print_errors(
            ConfigError.one(
                f"no component named '{bare}'" + (f"; {hint}" if hint else ""),
                "plugins describe",
                f"known components: {', '.join(known)}",
            ),
            error,
        )
        return EXIT_INVALID
    for spec in found:
        try:
            info = spec.load()
        except ConfigError as exc:
            _print_errors(exc, error)
            return EXIT_INVALID
        console.print(
            f"[bold]{spec.kind} {escape(spec.name)}[/] ({spec.origin}): {escape(info.summary)}"
        )
        if spec.preset:
            console.print(escape(f"preset: {spec.preset}"))
        models: list[Any] = [info.config]
        seen: set[Any] = set(models)
        while models:
            model = models.pop(0)
            title = None if model is info.config else f"{model.__name__} (nested options)"
            table = Table(title=title)
            for col in ("option", "type", "default", "description"):
                table.add_column(col)
            for f in describe_fields(model):
                default = "required" if f.required else f.default
                table.add_row(*(escape(t) for t in (f.name, f.type, default, f.description)))
                if f.nested is not None and f.nested not in seen:
                    seen.add(f.nested)
                    models.append(f.nested)
            console.print(table)
    return EXIT_OK


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``quiver`` app."""
    # a module global: typer reads the commands' annotations (``typer.Option``) from here
    global typer
    import typer

    @app.command("run", cls=_optional_value_command())
    def run(
        file: str = typer.Argument(..., help="Pipeline YAML file."),
        variable: Annotated[
            list[str] | None, typer.Option("--variable", "-v", help=_VARIABLE_HELP)
        ] = None,
        dry_run: int | None = typer.Option(
            None,
            "--dry-run",
            help="Process only the first N rows (default 10), print what each sink would "
            "receive, write nothing.",
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Skip input files a previous run completed (glob inputs)."
        ),
        report: str | None = typer.Option(
            None, "--report", help="Write a JSON report (counts, rejects, timings) here."
        ),
        log_format: str = typer.Option(
            "text",
            "--log-format",
            help="text or json.",
            autocompletion=lambda incomplete: [
                f for f in ("text", "json") if f.startswith(incomplete)
            ],
        ),
        workers: int | None = typer.Option(
            None,
            "--workers",
            min=1,
            help="Batches processed at once by parallel-safe processors (default: CPU count).",
        ),
        strict: bool = typer.Option(
            False, "--strict", help="Exit with code 3 when any row was rejected."
        ),
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
        max_rejects: int | None = typer.Option(
            None,
            "--max-rejects",
            min=0,
            help="Fail (writing nothing) once more than N rows are rejected; overrides "
            "on_error.max_rejects.",
        ),
        max_reject_ratio: float | None = typer.Option(
            None,
            "--max-reject-ratio",
            min=0.0,
            max=1.0,
            help="Fail (writing nothing) when more than this share of the rows read is "
            "rejected (0.05: 5%); overrides on_error.max_reject_ratio.",
        ),
        path_map: Annotated[
            list[str] | None, typer.Option("--path-map", help=_PATH_MAP_HELP)
        ] = None,
        metrics: str | None = typer.Option(
            None,
            "--metrics",
            metavar="HOST:PORT",
            help="Serve Prometheus /metrics, /healthz and /readyz on HOST:PORT while the run "
            "goes on (e.g. 127.0.0.1:8888); overrides telemetry.metrics.endpoint.",
        ),
    ) -> None:
        """Run a pipeline. Exit codes: 0 ok, 1 failed, 2 invalid pipeline, 3 rejected rows
        with --strict, 130 interrupted (SIGINT), 143 stopped (SIGTERM)."""
        code = run_command(
            file,
            variable or [],
            dry_run,
            resume,
            report,
            log_format,
            workers,
            strict,
            debug,
            quiet,
            max_rejects,
            max_reject_ratio,
            path_map or [],
            metrics,
        )
        raise typer.Exit(code)

    @app.command("validate")
    def validate(
        file: str = typer.Argument(..., help="Pipeline YAML file."),
        variable: Annotated[
            list[str] | None, typer.Option("--variable", "-v", help=_VARIABLE_HELP)
        ] = None,
        path_map: Annotated[
            list[str] | None, typer.Option("--path-map", help=_PATH_MAP_HELP)
        ] = None,
    ) -> None:
        """Check a pipeline (config, scripts, SQL, schemas) without processing data."""
        raise typer.Exit(validate_command(file, variable or [], path_map or []))

    plugins = typer.Typer(help="Pipeline components: built-in and installed plugins.")

    @plugins.command("list")
    def plugins_list_cmd(
        kind: str | None = typer.Option(None, "--kind", help="source, processor or sink."),
    ) -> None:
        """List every available source, processor and sink."""
        raise typer.Exit(plugins_list(kind))

    @plugins.command("describe")
    def plugins_describe_cmd(
        name: str = typer.Argument(..., help="Component name, e.g. csv or sink:csv."),
    ) -> None:
        """Show a component's summary and every config option."""
        raise typer.Exit(plugins_describe(name))

    app.add_typer(plugins, name="plugins")
