"""Run the GraphQL HTTP app under uvicorn, in one process or several workers.

With ``workers > 1`` uvicorn starts each worker from an import string, so the schema and the
settings travel to the workers through a file and the ``QUIVER_SERVE_SPEC`` environment variable;
each worker then builds its own app (and opens its own database pool) in
:func:`app_from_environment`.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from pathlib import Path

import orjson

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import GraphQLApp, create_app
from quiver.runtime.errors import ConfigError
from quiver.schema.ir import Schema, load_schema_file

__all__ = ["SERVE_SPEC_ENV", "app_from_environment", "run_server"]

SERVE_SPEC_ENV = "QUIVER_SERVE_SPEC"

log = logging.getLogger("quiver.graphql.server")


def app_from_environment() -> GraphQLApp:
    """The uvicorn factory of each worker process: the app described by ``QUIVER_SERVE_SPEC``."""
    raw = os.environ.get(SERVE_SPEC_ENV)
    if not raw:
        raise ConfigError.one(
            f"{SERVE_SPEC_ENV} is not set",
            "worker start-up",
            "start workers with quiver serve --workers N",
        )
    spec = orjson.loads(raw)
    settings = QuiverSettings.model_validate(spec["settings"])
    return create_app(load_schema_file(spec["schema_path"]), settings)


def run_server(schema: Schema, settings: QuiverSettings, *, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM), with ``settings.server.workers`` processes."""
    import uvicorn

    server = settings.server
    common: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "log_level": log_level,
        "access_log": False,
        "lifespan": "on",
        "loop": "uvloop",
        "http": "httptools",
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }
    # uvicorn re-raises SIGTERM once it has shut down gracefully; a graceful stop exits 0.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        if server.workers <= 1:
            uvicorn.run(create_app(schema, settings), **common)  # type: ignore[arg-type]
        else:
            _run_workers(schema, settings, common)
    except _TerminatedError:
        log.info("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


class _TerminatedError(Exception):
    """SIGTERM arrived after the server shut down."""


def _stopped(signum: int, frame: object) -> None:
    raise _TerminatedError


def _run_workers(schema: Schema, settings: QuiverSettings, common: dict[str, object]) -> None:
    import uvicorn

    server = settings.server
    with tempfile.TemporaryDirectory(prefix="quiver-serve-") as tmp:
        schema_path = Path(tmp) / "schema.json"
        schema_path.write_text(schema.to_json(), encoding="utf-8")
        spec = {"settings": settings.model_dump(mode="json"), "schema_path": str(schema_path)}
        os.environ[SERVE_SPEC_ENV] = orjson.dumps(spec).decode()
        try:
            uvicorn.run(
                "quiver.graphql.server:app_from_environment",
                factory=True,
                workers=server.workers,
                **common,  # type: ignore[arg-type]
            )
        finally:
            os.environ.pop(SERVE_SPEC_ENV, None)
