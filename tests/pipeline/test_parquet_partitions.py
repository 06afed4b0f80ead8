"""The parquet sink writing a directory: hive-style partitions by columns and by time, plain
part files for a path ending in '/', and the errors of a directory given as a file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from quiver.runtime.errors import ConfigError
from tests.pipeline.test_engine import run, write_pipeline
from tests.pipeline.test_validation import validate

# 2026-12-05T23:30Z, 2026-12-06T00:10Z, 2026-12-06T00:50Z, 2026-12-06T03:00Z in nanoseconds
TIMES = [1796513400, 1796515800, 1796518200, 1796526000]
ROWS = [
    ("checkout", TIMES[0]),
    ("checkout", TIMES[1]),
    ("payments", TIMES[2]),
    (None, TIMES[3]),
]


def events(tmp_path: Path) -> Path:
    lines = [
        json.dumps({"service": s, "time_unix_nano": t * 1_000_000_000, "n": i})
        for i, (s, t) in enumerate(ROWS)
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def parts(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory).parent) for p in directory.rglob("*.parquet"))


def test_rows_are_partitioned_by_column_and_hour(tmp_path: Path) -> None:
    events(tmp_path)
    sink = {
        "path": "out",
        "partition_by": ["service"],
        "time_partition": {"column": "time_unix_nano", "granularity": "hour"},
    }
    path = write_pipeline(
        tmp_path, {"source": {"jsonl": {"path": "events.jsonl"}}, "sink": {"parquet": sink}}
    )
    result = run(path)
    assert result.rows_written == 4
    out = tmp_path / "out"
    assert parts(out) == [
        "service=__HIVE_DEFAULT_PARTITION__/hour=2026-12-06T03",
        "service=checkout/hour=2026-12-05T23",
        "service=checkout/hour=2026-12-06T00",
        "service=payments/hour=2026-12-06T00",
    ]
    assert all(p.name.startswith(f"part-{result.run_id}-000000") for p in out.rglob("*.parquet"))
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("n").to_pylist()) == [0, 1, 2, 3]
    one = pq.read_table(next((out / "service=payments").rglob("*.parquet")))
    assert one.column_names == ["time_unix_nano", "n"]  # the partition column is in the path
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_a_day_partition_alone_keeps_every_column(tmp_path: Path) -> None:
    events(tmp_path)
    sink = {"path": "out", "time_partition": {"column": "time_unix_nano", "granularity": "day"}}
    path = write_pipeline(
        tmp_path, {"source": {"jsonl": {"path": "events.jsonl"}}, "sink": {"parquet": sink}}
    )
    run(path)
    out = tmp_path / "out"
    assert parts(out) == ["day=2026-12-05", "day=2026-12-06"]
    day = pq.read_table(next((out / "day=2026-12-06").glob("*.parquet")))
    assert sorted(day.column("n").to_pylist()) == [1, 2, 3]
    assert day.column_names == ["service", "time_unix_nano", "n"]


def test_a_path_ending_in_a_slash_gets_part_files(tmp_path: Path) -> None:
    events(tmp_path)
    path = write_pipeline(
        tmp_path,
        {"source": {"jsonl": {"path": "events.jsonl"}}, "sink": {"parquet": {"path": "out/"}}},
    )
    result = run(path)
    files = list((tmp_path / "out").iterdir())
    assert [f.name for f in files] == [f"part-{result.run_id}-000000.parquet"]
    assert pq.read_table(files[0]).num_rows == 4


def test_a_missing_partition_column_is_named(tmp_path: Path) -> None:
    events(tmp_path)
    sink = {"path": "out", "partition_by": ["service_name"]}
    path = write_pipeline(
        tmp_path, {"source": {"jsonl": {"path": "events.jsonl"}}, "sink": {"parquet": sink}}
    )
    with pytest.raises(ConfigError) as err:
        run(path)
    assert "partition column(s) 'service_name' not in the rows" in str(err.value)
    # the option at fault, with its line in the pipeline file
    [detail] = err.value.details
    assert re.fullmatch(r".+\.yaml:\d+:\d+ sink\.parquet\.partition_by", detail.where), detail
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))


def test_validate_reports_a_directory_named_as_the_output_file(tmp_path: Path) -> None:
    events(tmp_path)
    (tmp_path / "out").mkdir()
    code, err = validate(
        tmp_path, "source: {jsonl: {path: events.jsonl}}\nsink: {parquet: {path: out}}\n"
    )
    assert code == 2, err
    assert "out is a directory" in err
    assert "end the path with '/'" in err and "partition_by" in err


def test_unknown_time_partition_keys_are_rejected(tmp_path: Path) -> None:
    events(tmp_path)
    code, err = validate(
        tmp_path,
        "source: {jsonl: {path: events.jsonl}}\n"
        "sink: {parquet: {path: out/, time_partition: {column: t, granularty: day}}}\n",
    )
    assert code == 2, err
    assert "granularty" in err


def test_partitions_gather_rows_into_full_row_groups(tmp_path: Path) -> None:
    lines = [json.dumps({"service": "ab"[i % 2], "n": i}) for i in range(40)]
    (tmp_path / "many.jsonl").write_text("\n".join(lines) + "\n")
    sink = {"path": "out", "partition_by": ["service"], "row_group_rows": 8}
    source = {"jsonl": {"path": "many.jsonl", "batch_rows": 3}}
    path = write_pipeline(tmp_path, {"source": source, "sink": {"parquet": sink}})
    run(path)
    for service in "ab":
        (part,) = (tmp_path / "out" / f"service={service}").glob("*.parquet")
        meta = pq.ParquetFile(part).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert sum(sizes) == 20 and max(sizes) >= 4 and len(sizes) <= 5, sizes
        n = pq.read_table(part).column("n").to_pylist()
        assert sorted(n) == [i for i in range(40) if "ab"[i % 2] == service]
