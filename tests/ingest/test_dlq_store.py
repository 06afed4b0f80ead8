"""The dead-letter queue on disk: entries written whole, retention by age and by size, and a
process killed in the middle of writing one leaving no entry behind."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from quiver.pipeline.config import parse_pipeline
from quiver.pipeline.dead_letters import (
    DeadLetterQueue,
    Failure,
    parse_duration,
    parse_size,
)
from quiver.runtime.errors import ConfigError, PermanentError

ROOT = Path(__file__).resolve().parents[2]


def _rows(n: int, start: int = 0) -> pa.RecordBatch:
    return pa.record_batch({"id": list(range(start, start + n)), "v": [f"r{i}" for i in range(n)]})


def _failure(message: str = "refused") -> Failure:
    now = time.time()
    return Failure.from_error(PermanentError.one(message), 1, now, now)


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _add(queue: DeadLetterQueue, rows: int = 3, sink: str = "db") -> str:
    staged = queue.stage(sink, "run1")
    staged.add(_rows(rows))
    return queue.add(staged, _failure(), "database", "run1").id


def test_an_entry_keeps_the_rows_and_the_failure_of_its_sink(tmp_path: Path) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq"), pipeline="orders")
    queue.create()
    staged = queue.stage("db", "run1")
    staged.add(_rows(2))
    staged.add(_rows(3, start=2))
    entry = queue.add(staged, _failure("check constraint violated"), "database", "run1")
    assert [e.id for e in queue.entries()] == [entry.id]
    got = queue.get(entry.id)
    assert (got.pipeline, got.sink, got.component, got.rows) == ("orders", "db", "database", 5)
    assert got.error_class == "permanent"
    assert got.message == "check constraint violated"
    assert got.attempts == 1
    assert queue.read(entry.id).column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert os.listdir(tmp_path / "dlq" / ".staging") == []  # the staging file became the entry
    assert queue.metrics.sample("quiver_pipeline_dlq_entries") == 1
    assert queue.metrics.sample("quiver_pipeline_dlq_added_total", sink="db") == 1
    assert queue.metrics.sample("quiver_pipeline_dlq_added_rows_total", sink="db") == 5


def test_a_discarded_staging_file_leaves_nothing(tmp_path: Path) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq"))
    queue.create()
    staged = queue.stage("db", "run1")
    staged.add(_rows(4))
    staged.discard()
    assert queue.entries() == []
    assert os.listdir(tmp_path / "dlq" / ".staging") == []


def test_a_failed_replay_counts_its_attempts_and_keeps_the_earlier_error(tmp_path: Path) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq"))
    queue.create()
    entry_id = _add(queue)
    now = time.time()
    again = Failure.from_error(PermanentError.one("still refused"), 3, now, now)
    entry = queue.failed_again(entry_id, again)
    assert (entry.attempts, entry.replays, entry.message) == (4, 1, "still refused")
    assert queue.get(entry_id).history[0].endswith("refused")
    assert queue.read(entry_id).num_rows == 3


def test_retention_drops_entries_older_than_max_age_oldest_first(tmp_path: Path) -> None:
    clock = _Clock()
    logs: list[str] = []
    queue = DeadLetterQueue(
        str(tmp_path / "dlq"),
        pipeline="p",
        max_age=3600,
        clock=clock,
        log=lambda message, level: logs.append(message),
    )
    queue.create()
    old = _add(queue, rows=2)
    clock.now += 1800
    young = _add(queue, rows=5)
    clock.now += 1801  # the first is now older than an hour, the second is not
    dropped = queue.enforce()
    assert [(d.id, d.reason, d.rows) for d in dropped] == [(old, "max_age", 2)]
    assert [e.id for e in queue.entries()] == [young]
    assert queue.metrics.sample("quiver_pipeline_dlq_dropped_total", reason="max_age") == 1
    assert queue.metrics.sample("quiver_pipeline_dlq_dropped_rows_total", reason="max_age") == 2
    assert any(old in m and "older than 1h" in m for m in logs)


def test_retention_drops_the_oldest_entries_beyond_max_bytes(tmp_path: Path) -> None:
    clock = _Clock()
    queue = DeadLetterQueue(str(tmp_path / "dlq"), max_bytes=10**9, clock=clock)
    queue.create()
    ids = []
    for _ in range(4):
        ids.append(_add(queue, rows=1000))
        clock.now += 1
    _, total = queue.size()
    one = total // 4
    queue.max_bytes = total - one // 2  # room for three entries, not four
    dropped = queue.enforce()
    assert [(d.id, d.reason) for d in dropped] == [(ids[0], "max_bytes")]
    assert [e.id for e in queue.entries()] == ids[1:]
    assert queue.size()[1] <= queue.max_bytes
    assert queue.metrics.sample("quiver_pipeline_dlq_dropped_total", reason="max_bytes") == 1
    assert queue.metrics.sample("quiver_pipeline_dlq_bytes") == queue.size()[1]


def test_retention_is_applied_when_the_queue_is_opened(tmp_path: Path) -> None:
    clock = _Clock()
    path = str(tmp_path / "dlq")
    first = DeadLetterQueue(path, max_age=60, clock=clock)
    first.create()
    _add(first)
    clock.now += 120
    again = DeadLetterQueue(path, max_age=60, clock=clock)
    again.create()
    assert again.entries() == []
    assert again.metrics.sample("quiver_pipeline_dlq_dropped_total", reason="max_age") == 1


def test_an_unknown_or_malformed_entry_id_is_a_key_error(tmp_path: Path) -> None:
    queue = DeadLetterQueue(str(tmp_path / "dlq"))
    queue.create()
    for bad in ("20260101T000000000000Z-abcdef", "../../etc/passwd", "x"):
        with pytest.raises(KeyError):
            queue.get(bad)
        with pytest.raises(KeyError):
            queue.read(bad)
        assert queue.remove(bad) is False


_WRITER = textwrap.dedent(
    """
    import sys, time
    import pyarrow as pa
    from quiver.pipeline.dead_letters import DeadLetterQueue, Failure
    from quiver.runtime.errors import PermanentError

    queue = DeadLetterQueue(sys.argv[1])
    queue.create()
    batch = pa.record_batch({"id": list(range(20_000)), "v": ["x" * 40] * 20_000})
    print("ready", flush=True)
    while True:
        staged = queue.stage("db", "run")
        for _ in range(8):
            staged.add(batch)
        now = time.time()
        queue.add(staged, Failure.from_error(PermanentError.one("no"), 1, now, now), "db", "run")
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.7])
def test_a_process_killed_while_writing_entries_leaves_only_whole_ones(
    tmp_path: Path, delay: float
) -> None:
    path = tmp_path / "dlq"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    queue = DeadLetterQueue(str(path), max_bytes=1 << 40)
    for entry in queue.entries():  # before any clean-up: every visible entry is whole
        assert queue.read(entry.id).num_rows == entry.rows == 160_000
    queue.create()  # the next start removes what the killed process left half-written
    assert os.listdir(path / ".staging") == []
    names = set(os.listdir(path)) - {".staging", "lock"}
    assert names == {f"{e.id}{ext}" for e in queue.entries() for ext in (".arrow", ".json")}


def test_durations_and_sizes_read_as_numbers_with_units() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("90s") == parse_duration(90) == 90
    assert parse_duration("1.5h") == 5400
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("500MB") == 500_000_000
    assert parse_size(4096) == 4096
    for bad in ("7 days", "-1d", "0"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="not a size"):
        parse_size("1 gigabyte")


_PIPELINE = """\
source: {{csv: {{path: in.csv}}}}
sink: {{jsonl: {{path: out.jsonl}}}}
dlq: {dlq}
"""


def test_the_dlq_section_refuses_unknown_keys_with_their_location(tmp_path: Path) -> None:
    text = _PIPELINE.format(dlq="{path: dlq, max_agee: 7d}")
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, str(tmp_path / "p.yaml"), environ={})
    rendered = str(info.value)
    assert "p.yaml:3" in rendered
    assert "max_agee" in rendered
    assert "max_age" in rendered  # the did-you-mean


@pytest.mark.parametrize(
    ("dlq", "expected"),
    [
        ("{path: dlq, max_age: 7 days}", "not a duration"),
        ("{path: dlq, max_bytes: lots}", "not a size"),
        ("{max_age: 7d}", "path"),
        ("{path: dlq, sinks: [snk]}", "'snk' is not a sink of this pipeline"),
    ],
)
def test_a_bad_dlq_section_is_refused_with_a_clear_message(
    tmp_path: Path, dlq: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_pipeline(_PIPELINE.format(dlq=dlq), str(tmp_path / "p.yaml"), environ={})


def test_a_valid_dlq_section_reaches_the_plan_with_its_path_resolved(tmp_path: Path) -> None:
    from quiver.pipeline.planner import compile_plan

    text = _PIPELINE.format(dlq="{path: out/dlq, max_age: 12h, max_bytes: 10MiB, sinks: [sink]}")
    plan = compile_plan(parse_pipeline(text, str(tmp_path / "p.yaml"), environ={}))
    assert plan.dlq is not None
    assert plan.dlq_path == str(tmp_path / "out" / "dlq")
    assert (plan.dlq.max_age_seconds, plan.dlq.max_bytes_count) == (43200, 10 << 20)
    assert plan.dead_letters_of("sink")
    assert not plan.dead_letters_of("source")


def test_entries_are_listed_oldest_first_by_the_time_their_id_carries(tmp_path: Path) -> None:
    clock = _Clock()
    queue = DeadLetterQueue(str(tmp_path / "dlq"), clock=clock)
    queue.create()
    later = _add(queue)
    clock.now -= 10
    earlier = _add(queue)
    assert [e.id for e in queue.entries()] == [earlier, later]
    created = queue.get(earlier).created
    assert abs(created.timestamp() - clock.now) < 1e-3
    assert created.tzinfo == dt.UTC


def test_a_damaged_record_is_named_and_skipped_by_the_listing(tmp_path: Path) -> None:
    logs: list[str] = []
    queue = DeadLetterQueue(str(tmp_path / "dlq"), log=lambda message, level: logs.append(message))
    queue.create()
    damaged, whole = _add(queue), _add(queue)
    (tmp_path / "dlq" / f"{damaged}.json").write_text('{"id": ')
    assert [e.id for e in queue.entries()] == [whole]
    assert any(f"{damaged}.json is damaged" in m for m in logs)
    with pytest.raises(PermanentError, match="is damaged"):
        queue.get(damaged)
    assert queue.remove(damaged)  # purge still deletes it


def test_a_dlq_path_naming_a_file_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "dlq").write_text("not a directory")
    with pytest.raises(ConfigError, match="is a file, not a directory") as info:
        parse_pipeline(_PIPELINE.format(dlq="{path: dlq}"), str(tmp_path / "p.yaml"), environ={})
    assert "p.yaml:3:7 dlq.path: " in str(info.value)


def test_an_error_message_utf8_cannot_hold_is_kept_whole_and_read_back(tmp_path: Path) -> None:
    # a file name with a byte that is not UTF-8 reaches Python as a lone surrogate
    queue = DeadLetterQueue(str(tmp_path / "dlq"), pipeline="orders")
    queue.create()
    staged = queue.stage("db", "run1")
    staged.add(_rows(2))
    entry = queue.add(staged, _failure("cannot write out/in\udcff.jsonl"), "jsonl", "run1")
    assert queue.get(entry.id).message == "cannot write out/in\udcff.jsonl"
    again = queue.failed_again(entry.id, _failure("still \ud800 refused"))
    assert queue.get(entry.id).history[-1].endswith("cannot write out/in\udcff.jsonl")
    assert again.message == queue.get(entry.id).message == "still \ud800 refused"
