"""Why an endpoint cannot be listened on, in the system's words and with a fix: the one check
every listening part of Quiver shares (receivers, the monitoring endpoint).

A port that cannot be bound is reported with the system's reason and its errno name
(``Address already in use (EADDRINUSE)``) and a fix for that reason; gRPC, for one, says no
more than "Failed to bind" whatever the reason.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

__all__ = ["BindProblem", "bind_problem", "open_listener", "problem_of"]


@dataclass(frozen=True)
class BindProblem:
    """Why an endpoint cannot be listened on, and what to do about it."""

    reason: str
    fix: str
    #: the errno of the failure (None when the host name did not resolve)
    code: int | None = None


def _fix_for(code: int | None, host: str, port: int) -> str:
    if code == errno.EADDRINUSE:
        return (
            f"stop the process listening on port {port} (`ss -ltnp 'sport = :{port}'` names it), "
            "or choose another endpoint"
        )
    if code == errno.EACCES:
        return (
            "ports below 1024 need privileges: choose a port above 1023, or grant the "
            "process CAP_NET_BIND_SERVICE"
        )
    if code == errno.EADDRNOTAVAIL:
        return (
            f"{host} is not an address of this machine: listen on 127.0.0.1, 0.0.0.0 (every "
            "address) or one of its own addresses"
        )
    return "choose another endpoint"


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the host cannot be resolved ({exc.strerror or exc})"
    name = errno.errorcode.get(exc.errno or 0)
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{text} ({name})" if name else text


def problem_of(exc: OSError, host: str, port: int) -> BindProblem:
    """Why binding ``host:port`` failed with ``exc``, and the fix."""
    code = None if isinstance(exc, socket.gaierror) else exc.errno
    fix = (
        "use a host name this machine resolves, or an IP address"
        if isinstance(exc, socket.gaierror)
        else _fix_for(code, host, port)
    )
    return BindProblem(_reason(exc), fix, code)


def _addresses(
    host: str, port: int
) -> list[tuple[int, tuple[str, int] | tuple[str, int, int, int]]]:
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return [(family, address) for family, _, _, _, address in found]  # type: ignore[misc]


def bind_problem(host: str, port: int) -> BindProblem | None:
    """Why ``host:port`` cannot be listened on now (as gRPC binds: with SO_REUSEADDR), or None
    when it can. Port 0 (any free port) is checked too: its host may not be of this machine."""
    try:
        addresses = _addresses(host, port)
    except OSError as exc:
        return problem_of(exc, host, port)
    failures: list[OSError] = []
    for family, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return problem_of(exc, host, port)
                failures.append(exc)
    # gRPC listens on the addresses it can bind of those a name resolves to (localhost: ::1
    # and 127.0.0.1; a machine without IPv6 cannot bind ::1)
    if failures and len(failures) == len(addresses):
        return problem_of(failures[0], host, port)
    return None


def open_listener(host: str, port: int) -> socket.socket | BindProblem:
    """A listening socket on ``host:port``, or why there can be none."""
    try:
        return socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        return problem_of(exc, host, port)
