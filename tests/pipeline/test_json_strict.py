"""JSON as RFC 8259 has it, wherever the pipeline reads JSON text: the stdlib parser's ``NaN``,
``Infinity`` and ``-Infinity`` are refused with where they are, and documents nested deeper
than the limit every JSON reader shares are refused with their depth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quiver.pipeline.json_text import (
    MAX_JSON_DEPTH,
    DuplicateKeyError,
    JsonTooDeepError,
    json_depth,
    parse_json,
    parse_json_lines,
    parse_json_marking,
    strict_json,
)
from quiver.pipeline.processors.js import JsLookupConfig, _load_lookup
from quiver.pipeline.resume import ResumeState
from quiver.pipeline.sources.database import read_cursor_state
from quiver.runtime.errors import ConfigError

READERS = [parse_json, parse_json_marking, strict_json]


@pytest.mark.parametrize("read", READERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("text", "said"),
    [
        (b'{"a": NaN}', "NaN at line 1 column 7 is not a JSON value"),
        (b"[1,\n  Infinity]", "Infinity at line 2 column 3 is not a JSON value"),
        ('{"é": "NaN",\n "b": -Infinity}', "-Infinity at line 2 column 7 is not a JSON value"),
        # NaN inside a string, after an escaped quote and before an escaped backslash
        (rb'{"a": "q\" NaN \\", "b": NaN}', "NaN at line 1 column 26 is not a JSON value"),
    ],
)
def test_nan_and_infinities_are_refused_with_their_place(
    read: object, text: bytes, said: str
) -> None:
    with pytest.raises(ValueError, match="JSON has no NaN or infinities") as err:
        read(text)  # type: ignore[operator]
    assert said in str(err.value)


def test_a_json_lines_body_names_the_line_of_the_constant() -> None:
    with pytest.raises(ValueError, match="NaN at line 3 column 7 is not a JSON value"):
        parse_json_lines(b'{"a": 1}\n{"a": 2}\n{"a": NaN}\n')


def test_the_string_forms_and_keys_twice_are_read_as_before() -> None:
    assert str(parse_json(b'{"a": "NaN", "NaN": 1e3}')["NaN"]) == "1e3"
    assert strict_json(b'[1.5, "Infinity"]') == [1.5, "Infinity"]
    with pytest.raises(DuplicateKeyError, match="key 'a' appears twice"):
        parse_json(b'{"a": 1, "a": 2}')


@pytest.mark.parametrize("read", [parse_json, parse_json_marking], ids=lambda f: f.__name__)
def test_documents_deeper_than_the_limit_are_refused_with_their_depth(read: object) -> None:
    deep = "[" * 5000 + "]" * 5000
    for text in (deep, deep.encode()):
        with pytest.raises(JsonTooDeepError, match="5000 levels deep, more than the 128"):
            read(text)  # type: ignore[operator]
    limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert read(limit) is not None  # type: ignore[operator]


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"a": "[[[{{{"},
        {"a\\": ['"]]', {"b": ["\\\\", [[1]]]}]},
        [['x\\"[', {"y": "]}\\\\"}], "\u00e9[", [[[[[]]]]]],
    ],
)
def test_depth_counts_brackets_outside_strings_only(doc: object) -> None:
    def depth(value: object) -> int:
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        return 0

    text = json.dumps(doc, ensure_ascii=False).encode()
    assert json_depth(text) == depth(doc)


def test_a_lookup_file_with_nan_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "codes.json").write_text('{"a": {"rate": NaN}}')
    cfg = JsLookupConfig.model_validate({"path": "codes.json"})
    with pytest.raises(ConfigError, match="is not JSON: NaN at line 1 column 16"):
        _load_lookup("codes", cfg, str(tmp_path))


def test_state_files_with_nan_are_not_read(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"column": "id", "type": "float", "value": NaN}')
    with pytest.raises(ConfigError, match="unreadable state file: NaN at line 1"):
        read_cursor_state(str(state), "id")
    resume = tmp_path / "resume.json"
    resume.write_text('{"pattern": "*.csv", "completed": {"a.csv": {"size": NaN}}}')
    assert ResumeState.load(str(resume), "p", "*.csv").completed == {}
