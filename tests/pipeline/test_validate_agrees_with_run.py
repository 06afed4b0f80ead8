"""`quiver validate` and `quiver run` agree: a pipeline that validates clean runs clean, and
one naming a column its input lacks is refused by both, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.test_cli import quiver

INPUT = "id,total,email,ts\n1,5,a@b.c,2024-01-01 00:00:00\n2,7,c@d.e,2024-01-01 00:00:01\n"
SOURCE = "source: {csv: {path: in.csv, types: {total: int, ts: datetime}}}\n"
CSV_SINK = "sink: {csv: {path: out/out.csv}}\n"

#: (processor or sink, its step with the right column, with a misspelt one)
CASES = [
    (
        "sql",
        "sql: {query: 'select id, total from input'}",
        "sql: {query: 'select totl from input'}",
    ),
    ("derive", "derive: {columns: {g: 'total * 2'}}", "derive: {columns: {g: 'totl * 2'}}"),
    ("rename", "rename: {columns: {email: mail}}", "rename: {columns: {emial: mail}}"),
    ("cast", "cast: {columns: {total: int}}", "cast: {columns: {totle: int}}"),
    ("dedupe", "dedupe: {keys: [email]}", "dedupe: {keys: [emal]}"),
    ("validate", "validate: {schema: {total: int}}", "validate: {schema: {tota: int}}"),
    (
        "lookup",
        "lookup: {file: codes.csv, on: {id: code}}",
        "lookup: {file: codes.csv, on: {idd: code}}",
    ),
    ("select", "select: {columns: [id, total]}", "select: {columns: [id, totl]}"),
    ("filter", "filter: {expression: 'total > 1'}", "filter: {expression: 'totl > 1'}"),
    ("transform", "transform: {set: {who: 'u {email}'}}", "transform: {set: {who: 'u {emial}'}}"),
    ("redact", "redact: {fields: [email]}", "redact: {fields: [emial]}"),
    (
        "enrich",
        "enrich: {lookup: {file: codes.csv, key: id, on: code, fields: {name: owner}}}",
        "enrich: {lookup: {file: codes.csv, key: idd, on: code, fields: {name: owner}}}",
    ),
    (
        "aggregate",
        "aggregate: {time: ts, window: 10s, group_by: [email], metrics: {n: count}}",
        "aggregate: {time: ts, window: 10s, group_by: [emial], metrics: {n: count}}",
    ),
]

SINK_CASES = [
    (
        "database",
        "database: {url: 'sqlite:///out/o.db', table: t, mode: upsert, keys: [id]}",
        "database: {url: 'sqlite:///out/o.db', table: t, mode: upsert, keys: [idd]}",
    ),
    (
        "parquet",
        "parquet: {path: out/p/, partition_by: [email]}",
        "parquet: {path: out/p/, partition_by: [emial]}",
    ),
]


def pipeline(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "in.csv").write_text(INPUT)
    (tmp_path / "codes.csv").write_text("code,name\n1,one\n2,two\n")
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "p.yaml").write_text(text)
    return tmp_path


def agree(tmp_path: Path, text: str) -> tuple[int, int, str]:
    folder = pipeline(tmp_path, text)
    checked = quiver("validate", "p.yaml", cwd=folder)
    ran = quiver("run", "p.yaml", "-q", cwd=folder)
    return checked.returncode, ran.returncode, checked.stderr + ran.stderr


def written(tmp_path: Path) -> list[str]:
    return sorted(
        str(p.relative_to(tmp_path)) for p in (tmp_path / "out").rglob("*") if p.is_file()
    )


@pytest.mark.parametrize(("name", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_a_processor_validates_and_runs_alike(
    tmp_path: Path, name: str, good: str, bad: str
) -> None:
    checked, ran, err = agree(tmp_path / "good", f"{SOURCE}processors:\n  - {good}\n{CSV_SINK}")
    assert (checked, ran) == (0, 0), err
    assert written(tmp_path / "good") == ["out/out.csv"]
    checked, ran, err = agree(tmp_path / "bad", f"{SOURCE}processors:\n  - {bad}\n{CSV_SINK}")
    assert (checked, ran) == (2, 2), err
    assert "p.yaml:3:" in err, err
    assert written(tmp_path / "bad") == []


@pytest.mark.parametrize(("name", "good", "bad"), SINK_CASES, ids=[c[0] for c in SINK_CASES])
def test_a_sink_validates_and_runs_alike(tmp_path: Path, name: str, good: str, bad: str) -> None:
    checked, ran, err = agree(tmp_path / "good", f"{SOURCE}sink: {{{good}}}\n")
    assert (checked, ran) == (0, 0), err
    assert written(tmp_path / "good")
    checked, ran, err = agree(tmp_path / "bad", f"{SOURCE}sink: {{{bad}}}\n")
    assert (checked, ran) == (2, 2), err
    assert "p.yaml:2:" in err, err
    assert written(tmp_path / "bad") == []


def test_a_misspelt_delete_warns_in_both_and_runs(tmp_path: Path) -> None:
    checked, ran, err = agree(
        tmp_path, f"{SOURCE}processors:\n  - transform: {{delete: [emial]}}\n{CSV_SINK}"
    )
    assert (checked, ran) == (0, 0), err
    assert err.count("deletes column 'emial'") == 2, err
