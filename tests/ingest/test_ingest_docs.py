"""docs/ingest.md does what it says: the quickstart's files run as written (on free ports) and
print what the page shows, and the example splitting signals into two files works."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from tests.e2e.conftest import quiver_command, quiver_env
from tests.ingest.conftest import wait_listening
from tests.ingest.processes import finish
from tests.ingest.sdk_clients import send_logs, send_metrics, send_traces
from tests.pipeline.conftest import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def files_of(text: str) -> dict[str, str]:
    """The code blocks marked ``<!-- file: NAME -->``, by name."""
    pattern = re.compile(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", re.S)
    return {name: body for name, body in pattern.findall(text)}


def console_output(text: str, command: str) -> str:
    """What a ```console block shows after ``$ command``."""
    block = re.search(rf"```console\n\$ {re.escape(command)}\n(.*?)```", text, re.S)
    assert block is not None, f"no console block runs {command!r}"
    return block.group(1)


def run_until_stopped(
    folder: Path, ports: tuple[int, int], *options: str
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*quiver_command(), "run", "pipeline.yaml", *(options or ["--quiet"])],
        cwd=folder,
        env=quiver_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    for port in ports:
        wait_listening(port, 60)
    return proc


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    text = DOC.read_text()
    grpc_port, http_port = free_port(), free_port()
    for name, body in files_of(text).items():
        body = body.replace(":4317", f":{grpc_port}").replace(":4318", f":{http_port}")
        (tmp_path / name).write_text(body)
    assert {p.name for p in tmp_path.iterdir()} == {"pipeline.yaml", "send.py", "read.py"}
    proc = run_until_stopped(tmp_path, (grpc_port, http_port), "--log-format", "text")
    sent = subprocess.run(
        [sys.executable, "send.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert sent.returncode == 0, sent.stderr
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    output, _ = finish(proc, 60)
    assert proc.returncode == 0, output.decode()
    shown = console_output(text, "quiver run pipeline.yaml")
    shown = shown.replace(":4317", f":{grpc_port}").replace(":4318", f":{http_port}")
    assert output.decode().startswith(shown), output.decode()
    stopped_line = re.search(r"`(OTLP receivers stopped: [^`]*)`", text)
    assert stopped_line is not None
    assert stopped_line.group(1).replace("\n", " ") in output.decode(), output.decode()
    read = subprocess.run(
        [sys.executable, "read.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout == console_output(text, "python read.py")


def test_the_example_splitting_signals_writes_two_files(tmp_path: Path) -> None:
    text = DOC.read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "steps:" in b)
    doc = yaml.safe_load(block)
    grpc_port, http_port = free_port(), free_port()
    doc["steps"]["otlp"]["otlp"] = {
        "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
        "http": {"endpoint": f"127.0.0.1:{http_port}"},
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    proc = run_until_stopped(tmp_path, (grpc_port, http_port))
    spans = send_traces("grpc", grpc_port)
    send_metrics("http", http_port)
    send_logs("http", http_port)
    proc.send_signal(signal.SIGTERM)
    output, _ = finish(proc, 60)
    assert proc.returncode == 0, output.decode()
    traces = pq.read_table(tmp_path / "out" / "traces.parquet")
    assert sorted(traces.column("span_id").to_pylist()) == sorted(s.span_id for s in spans)
    others = pq.read_table(tmp_path / "out" / "metrics_and_logs.parquet")
    assert sorted(set(others.column("signal").to_pylist())) == ["logs", "metrics"]
    assert others.num_rows == 3 + 2
