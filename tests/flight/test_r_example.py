"""The R example reads a running server (where R and reticulate are installed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flight.test_cli import ROOT, _wait_for_flight
from tests.graphql.servers import QUIVER, free_port


def _has_reticulate() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(
        ["Rscript", "-e", "library(reticulate)"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


def test_the_r_example_reads_exports_and_a_graphql_query(chinook_sqlite: Path) -> None:
    if not _has_reticulate():
        pytest.skip("needs Rscript and the reticulate package")
    port = free_port()
    server = subprocess.Popen(
        [QUIVER, "flight", "--db", f"sqlite:///{chinook_sqlite.absolute()}", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        location = f"grpc://127.0.0.1:{port}"
        _wait_for_flight(location).close()
        run = subprocess.run(
            ["Rscript", str(ROOT / "examples" / "flight" / "r_flight_client.R"), location],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "RETICULATE_PYTHON": sys.executable},
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    assert run.returncode == 0, run.stderr
    assert "long rock tracks; first:" in run.stdout
    (genres,) = [line for line in run.stdout.splitlines() if line.startswith("genres starting")]
    assert sorted(genres.split(": ")[1].strip().split(", ")) == [
        "R&B/Soul",
        "Reggae",
        "Rock",
        "Rock And Roll",
    ]
    assert "albums: 3 rows, columns title, artist" in run.stdout
