"""quiver serve starts Flight beside HTTP; quiver flight runs it alone; the Python example runs."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow.flight as flight
import pytest

from tests.graphql.servers import QUIVER, free_port, serving

ROOT = Path(__file__).resolve().parents[2]


def _wait_for_flight(location: str) -> flight.FlightClient:
    deadline = time.monotonic() + 30
    while True:
        client = flight.FlightClient(location)
        try:
            client.wait_for_available(timeout=1)
            list(client.list_flights())
            return client
        except (flight.FlightUnavailableError, flight.FlightTimedOutError):
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_serve_starts_flight_beside_http_and_the_python_example_reads_it(
    chinook_sqlite: Path,
) -> None:
    http_port, flight_port = free_port(), free_port()
    db = f"sqlite:///{chinook_sqlite.absolute()}"
    args = ["serve", "--db", db, "--port", str(http_port), "--set", f"flight.port={flight_port}"]
    with serving(*args, port=http_port):
        location = f"grpc://127.0.0.1:{flight_port}"
        client = _wait_for_flight(location)
        assert client.do_get(flight.Ticket(b"export:Genre::name")).read_all().num_rows == 25
        example = ROOT / "examples" / "flight" / "python_flight_client.py"
        run = subprocess.run(
            [sys.executable, str(example), location],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert "long rock tracks" in run.stdout
        assert "2240 invoice lines read over 4 endpoints" in run.stdout
        assert "For Those About To Rock" not in run.stderr
        assert "Album columns: albumId, title, artistId" in run.stdout


def test_quiver_flight_serves_alone_and_stops_on_sigterm(chinook_sqlite: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [QUIVER, "flight", "--db", f"sqlite:///{chinook_sqlite.absolute()}", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = _wait_for_flight(f"grpc://127.0.0.1:{port}")
        assert client.do_get(flight.Ticket(b"export:MediaType::")).read_all().num_rows == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert f"Arrow Flight at grpc+tcp://127.0.0.1:{port}" in out


def _flight_alone(db: Path, *options: str) -> str:
    """What ``quiver flight`` says when it cannot start (it must fail, without a traceback)."""
    run = subprocess.run(
        [QUIVER, "flight", "--db", f"sqlite:///{db.absolute()}", *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = run.stderr + run.stdout
    assert run.returncode != 0, out
    assert "Traceback" not in out
    return out


def test_a_taken_flight_port_is_one_clear_error(chinook_sqlite: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _flight_alone(chinook_sqlite, "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use (EADDRINUSE)" in out
    assert f"sport = :{port}" in out and "flight.port" in out


def test_a_flight_host_not_of_this_machine_is_one_clear_error(chinook_sqlite: Path) -> None:
    out = _flight_alone(chinook_sqlite, "--host", "192.0.2.1", "--port", "0")
    assert "cannot listen on 192.0.2.1:0" in out and "(EADDRNOTAVAIL)" in out
    assert "flight.host" in out and "not an address of this machine" in out


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_serve_answers_http_when_the_flight_port_is_taken(chinook_sqlite: Path) -> None:
    import socket

    import httpx

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        flight_port = taken.getsockname()[1]
        http_port = free_port()
        db = f"sqlite:///{chinook_sqlite.absolute()}"
        args = [
            "serve",
            "--db",
            db,
            "--port",
            str(http_port),
            "--set",
            f"flight.port={flight_port}",
        ]
        with serving(*args, port=http_port) as base:
            body = {"query": "{ genresAggregate { count } }"}
            answer = httpx.post(f"{base}/graphql", json=body).json()
            assert answer == {"data": {"genresAggregate": {"count": 25}}}


def test_quiver_flight_takes_log_format_json_for_its_lines_and_errors(
    chinook_sqlite: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [QUIVER, "flight", "--db", f"sqlite:///{chinook_sqlite.absolute()}",
             "--port", str(port), "--log-format", "json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    (record,) = [orjson.loads(line) for line in done.stderr.splitlines()]
    assert record["level"] == "error"
    assert record["message"].startswith(f"flight.port: cannot listen on 127.0.0.1:{port}")
