"""Rows a script fails on are told apart from rows whose data is wrong: the hints of
``quiver run`` say to fix the script, and one row a script cannot write never ends the run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

QUIVER = str(Path(sys.executable).with_name("quiver"))


def write_pipeline(tmp_path: Path, script: str, on_error: str) -> Path:
    (tmp_path / "in.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    path = tmp_path / "p.yaml"
    path.write_text(
        "steps:\n"
        "  src: {csv: {path: in.csv, types: {id: int}}}\n"
        f"  js: {{js: {{script: {script!r}}}}}\n"
        "  out: {csv: {path: out.csv}}\n"
        "connections: [{from: src, to: js}, {from: js, to: out}]\n"
        f"on_error: {on_error}\n"
    )
    return path


def quiver_run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QUIVER, "run", str(path), "--quiet", *args], capture_output=True, text=True
    )


THROWS = "function transform(row, ctx) { return row.missing.x; }"
REJECT = "{policy: reject, rejects: rejects.csv}"


def test_a_script_failing_on_every_row_says_to_fix_the_script(tmp_path: Path) -> None:
    result = quiver_run(write_pipeline(tmp_path, THROWS, REJECT))
    assert result.returncode == 0
    assert "the script of step 'js' failed on 3 rows, so they were rejected" in result.stderr
    assert "fix the script" in result.stderr
    assert "fix the input" not in result.stderr


def test_the_reject_limit_names_the_script_when_it_failed(tmp_path: Path) -> None:
    result = quiver_run(write_pipeline(tmp_path, THROWS, REJECT), "--max-rejects", "1")
    assert result.returncode == 1
    assert "fix: fix the script of step 'js' (it failed on" in result.stderr
    assert "TypeError: Cannot read properties of undefined" in result.stderr


def test_fail_fast_on_a_script_error_says_to_fix_the_script(tmp_path: Path) -> None:
    result = quiver_run(write_pipeline(tmp_path, THROWS, "{policy: fail_fast}"))
    assert result.returncode == 1
    assert "fix: fix the script: it failed on this row" in result.stderr


def test_a_data_error_still_says_to_fix_the_input_row(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, THROWS, "{policy: fail_fast}")
    path.write_text(path.read_text().replace("types: {id: int}", "types: {name: int}"))
    result = quiver_run(path)
    assert result.returncode == 1
    assert "fix: fix the input row" in result.stderr


def test_a_circular_object_or_lone_surrogate_rejects_only_its_row(tmp_path: Path) -> None:
    script = (
        "function transform(row, ctx) {"
        " if (row.id === 2) { var o = {}; o.self = o; row.extra = o; }"
        " if (row.id === 3) { row.name = 'x' + String.fromCharCode(0xD800); }"
        " return row; }"
    )
    result = quiver_run(write_pipeline(tmp_path, script, REJECT))
    assert result.returncode == 0, result.stderr
    assert "unexpected error" not in result.stderr
    with (tmp_path / "out.csv").open(newline="") as f:
        assert [r["id"] for r in csv.DictReader(f)] == ["1"]
    with (tmp_path / "rejects.csv").open(newline="") as f:
        rejects = list(csv.DictReader(f))
    assert [r["line"] for r in rejects] == ["3", "4"]
    assert "Converting circular structure to JSON" in rejects[0]["reason"]
    assert "lone UTF-16 surrogate" in rejects[1]["reason"]


def test_the_report_counts_script_errors_per_step(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = quiver_run(write_pipeline(tmp_path, THROWS, REJECT), "--report", str(report))
    assert result.returncode == 0
    steps = json.loads(report.read_text())["steps"]
    assert (steps["js"]["rejected"], steps["js"]["script_errors"]) == (3, 3)
    assert steps["src"]["script_errors"] == 0


def test_a_lone_surrogate_in_an_error_or_log_message_is_replaced_not_fatal(tmp_path: Path) -> None:
    script = (
        "function transform(row, ctx) {"
        " ctx.log('note ' + String.fromCharCode(0xDC00));"
        " if (row.id === 2) throw new Error('bad ' + String.fromCharCode(0xD800));"
        " return row; }"
    )
    result = quiver_run(write_pipeline(tmp_path, script, REJECT))
    assert result.returncode == 0, result.stderr
    assert "the script of step 'js' failed on 1 row, so it was rejected" in result.stderr
    with (tmp_path / "rejects.csv").open(newline="", encoding="utf-8") as f:
        (reject,) = list(csv.DictReader(f))
    assert reject["line"] == "3" and reject["reason"].startswith("bad \ufffd")


# ------------------------------------------------------------------------- the python step


def write_python_pipeline(tmp_path: Path, code: str, options: str = "") -> Path:
    (tmp_path / "in.csv").write_text("id,name\n1,a\n2,b\n3,c\n4,d\n5,e\n6,f\n7,g\n")
    (tmp_path / "t.py").write_text(code)
    path = tmp_path / "p.yaml"
    path.write_text(
        "source: {csv: {path: in.csv, types: {id: int}}}\n"
        f"processors:\n  - python: {{file: t.py{options}}}\n"
        "sink: {csv: {path: out.csv}}\n"
        f"on_error: {REJECT}\n"
    )
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_python_rows_arrow_cannot_hold_are_rejected_with_their_line(tmp_path: Path) -> None:
    code = (
        "def transform(row, ctx):\n"
        "    n = row['id']\n"
        "    if n == 2: return {'id': n, 'value': 'x\\ud800'}\n"
        "    if n == 3: return {'id': n, 'value': 'text', 'big': 2 ** 70}\n"
        "    if n == 4: return {'id': n, 'value': object()}\n"
        "    if n == 5: return {'id': n, 'value': 12}\n"
        "    if n == 6: return 'not a row'\n"
        "    if n == 7: raise ValueError('bad \\ud800 row')\n"
        "    return {'id': n, 'value': 'text'}\n"
    )
    result = quiver_run(write_python_pipeline(tmp_path, code))
    assert result.returncode == 0, result.stderr
    assert "unexpected error" not in result.stderr
    assert read_csv(tmp_path / "out.csv") == [{"id": "1", "value": "text"}]
    rejects = read_csv(tmp_path / "rejects.csv")
    assert [r["line"] for r in rejects] == ["3", "4", "5", "6", "7", "8"]
    reasons = [r["reason"] for r in rejects]
    assert "the value of 'value' (str) cannot be stored" in reasons[0]
    assert "the value of 'big' (int) cannot be stored" in reasons[1]
    assert "the value of 'value' (object) cannot be stored" in reasons[2]
    assert "(int) cannot be stored as string" in reasons[3]
    assert "transform returned str: return a dict, a list of dicts, or None" in reasons[4]
    assert reasons[5].startswith("ValueError: bad ")


def test_python_keys_only_later_rows_return_are_kept(tmp_path: Path) -> None:
    code = (
        "def transform(row, ctx):\n"
        "    if row['id'] >= 6: return {**row, 'late': row['id'] * 10}\n"
        "    return row\n"
    )
    result = quiver_run(write_python_pipeline(tmp_path, code))
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "out.csv")
    assert [r["late"] for r in rows] == ["", "", "", "", "", "60", "70"]


def test_python_output_schema_gives_the_columns_when_every_row_is_rejected(
    tmp_path: Path,
) -> None:
    code = "def transform(row, ctx):\n    raise ValueError('no')\n"
    options = ", output_schema: {id: long, label: string}"
    result = quiver_run(write_python_pipeline(tmp_path, code, options))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.csv").read_text() == "id,label\n"
    assert len(read_csv(tmp_path / "rejects.csv")) == 7


def test_python_output_schema_converts_and_rejects_by_the_declared_types(tmp_path: Path) -> None:
    code = (
        "def transform(row, ctx):\n"
        "    n = row['id']\n"
        "    if n == 2: return {'id': n, 'label': None}\n"
        "    if n == 3: return {'id': 'three', 'label': 'c'}\n"
        "    if n == 4: return {'id': n, 'label': 'd', 'extra': 1}\n"
        "    return {'id': n, 'label': row['name']}\n"
    )
    options = ", output_schema: {id: integer, label: {type: string, required: true}}"
    result = quiver_run(write_python_pipeline(tmp_path, code, options))
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in read_csv(tmp_path / "out.csv")] == ["1", "5", "6", "7"]
    reasons = [r["reason"] for r in read_csv(tmp_path / "rejects.csv")]
    assert "required field 'label' is empty" in reasons[0]
    assert "the value of 'id' (str) cannot be stored as int32" in reasons[1]
    assert "returned field 'extra', which output_schema does not declare" in reasons[2]
