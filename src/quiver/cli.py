"""The ``quiver`` command line. Each command is a thin call into a package below.

Command modules only import typer at module level, so ``quiver --help`` stays fast;
the heavy imports happen inside the command bodies.
"""

from __future__ import annotations

import os

import typer

from quiver import __version__

app = typer.Typer(
    name="quiver",
    help="Quiver: compiled GraphQL over SQL databases, Arrow Flight, and data pipelines.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"quiver {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Quiver: compiled GraphQL over SQL databases, Arrow Flight, and data pipelines."""


def _register() -> None:
    from quiver.flight import commands as flight_commands
    from quiver.graphql import commands as graphql_commands
    from quiver.ingest import commands as ingest_commands
    from quiver.observers import commands as observer_commands
    from quiver.pipeline import commands as pipeline_commands
    from quiver.schema import commands as schema_commands

    graphql_commands.register(
        app, companions=[flight_commands.start_beside_http, observer_commands.start_beside_http]
    )
    flight_commands.register(app)
    schema_commands.register(app, checks=[graphql_commands.check_compiled_permissions])
    pipeline_commands.register(app)
    observer_commands.register(app)
    ingest_commands.register(app)


_register()


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
    app()
