"""``quiver ingest dlq list|show|replay|purge`` as a user runs them, on queues filled by real
runs (``quiver run``): output, exit codes, and one clear error line for bad input."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
QUIVER = str(Path(sys.executable).parent / "quiver")


def quiver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command in-process, as the console script would."""
    from typer.testing import CliRunner

    from quiver.cli import app

    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url.replace("postgresql://", "postgres://"), autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


_FILE_PIPELINE = """\
name: files
source: {csv: {path: in.csv}}
sink: {jsonl: {path: "out/{stem}.jsonl"}}
engine: {retry: {max_attempts: 1}}
dlq: {path: dlq}
"""


@pytest.fixture
def refused(tmp_path: Path) -> tuple[Path, str]:
    """A run whose jsonl sink failed for good (a directory where its file should be): one
    entry."""
    (tmp_path / "in.csv").write_text("id,name\n1,a\n2,b\n")
    (tmp_path / "out" / "in.jsonl").mkdir(parents=True)
    (tmp_path / "p.yaml").write_text(_FILE_PIPELINE)
    run = quiver("run", "p.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 rows kept in the dead-letter queue" in run.stderr
    listed = quiver("ingest", "dlq", "list", "p.yaml", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    return tmp_path, line.split("\t")[0]


def test_list_shows_one_line_per_entry_and_a_total(refused: tuple[Path, str]) -> None:
    folder, entry_id = refused
    listed = quiver("ingest", "dlq", "list", "p.yaml", cwd=folder)
    fields = listed.stdout.strip().split("\t")
    assert fields[:4] == [entry_id, "sink", "2 rows", "1 attempts"]
    assert fields[5].startswith("permanent: ")
    assert "out/in.jsonl is a directory" in fields[5]
    assert listed.stderr.startswith("1 entry, ")
    as_json = quiver("ingest", "dlq", "list", "p.yaml", "--json", cwd=folder)
    doc = json.loads(as_json.stdout)
    assert (doc["id"], doc["rows"], doc["component"]) == (entry_id, 2, "jsonl")


def test_show_prints_the_record_the_columns_and_the_first_rows(
    refused: tuple[Path, str],
) -> None:
    folder, entry_id = refused
    shown = quiver("ingest", "dlq", "show", "p.yaml", entry_id, "--rows", "1", cwd=folder)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["id"] == entry_id
    assert doc["pipeline"] == "files"
    assert doc["columns"] == {"id": "string", "name": "string"}
    assert doc["rows_shown"] == [{"id": "1", "name": "a"}]


def test_replay_that_fails_again_keeps_the_entry_and_counts_the_attempt(
    refused: tuple[Path, str],
) -> None:
    folder, entry_id = refused
    # the replay's own file cannot be written either: a directory where it goes
    (folder / "out" / f"dlq-{entry_id}.jsonl").mkdir()
    replay = quiver("ingest", "dlq", "replay", "p.yaml", entry_id, cwd=folder)
    assert replay.returncode == 1
    assert f"{entry_id}: failed again (sink)" in replay.stderr
    assert "0 delivered, 1 failed" in replay.stderr
    doc = json.loads(quiver("ingest", "dlq", "show", "p.yaml", entry_id, cwd=folder).stdout)
    assert (doc["attempts"], doc["replays"]) == (2, 1)


def test_replay_delivers_once_the_sink_works_and_removes_the_entry(
    refused: tuple[Path, str],
) -> None:
    folder, entry_id = refused
    (folder / "out" / "in.jsonl").rmdir()
    replay = quiver("ingest", "dlq", "replay", "p.yaml", "--all", cwd=folder)
    assert replay.returncode == 0, replay.stderr
    assert f"{entry_id}: 2 rows delivered to 'sink'" in replay.stdout
    written = (folder / "out" / f"dlq-{entry_id}.jsonl").read_text().splitlines()
    assert [json.loads(r) for r in written] == [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]
    listed = quiver("ingest", "dlq", "list", "p.yaml", cwd=folder)
    assert listed.stdout == ""
    assert listed.stderr.startswith("0 entries")


def test_purge_deletes_the_entries_named_or_all(refused: tuple[Path, str]) -> None:
    folder, entry_id = refused
    purged = quiver("ingest", "dlq", "purge", "p.yaml", entry_id, cwd=folder)
    assert purged.returncode == 0
    assert purged.stdout.strip() == "purged 1 entry"
    assert sorted(p.name for p in (folder / "dlq").iterdir()) == [".staging", "lock"]
    again = quiver("ingest", "dlq", "purge", "p.yaml", "--all", cwd=folder)
    assert again.stdout.strip() == "purged 0 entries"


def test_an_unknown_entry_id_is_one_clear_error(refused: tuple[Path, str]) -> None:
    folder, _ = refused
    unknown = "20990101T000000000000Z-abcdef"
    for command in ("show", "replay", "purge"):
        res = quiver("ingest", "dlq", command, "p.yaml", unknown, cwd=folder)
        assert res.returncode == 1
        assert res.stderr.splitlines() == [
            f"error: no entry '20990101T000000000000Z-abcdef' in the dead-letter queue "
            f"{folder / 'dlq'}",
            "  fix: see the ids with: quiver ingest dlq list p.yaml",
        ]


def test_replay_and_purge_need_ids_or_all(refused: tuple[Path, str]) -> None:
    folder, entry_id = refused
    for args in ([], [entry_id, "--all"]):
        res = quiver("ingest", "dlq", "replay", "p.yaml", *args, cwd=folder)
        assert res.returncode == 1
        assert res.stderr.startswith("error: give the ids of entries, or --all")


def test_a_missing_queue_directory_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(_FILE_PIPELINE)
    res = quiver("ingest", "dlq", "list", "p.yaml", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.splitlines()[0] == (
        f"error: no dead-letter queue at {tmp_path / 'dlq'} (dlq.path of p.yaml)"
    )
    assert "fix: check dlq.path" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_a_pipeline_without_a_queue_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(_FILE_PIPELINE.replace("dlq: {path: dlq}\n", ""))
    res = quiver("ingest", "dlq", "list", "p.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "the pipeline has no dead-letter queue" in res.stderr
    assert "add `dlq: {path: dlq/}`" in res.stderr


def test_an_invalid_pipeline_file_is_reported_with_its_location(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(_FILE_PIPELINE.replace("{path: dlq}", "{path: dlq, ttl: 1}"))
    res = quiver("ingest", "dlq", "list", "p.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "p.yaml:5" in res.stderr and "ttl" in res.stderr
    missing = quiver("ingest", "dlq", "list", "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 2
    assert "pipeline file not found" in missing.stderr


def test_replay_into_an_unknown_sink_or_a_single_file_is_refused(
    refused: tuple[Path, str],
) -> None:
    folder, entry_id = refused
    res = quiver("ingest", "dlq", "replay", "p.yaml", "--all", "--sink", "snk", cwd=folder)
    assert res.returncode == 2
    assert "'snk' is not a sink of the pipeline" in res.stderr
    assert "did you mean 'sink'?" in res.stderr
    (folder / "p.yaml").write_text(_FILE_PIPELINE.replace("out/{stem}.jsonl", "out.jsonl"))
    res = quiver("ingest", "dlq", "replay", "p.yaml", entry_id, cwd=folder)
    assert res.returncode == 2
    assert "writes one file (out.jsonl); a replay would replace it" in res.stderr
    assert (folder / "dlq" / f"{entry_id}.json").exists()


def test_the_installed_command_replays_into_postgresql(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    """The console script end to end: a table refusing rows, fixed, then replayed."""
    url = fresh_postgresql
    _sql(url, "CREATE TABLE orders (id integer PRIMARY KEY, qty integer CHECK (qty > 0))")
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n2,-1\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv, types: {id: int, qty: int}}}\n"
        "sink: {database: {url: '${URL}', table: orders}}\n"
        "engine: {retry: {max_attempts: 1}}\n"
        "dlq: {path: dlq, max_age: 2d, max_bytes: 100MiB}\n"
    )
    env = {**os.environ, "URL": url, "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [QUIVER, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    first = run("run", "p.yaml")
    assert first.returncode == 0, first.stderr
    assert _sql(url, "SELECT count(*) FROM orders") == [(0,)]
    listed = run("ingest", "dlq", "list", "p.yaml")
    [line] = listed.stdout.splitlines()
    assert "INTEGRITY" in line
    shown = run("ingest", "dlq", "show", "p.yaml", line.split("\t")[0])
    assert "orders_qty_check" in json.loads(shown.stdout)["message"]
    _sql(url, "ALTER TABLE orders DROP CONSTRAINT orders_qty_check")
    replay = run("ingest", "dlq", "replay", "p.yaml", "--all")
    assert replay.returncode == 0, replay.stderr
    assert _sql(url, "SELECT id, qty FROM orders ORDER BY id") == [(1, 5), (2, -1)]
    assert run("ingest", "dlq", "list", "p.yaml").stdout == ""


def test_an_entry_may_be_named_by_the_end_of_its_id(refused: tuple[Path, str]) -> None:
    folder, entry_id = refused
    suffix = entry_id.rsplit("-", 1)[1]
    shown = quiver("ingest", "dlq", "show", "p.yaml", suffix, cwd=folder)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == entry_id
    purged = quiver("ingest", "dlq", "purge", "p.yaml", suffix, cwd=folder)
    assert purged.stdout.strip() == "purged 1 entry"


def _hostile_table() -> Any:
    """Values JSON cannot hold as they are: bytes that are not UTF-8, NaN and the infinities,
    integers beyond 64 bits (decimal), intervals, durations and lists nested 40 deep."""
    import datetime as dt
    import decimal

    import pyarrow as pa

    deep: Any = [1]
    deep_type: Any = pa.list_(pa.int64())
    for _ in range(40):
        deep, deep_type = [deep], pa.list_(deep_type)
    return pa.table(
        {
            "id": [1, 2],
            "raw": pa.array([b"\xff\xfe", b"ok"], pa.binary()),
            "x": [math.nan, math.inf],
            "big": pa.array(
                [decimal.Decimal(2**70), decimal.Decimal(-(2**70))], pa.decimal128(38, 0)
            ),
            "every": pa.array(
                [pa.MonthDayNano([1, 2, 3]), pa.MonthDayNano([0, -1, 0])],
                pa.month_day_nano_interval(),
            ),
            "took": pa.array([dt.timedelta(seconds=1.5), None], pa.duration("us")),
            "deep": pa.array([deep, None], deep_type),
        }
    )


def test_hostile_values_are_kept_shown_and_replayed_unchanged(tmp_path: Path) -> None:
    import pyarrow.ipc as ipc

    table = _hostile_table()
    with ipc.new_file(tmp_path / "in.arrow", table.schema) as out:
        out.write_table(table)
    (tmp_path / "out" / "in.arrow").mkdir(parents=True)
    (tmp_path / "p.yaml").write_text(
        "name: hostile\nsource: {arrow: {path: in.arrow}}\n"
        'sink: {arrow: {path: "out/{stem}.arrow"}}\n'
        "engine: {retry: {max_attempts: 1}}\ndlq: {path: dlq}\n"
    )
    run = quiver("run", "p.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    [line] = quiver("ingest", "dlq", "list", "p.yaml", cwd=tmp_path).stdout.splitlines()
    entry_id = line.split("\t")[0]

    shown = quiver("ingest", "dlq", "show", "p.yaml", entry_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    first, second = doc["rows_shown"]
    assert (first["raw"], first["x"], first["big"]) == ("\\xff\\xfe", "NaN", str(2**70))
    assert (second["x"], second["big"]) == ("Infinity", str(-(2**70)))
    assert (first["every"], second["every"], first["took"]) == (
        "P1M2DT0.000000003S",
        "P-1D",
        "PT1.5S",
    )
    deep = first["deep"]
    for _ in range(40):
        [deep] = deep
    assert deep == [1]
    assert doc["columns"]["every"] == "month_day_nano_interval"

    (tmp_path / "out" / "in.arrow").rmdir()
    replayed = quiver("ingest", "dlq", "replay", "p.yaml", "--all", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    [delivered] = (tmp_path / "out").iterdir()  # named after the entry
    with ipc.open_file(delivered) as f:
        got = f.read_all()
    assert got.schema == table.schema
    assert got.drop_columns(["x"]).equals(table.drop_columns(["x"]))
    assert [str(v) for v in got["x"].to_pylist()] == ["nan", "inf"]  # NaN never equals NaN


def test_hostile_values_refused_by_postgresql_are_replayed_unchanged(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    import pyarrow.ipc as ipc

    url = fresh_postgresql
    _sql(
        url,
        "CREATE TABLE t (id bigint CHECK (id > 5), raw bytea, x double precision,"
        " big numeric, every interval, took interval)",
    )
    table = _hostile_table().drop_columns(["deep"])
    with ipc.new_file(tmp_path / "in.arrow", table.schema) as out:
        out.write_table(table)
    (tmp_path / "p.yaml").write_text(
        "name: hostile\nsource: {arrow: {path: in.arrow}}\n"
        'sink: {database: {url: "' + url + '", table: t}}\n'
        "engine: {retry: {max_attempts: 1}}\ndlq: {path: dlq}\n"
    )
    run = quiver("run", "p.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    [line] = quiver("ingest", "dlq", "list", "p.yaml", cwd=tmp_path).stdout.splitlines()
    shown = quiver("ingest", "dlq", "show", "p.yaml", line.split("\t")[0], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert "t_id_check" in doc["message"]
    assert doc["rows_shown"][0]["every"] == "P1M2DT0.000000003S"

    _sql(url, "ALTER TABLE t DROP CONSTRAINT t_id_check")
    replayed = quiver("ingest", "dlq", "replay", "p.yaml", "--all", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    got = _sql(
        url, "SELECT id, raw, x::text, big::text, every::text, took::text FROM t ORDER BY id"
    )
    assert got == [
        (1, b"\xff\xfe", "NaN", str(2**70), "1 mon 2 days", "00:00:01.5"),
        (2, b"ok", "Infinity", str(-(2**70)), "-1 days", None),
    ]
