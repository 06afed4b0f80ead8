"""`quiver validate` and the loading of pipeline files: every problem in one pass, duplicate
keys, colliding paths, missing inputs, column names bound against the input, routes."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from quiver.pipeline.config import load_pipeline
from quiver.runtime.errors import ConfigError


def problems(tmp_path: Path, text: str, name: str = "pipe.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_pipeline(path, environ={})
    return [d.render() for d in err.value.details]


def test_a_key_written_twice_is_refused_with_both_positions(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "steps:\n"
        "  read: {csv: {path: a.csv}}\n"
        "  out: {csv: {path: out.csv}}\n"
        "  read: {csv: {path: b.csv}}\n"
        "connections:\n"
        "  - {from: read, to: out}\n",
    )
    assert len(found) == 1
    assert "key 'read' is written twice" in found[0]
    assert "first at " + str(tmp_path / "pipe.yaml") + ":2:3" in found[0]
    assert "again at " + str(tmp_path / "pipe.yaml") + ":4:3" in found[0]


def test_a_duplicate_option_inside_a_step_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "source:\n  csv:\n    path: a.csv\n    path: b.csv\nsink: {csv: {path: out.csv}}\n",
    )
    assert any("key 'path' is written twice" in f and ":3:5" in f and ":4:5" in f for f in found)


def test_nested_anchors_in_a_pipeline_file_are_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    previous = "a"
    for name in "bcdefg":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    started = time.perf_counter()
    found = problems(tmp_path, "\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0
    assert "aliases (*name) expand this document" in found[0]


def test_unknown_keys_and_graph_errors_are_reported_in_one_pass(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "steps:\n"
        "  src: {csv: {path: in.csv}}\n"
        "  out: {csv: {path: out.csv}}\n"
        "connections:\n"
        "  - {from: src, to: outt}\n"
        "  - {form: src, to: out}\n"
        "unknown_top: 1\n"
        "on_error: {polcy: reject}\n"
        "taps:\n"
        "  - {step: nope}\n",
    )
    text = "\n".join(found)
    assert "unknown key 'unknown_top'" in text
    assert "unknown key 'polcy'" in text
    assert "unknown key 'form'" in text
    assert "unknown step 'outt'; did you mean 'out'?" in text
    assert "tap on unknown step 'nope'" in text


# --------------------------------------------------------------------------- colliding paths


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_two_sinks_writing_one_file_are_refused_even_through_a_symlink(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "a\n1\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "out", target_is_directory=True)
    found = problems(
        tmp_path,
        "steps:\n"
        "  src: {csv: {path: in.csv}}\n"
        "  a: {csv: {path: out/x.csv}}\n"
        "  b: {jsonl: {path: alias/../out/x.csv}}\n"
        "connections:\n"
        "  - {from: src, to: [a, b]}\n",
    )
    assert len(found) == 1
    assert "sink 'a' and sink 'b' both write " + str(tmp_path / "out/x.csv") in found[0]
    assert found[0].startswith(str(tmp_path / "pipe.yaml") + ":4:")


def test_rejects_written_to_a_sink_path_or_over_the_input_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "a\n1\n")
    base = (
        "source: {csv: {path: in.csv}}\n"
        "processors: [{validate: {schema: {a: int}}}]\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    found = problems(tmp_path, base + "on_error: {policy: reject, rejects: ./out.csv}\n")
    assert [f for f in found if "the rejects file " + str(tmp_path / "out.csv") in f]
    found = problems(tmp_path, base + "on_error: {policy: reject, rejects: in.csv}\n")
    assert [
        f
        for f in found
        if "the rejects file would write over the input " + str(tmp_path / "in.csv") in f
        and "on_error.rejects" in f
    ]


def test_a_sink_over_an_input_matched_by_a_glob_or_a_stem_pattern_is_refused(
    tmp_path: Path,
) -> None:
    write(tmp_path, "data/jan.csv", "a\n1\n")
    write(tmp_path, "data/feb.csv", "a\n2\n")
    found = problems(
        tmp_path, "source: {csv: {path: 'data/*.csv'}}\nsink: {csv: {path: 'data/{stem}.csv'}}\n"
    )
    assert len(found) == 1 and "would write over the input" in found[0]
    found = problems(
        tmp_path, "source: {csv: {path: 'data/*.csv'}}\nsink: {csv: {path: data/feb.csv}}\n"
    )
    assert len(found) == 1 and str(tmp_path / "data/feb.csv") in found[0]


def test_outputs_of_their_own_pass(tmp_path: Path) -> None:
    write(tmp_path, "data/jan.csv", "a\n1\n")
    spec = load_pipeline(
        write(
            tmp_path,
            "ok.yaml",
            "steps:\n"
            "  src: {csv: {path: 'data/*.csv'}}\n"
            "  a: {csv: {path: 'out/{stem}.csv'}}\n"
            "  b: {parquet: {path: 'out/{stem}.parquet'}}\n"
            "connections:\n"
            "  - {from: src, to: [a, b]}\n"
            "on_error: {policy: reject, rejects: 'out/{stem}.rejects.csv'}\n",
        ),
        environ={},
    )
    assert sorted(spec.steps) == ["a", "b", "src"]


# --------------------------------------------------------------------------- validate = run


def validate(tmp_path: Path, text: str) -> tuple[int, str]:
    from tests.pipeline.test_cli import quiver

    (tmp_path / "v.yaml").write_text(text)
    done = quiver("validate", "v.yaml", cwd=tmp_path)
    return done.returncode, " ".join(done.stderr.split())


def test_validate_reports_a_missing_input_file_with_a_near_name(tmp_path: Path) -> None:
    write(tmp_path, "orders.csv", "id\n1\n")
    code, err = validate(
        tmp_path, "source: {csv: {path: order.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    assert code == 2
    assert f"v.yaml:1:16 source.csv.path: input file not found: {tmp_path / 'order.csv'}" in err
    assert f"did you mean '{tmp_path / 'orders.csv'}'?" in err


def test_validate_binds_sql_against_the_input(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "id,total\n1,5\n")
    code, err = validate(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        "processors:\n  - sql: {query: 'select id, totl from input'}\n"
        "sink: {csv: {path: out.csv}}\n",
    )
    assert code == 2, err
    assert 'Referenced column "totl" not found' in err
    assert "v.yaml:3:5 processors[0]" in err


#: Each processor naming input columns, with one misspelt name, and where that name is written.
MISSPELT = [
    ("derive: {columns: {gross: 'totl * 1.2'}}", "totl", "derive.columns.gross", "total"),
    ("rename: {columns: {emial: mail}}", "emial", "rename.columns.emial", "email"),
    ("cast: {columns: {totle: int}}", "totle", "cast.columns.totle", "total"),
    ("dedupe: {keys: [id, emal]}", "emal", "dedupe.keys[1]", "email"),
    ("validate: {schema: {id: int, tota: float}}", "tota", "validate.schema.tota", "total"),
    ("lookup: {file: codes.csv, on: {idd: code}}", "idd", "lookup.on.idd", "id"),
    ("lookup: {file: codes.csv, on: [code]}", "code", "lookup.on[0]", None),
    ("select: {columns: [id, totl]}", "totl", "select.columns[1]", "total"),
    ("select: {exclude: [emil]}", "emil", "select.exclude[0]", "email"),
    ("filter: {expression: 'totl > 1'}", "totl", "filter.expression", "total"),
    ("transform: {rename: {emial: mail}}", "emial", "transform.rename.emial", "email"),
    ("transform: {set: {a: x}, rename: {a: b, idd: c}}", "idd", "transform.rename.idd", "id"),
    ("redact: {fields: [emal]}", "emal", "redact.fields[0]", "email"),
    ("aggregate: {time: tiem, window: 10s, metrics: {n: count}}", "tiem", "aggregate.time", None),
    (
        "enrich: {lookup: {file: codes.csv, key: idd, on: code}}",
        "idd",
        "enrich.lookup.key",
        "id",
    ),
]


@pytest.mark.parametrize(("step", "column", "option", "near"), MISSPELT)
def test_validate_reports_a_misspelt_column_at_the_line_naming_it(
    tmp_path: Path, step: str, column: str, option: str, near: str | None
) -> None:
    write(tmp_path, "in.csv", "id,total,email\n1,5,a@b.c\n")
    write(tmp_path, "codes.csv", "code,name\n1,one\n")
    code, err = validate(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        f"processors:\n  - {step}\n"
        "sink: {csv: {path: out.csv}}\n",
    )
    assert code == 2, err
    name = step.split(":")[0]
    at = re.search(rf"\b{column}\b", f"  - {step}")
    assert at is not None
    where = f"v.yaml:3:{at.start() + 1} processors[0].{option}"
    expected = f"{where}: step '{name}' uses column '{column}', which its input lacks"
    if near:
        expected += f"; did you mean '{near}'?"
    assert expected in err, err
    assert f"fix: the columns reaching '{name}' are: id, total, email" in err
    assert "1 problem found" in err


def test_validate_reports_every_misspelt_column_of_the_pipeline_at_once(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "id,total,email\n1,5,a@b.c\n")
    code, err = validate(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - derive: {columns: {gross: 'totl * 1.2', tier: \"case when gross > 1 then 'a' end\"}}\n"
        "  - rename: {columns: {emial: mail, id: key}}\n"
        "  - dedupe: {keys: [key, idd]}\n"
        "  - select: {columns: [key, gross, tiers, mail]}\n"
        "  - filter: {expression: \"gross > 1 and tire = 'a'\"}\n"
        "sink: {csv: {path: out.csv}}\n",
    )
    assert code == 2, err
    for line, column in [(3, "totl"), (4, "emial"), (5, "idd"), (6, "tiers"), (7, "tire")]:
        assert f"v.yaml:{line}:" in err and f"uses column '{column}'" in err, err
    assert "did you mean 'total'?" in err and "did you mean 'email'?" in err
    assert "5 problems found" in err
    assert "'totl', 'emial'" not in err  # names found missing are never suggested


def test_validate_accepts_columns_derived_earlier_and_names_that_are_no_columns(
    tmp_path: Path,
) -> None:
    write(tmp_path, "in.csv", "id,total,email\n1,5,a@b.c\n")
    code, err = validate(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - derive:\n"
        "      columns:\n"
        "        gross: 'cast(total as double) * 1.2'\n"
        "        tier: \"case when gross > 1 then 'a' end\"\n"
        "        day: current_date\n"
        "        parts: 'list_transform([1, 2], lambda x: x + length(id))'\n"
        "  - rename: {columns: {email: mail}}\n"
        "  - cast: {columns: {gross: float}}\n"
        "  - validate: {schema: {mail: str}}\n"
        "  - dedupe: {keys: [id, mail]}\n"
        "  - select: {columns: [id, gross, tier, day, parts, mail]}\n"
        "  - filter: {expression: \"tier = 'a' and input.gross > 0\"}\n"
        "sink: {csv: {path: out.csv}}\n",
    )
    assert code == 0, err


def test_validate_binds_each_step_against_the_columns_the_previous_one_gives(
    tmp_path: Path,
) -> None:
    write(tmp_path, "in.csv", "id,total\n1,5\n")
    text = (
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - sql: {query: 'select id, cast(total as integer) * 2 as doubled from input'}\n"
        "  - filter: {expression: 'doubled > 2'}\n"
        "  - select: {columns: [COLUMNS]}\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    code, err = validate(tmp_path, text.replace("COLUMNS", "id, doubled"))
    assert code == 0, err
    code, err = validate(tmp_path, text.replace("COLUMNS", "id, total"))
    assert code == 2
    assert "v.yaml:5:28 processors[2].select.columns[1]: step 'select' uses column 'total'" in err


def test_a_misspelt_route_is_an_error_with_a_did_you_mean(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "a\n1\n")
    found = problems(
        tmp_path,
        "steps:\n"
        "  src: {csv: {path: in.csv}}\n"
        "  check:\n"
        "    js:\n"
        "      script: |\n"
        "        function process(c) { if (c.current.a > 1) c.route.send('small'); return true; }\n"
        "  big: {csv: {path: big.csv}}\n"
        "  small: {csv: {path: small.csv}}\n"
        "  odd: {csv: {path: odd.csv}}\n"
        "  keep: {filter: {expression: 'a > 0', otherwise: dropped}}\n"
        "connections:\n"
        "  - {from: src, to: [check, keep]}\n"
        "  - {from: check, to: big}\n"
        "  - {from: check.smal, to: small}\n"
        "  - {from: keep.droped, to: odd}\n",
    )
    assert len(found) == 2, found
    assert "pipe.yaml:14:5 connections[2]: step 'check' has no route output 'smal'; " in found[0]
    assert "did you mean 'small'?" in found[0]
    assert "step 'keep' has no route output 'droped'; did you mean 'dropped'?" in found[1]


def test_routes_named_at_run_time_are_accepted(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "a\n1\n")
    spec = load_pipeline(
        write(
            tmp_path,
            "ok.yaml",
            "steps:\n"
            "  src: {csv: {path: in.csv}}\n"
            "  check: {js: {script: 'function process(c) { c.route.send(c.current.kind); }'}}\n"
            "  out: {csv: {path: out.csv}}\n"
            "  small: {csv: {path: small.csv}}\n"
            "connections:\n"
            "  - {from: src, to: check}\n"
            "  - {from: check, to: out}\n"
            "  - {from: check.small, to: small}\n",
        ),
        environ={},
    )
    assert "small" in spec.steps


def test_a_huge_pipeline_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: 64 MiB that cost no disk
    with pytest.raises(ConfigError) as err:
        load_pipeline(path, environ={})
    (detail,) = err.value.details
    assert "67,108,864 bytes, more than the 4,194,304 a pipeline file may have" in detail.message
    assert detail.where == str(path)


def test_a_refused_step_does_not_make_its_neighbours_look_unconnected(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "steps:\n  a: 5\n  b: {csv: {path: o.csv}}\nconnections:\n  - {from: a, to: b}\n  - 7\n",
    )
    assert len(found) == 2, found
    assert "steps.a: Input should be a valid dictionary" in found[0]
    assert "connections[1]" in found[1]


def test_a_step_with_a_typo_in_its_options_still_counts_for_colliding_paths(
    tmp_path: Path,
) -> None:
    write(tmp_path, "in.csv", "a\n1\n")
    found = problems(
        tmp_path, "source: {csv: {path: in.csv, delimter: ';'}}\nsink: {csv: {path: in.csv}}\n"
    )
    assert any("unknown key 'delimter'; did you mean 'delimiter'?" in f for f in found)
    assert any("sink 'sink' would write over the input" in f for f in found)


#: Each sink naming input columns, with one misspelt name, and where that name is written.
SINK_MISSPELT = [
    (
        "database: {url: 'sqlite:///o.db', table: t, mode: upsert, keys: [id, emial]}",
        "emial",
        "database.keys[1]",
        "email",
    ),
    ("parquet: {path: out/, partition_by: [totl]}", "totl", "parquet.partition_by[0]", "total"),
    (
        "parquet: {path: out/, time_partition: {column: tme}}",
        "tme",
        "parquet.time_partition.column",
        None,
    ),
    ("parquet: {path: o.parquet, no_dictionary: [idd]}", "idd", "parquet.no_dictionary[0]", "id"),
    (
        "s3: {bucket: b, key: k, format: {parquet: {no_dictionary: [emal]}}}",
        "emal",
        "s3.format.parquet.no_dictionary[0]",
        "email",
    ),
]


@pytest.mark.parametrize(("step", "column", "option", "near"), SINK_MISSPELT)
@pytest.mark.parametrize("through", [False, True])
def test_validate_reports_a_misspelt_sink_column_at_the_line_naming_it(
    tmp_path: Path, step: str, column: str, option: str, near: str | None, through: bool
) -> None:
    write(tmp_path, "in.csv", "id,total,email\n1,5,a@b.c\n")
    steps = "processors:\n  - rename: {columns: {id: id}}\n" if through else ""
    code, err = validate(tmp_path, f"source: {{csv: {{path: in.csv}}}}\n{steps}sink:\n  {step}\n")
    assert code == 2, err
    line = 5 if through else 3
    at = re.search(rf"\b{column}\b", f"  {step}")
    assert at is not None
    expected = (
        f"v.yaml:{line}:{at.start() + 1} sink.{option}: step 'sink' uses column '{column}', "
        "which its input lacks"
    )
    if near:
        expected += f"; did you mean '{near}'?"
    assert expected in err, err
    assert "fix: the columns reaching 'sink' are: id, total, email" in err
    assert "1 problem found" in err


def test_validate_accepts_sink_columns_the_input_has(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "id,total,email\n1,5,a@b.c\n")
    for sink in [
        "database: {url: 'sqlite:///o.db', table: t, mode: upsert, keys: [id, day]}",
        "parquet: {path: out/, partition_by: [day], no_dictionary: [email]}",
    ]:
        code, err = validate(
            tmp_path,
            "source: {csv: {path: in.csv}}\n"
            "processors:\n  - derive: {columns: {day: \"'2024-01-01'\"}}\n"
            f"sink: {{{sink}}}\n",
        )
        assert code == 0, err


def test_run_refuses_a_misspelt_upsert_key_before_writing(tmp_path: Path) -> None:
    from tests.pipeline.test_cli import quiver

    write(tmp_path, "in.csv", "id,total\n1,5\n")
    write(
        tmp_path,
        "v.yaml",
        "source: {csv: {path: in.csv}}\n"
        "sink: {database: {url: 'sqlite:///o.db', table: t, mode: upsert, keys: [idd]}}\n",
    )
    done = quiver("run", "v.yaml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "v.yaml:2:" in done.stderr and "uses column 'idd'" in done.stderr
    assert not (tmp_path / "o.db").exists()


def test_a_misspelt_no_dictionary_column_fails_the_run_instead_of_being_ignored(
    tmp_path: Path,
) -> None:
    import pyarrow as pa

    from quiver.pipeline.component import RunContext
    from quiver.pipeline.sinks.parquet import ParquetSink, ParquetSinkConfig

    sink = ParquetSink(ParquetSinkConfig(path=str(tmp_path / "o.parquet"), no_dictionary=["idd"]))
    with pytest.raises(ConfigError, match="no_dictionary names column"):
        sink._open(pa.schema([("id", pa.int64())]), RunContext("r1", str(tmp_path)))
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- deletes


def test_deleting_a_column_the_input_lacks_is_a_warning_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "id,email\n1,a@b.c\n")
    code, err = validate(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - transform: {set: {tag: x}, delete: [tag, emial]}\n"
        "sink: {csv: {path: out.csv}}\n",
    )
    assert code == 0, err
    assert (
        "warning: v.yaml:3:46 processors[0].transform.delete[1]: step 'transform' deletes "
        "column 'emial', which its input lacks (nothing is deleted); did you mean 'email'?"
    ) in err, err
    assert "'tag'" not in err  # set earlier in the step


def test_run_logs_a_missing_delete_once_and_still_runs(tmp_path: Path) -> None:
    from tests.pipeline.test_cli import quiver

    write(tmp_path, "in.csv", "id,email\n1,a@b.c\n")
    write(
        tmp_path,
        "v.yaml",
        "source: {csv: {path: in.csv}}\n"
        "processors:\n  - transform: {delete: [emial]}\n"
        "sink: {csv: {path: out.csv}}\n",
    )
    done = quiver("run", "v.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("deletes column 'emial'") == 1, done.stderr
    assert "did you mean 'email'?" in done.stderr
    assert (tmp_path / "out.csv").read_text() == "id,email\n1,a@b.c\n"


def test_a_misspelt_column_read_by_transform_is_an_error_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, "in.csv", "id,email\n1,a@b.c\n")
    code, err = validate(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - transform: {set: {who: 'user {emial}'}, rename: {idd: key}}\n"
        "sink: {csv: {path: out.csv}}\n",
    )
    assert code == 2, err
    assert (
        "v.yaml:3:35 processors[0].transform.set.who: step 'transform' uses column 'emial'" in err
    )
    assert "processors[0].transform.rename.idd: step 'transform' uses column 'idd'" in err
    assert "did you mean 'email'?" in err and "did you mean 'id'?" in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", "Input should be a valid string"),
        ("{a.csv: 1}", "Input should be a valid string"),
        ("[in.csv, 7]", "Input should be a valid string"),
    ],
)
def test_a_path_that_is_no_text_is_refused_at_its_position(
    tmp_path: Path, value: str, message: str
) -> None:
    (tmp_path / "in.csv").write_text("a\n1\n")
    found = problems(
        tmp_path, f"source: {{csv: {{path: {value}}}}}\nsink: {{csv: {{path: o.csv}}}}\n"
    )
    assert found and all(f.startswith(f"{tmp_path / 'pipe.yaml'}:1:") for f in found)
    assert any(message in f for f in found)
    assert not any("a.csv" in f for f in found)  # a mapping's keys are no paths


@pytest.mark.parametrize(
    ("sink", "rejects", "message", "fix"),
    [
        (
            "in.csv/sub/o.csv",
            "r.csv",
            "sink.csv.path: {d}/in.csv is a file, so the directory {d}/in.csv/sub for the "
            "output {d}/in.csv/sub/o.csv cannot be made",
            "choose another path for the output, or move the file away",
        ),
        (
            "o.csv",
            "in.csv/r.csv",
            "on_error.rejects: {d}/in.csv is a file, so the directory {d}/in.csv for the "
            "output {d}/in.csv/r.csv cannot be made",
            "choose another path for the output, or move the file away",
        ),
        (
            "missing/o.csv, create_dirs: false",
            "r.csv",
            "sink.csv.path: the output directory {d}/missing does not exist",
            "create it, or set `create_dirs: true`",
        ),
    ],
)
def test_an_output_whose_directory_cannot_be_made_is_refused_by_validate_and_run(
    tmp_path: Path, sink: str, rejects: str, message: str, fix: str
) -> None:
    from tests.pipeline.test_cli import quiver

    (tmp_path / "in.csv").write_text("a\n1\n")
    (tmp_path / "pipe.yaml").write_text(
        f"source: {{csv: {{path: in.csv}}}}\nsink: {{csv: {{path: {sink}}}}}\n"
        f"on_error: {{policy: reject, rejects: {rejects}}}\n"
    )
    for command in ("validate", "run"):
        done = quiver(command, "pipe.yaml", cwd=tmp_path)
        said = " ".join(done.stderr.split())
        assert done.returncode != 0, command
        assert message.format(d=tmp_path) in said, command
        assert f"fix: {fix}" in said, command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "pipe.yaml"]


def test_a_refused_option_shows_its_value_once(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a\n1\n")
    found = problems(
        tmp_path, "source: {csv: {path: in.csv, delimiter: ';;'}}\nsink: {csv: {path: o.csv}}\n"
    )
    assert len(found) == 1 and found[0].count("';;'") == 1
    assert "must be a single ASCII character, got ';;'" in found[0]
