"""Scripts, queries and other strings that are not text UTF-8 can carry (a file in another
encoding, half of a UTF-16 surrogate pair from a YAML escape) are refused before the run,
naming the place of the first character at fault, by `validate` and `run` alike; never an
encoder's traceback. The two halves of a pair written as escapes make their character."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.test_cli import quiver

SOURCE = "source: {csv: {path: in.csv}}\n"
SINK = "sink: {csv: {path: out.csv}}\n"


def _pipeline(tmp_path: Path, step: str) -> Path:
    (tmp_path / "in.csv").write_text("id\n1\n")
    path = tmp_path / "p.yaml"
    path.write_text(SOURCE + "processors:\n  - " + step + "\n" + SINK)
    return path


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(
    ("step", "file", "expected"),
    [
        (
            "js: {script: \"function transform(row) {\\n  row.x = '\\ud800'; return row; }\"}",
            None,
            "p.yaml:3:18: this string holds U+D800, half of a UTF-16 surrogate pair without the "
            "other half",
        ),
        (
            "js: {file: bad.js}",
            b"function transform(row) {\n  row.x = '\xff'; return row; }\n",
            "the script file is not UTF-8 text: byte 0xff at line 2, column 12",
        ),
        (
            "sql: {query: \"select *, '\\udc80' as x from input\"}",
            None,
            "p.yaml:3:18: this string holds U+DC80",
        ),
        (
            "filter: {expression: \"id <> '\\ude00\\ud83d'\"}",
            None,
            "p.yaml:3:26: this string holds U+DE00",
        ),
        (
            "sql: {file: bad.sql}",
            b"select *,\n  '\xe9' as x from input\n",
            "the query file is not UTF-8 text: byte 0xe9 at line 2, column 4",
        ),
    ],
    ids=["js-inline", "js-file", "sql-inline", "sql-file", "filter-halves-reversed"],
)
def test_text_that_is_not_utf8_is_refused_with_its_place(
    tmp_path: Path, command: str, step: str, file: bytes | None, expected: str
) -> None:
    path = _pipeline(tmp_path, step)
    if file is not None:
        name = "bad.js" if step.startswith("js") else "bad.sql"
        (tmp_path / name).write_bytes(file)
    done = quiver(command, str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "Error:" not in done.stderr
    assert not (tmp_path / "out.csv").exists()


def test_both_halves_of_a_pair_written_as_escapes_make_their_character(tmp_path: Path) -> None:
    step = "js: {script: \"function transform(row) { row.x = '\\ud83d\\ude00'; return row; }\"}"
    path = _pipeline(tmp_path, step)
    done = quiver("run", str(path), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.csv").read_text(encoding="utf-8") == "id,x\n1,\U0001f600\n"


def test_a_step_configured_in_python_refuses_half_a_pair_too(tmp_path: Path) -> None:
    from quiver.pipeline.component import RunContext
    from quiver.pipeline.processors.js import JsProcessor, JsProcessorConfig

    proc = JsProcessor(JsProcessorConfig(script="function transform(r) {\n r.x = '\ud800'; }"))
    problems = proc.check(RunContext("t", str(tmp_path), {}))
    assert [p.message for p in problems] == [
        "the inline script holds U+D800, half of a UTF-16 surrogate pair, at line 2, column 9: "
        "it is not text"
    ]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_environment_value_that_is_not_utf8_is_refused_with_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("QUIVER_TEST_VALUE", "a\udce9")  # the bytes b"a\xe9" in the environment
    path = _pipeline(tmp_path, 'filter: {expression: "id <> ${QUIVER_TEST_VALUE}"}')
    done = quiver(command, str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "p.yaml:3:33 processors[0].filter.expression: variable ${QUIVER_TEST_VALUE} is not "
        "UTF-8 text: its value holds byte 0xe9 at character 2"
    ) in done.stderr, done.stderr
    assert "fix: set QUIVER_TEST_VALUE to UTF-8 text" in done.stderr
