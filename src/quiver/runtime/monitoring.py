"""A process's own monitoring endpoint: Prometheus ``/metrics`` and ``/healthz`` / ``/readyz``.

``quiver run`` serves it (``--metrics host:port`` or the pipeline's ``telemetry:``), as the
OpenTelemetry Collector serves its own telemetry on ``:8888``. It runs in a thread of its own
(the standard library's threading HTTP server), so a scrape never waits for the event loop:

* ``GET /metrics``: the Prometheus text format of the process registry (``process_*``,
  ``python_*``) and of every registry :func:`quiver.runtime.metrics.expose` lists at the time
  of the scrape (OpenMetrics when the scraper asks for it).
* ``GET /healthz``: 200 while the process serves (liveness).
* ``GET /readyz``: 200 once ``ready()`` says so, 503 before and while draining (readiness).

Health paths answer 404 when the endpoint is metrics only (``health=False``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from quiver.runtime.errors import ConfigError, PermanentError
from quiver.runtime.listen import problem_of
from quiver.runtime.metrics import exposed

__all__ = ["MonitoringServer", "parse_endpoint", "serve_monitoring"]


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as ``(host, port)``; ValueError if malformed."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{endpoint!r} is not host:port (e.g. 127.0.0.1:8888)")
    return host.strip("[]"), int(port)


@dataclass
class MonitoringServer:
    """A running endpoint: where it listens and how to stop it."""

    host: str
    port: int
    _server: ThreadingHTTPServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_monitoring(
    endpoint: str,
    *,
    ready: Callable[[], bool],
    health: bool = True,
    where: str = "--metrics",
    registries: Callable[[], Iterable[CollectorRegistry]] | None = None,
) -> MonitoringServer:
    """Listen on ``endpoint`` and serve from a daemon thread; ``ready`` is called per
    ``/readyz`` request (from that thread). A malformed endpoint raises :class:`ConfigError`,
    one that cannot be bound (the port is in use) :class:`PermanentError`, both naming
    ``where``."""
    try:
        host, port = parse_endpoint(endpoint)
    except ValueError as exc:
        raise ConfigError.one(str(exc), where, "write host:port, e.g. 127.0.0.1:8888") from None
    listed = registries or (lambda: (REGISTRY, *exposed()))

    class Handler(_Handler):
        pass

    Handler.listed = staticmethod(listed)
    Handler.ready = staticmethod(ready)
    Handler.health = health
    server_class = _V6Server if ":" in host else ThreadingHTTPServer
    try:
        server = server_class((host, port), Handler)
    except OSError as exc:
        problem = problem_of(exc, host, port)
        raise PermanentError.one(
            f"cannot serve metrics on {endpoint}: {problem.reason}", where, problem.fix
        ) from None
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, name="quiver-monitoring", kwargs={"poll_interval": 0.2}
    )
    thread.daemon = True
    thread.start()
    return MonitoringServer(host, int(server.server_address[1]), server, thread)


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    listed: Callable[[], Iterable[CollectorRegistry]]
    ready: Callable[[], bool]
    health: bool
    server_version = "quiver"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encode, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = b"".join(encode(r) for r in self.listed())
            if content_type.startswith("application/openmetrics-text"):
                # each registry ends its text with "# EOF": one document keeps the last
                body = body.replace(b"# EOF\n", b"") + b"# EOF\n"
            self._answer(200, body, content_type)
        elif self.health and path == "/healthz":
            self._answer(200, b"ok\n")
        elif self.health and path == "/readyz":
            if self.ready():
                self._answer(200, b"ready\n")
            else:
                self._answer(503, b"not ready\n")
        else:
            self._answer(404, b"not found\n")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None
