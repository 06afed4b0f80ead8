"""The one YAML reader (positions) and the one ``${...}`` substitution of every Quiver file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quiver.config.yaml_source import (
    Mark,
    Positions,
    Substituted,
    Variables,
    escape,
    format_path,
    load_yaml,
    substitute,
)
from quiver.runtime.errors import ConfigError

F = "f.yaml"


def run(
    text: str,
    *,
    environ: dict[str, str] | None = None,
    names: dict[str, str] | None = None,
    base_dir: Path = Path("/nonexistent"),
    legacy: bool = False,
) -> Substituted:
    doc = load_yaml(text, F)
    variables = Variables(environ or {}, base_dir, names=names, legacy_escapes=legacy)
    return substitute(doc.data, variables, doc.positions)


def value(text: str, **kwargs: Any) -> Any:
    done = run(text, **kwargs)
    assert not done.errors, [e.render(F) for e in done.errors]
    return done.data["v"]


def only_error(text: str, **kwargs: Any) -> str:
    done = run(text, **kwargs)
    assert len(done.errors) == 1, done.errors
    return done.errors[0].render(F)


# ------------------------------------------------------------------------------- positions


def test_every_key_item_and_value_has_its_line_and_column() -> None:
    doc = load_yaml("a:\n  b: 1\n  c:\n    - x\n    - {d: y}\n", F)
    p = doc.positions
    assert p.key(("a",)) == Mark(F, 1, 1)
    assert p.key(("a", "b")) == Mark(F, 2, 3)
    assert p.value(("a", "b")) == Mark(F, 2, 6)
    assert p.key(("a", "c", 1)) == Mark(F, 5, 7)
    assert p.key(("a", "c", 1, "d")) == Mark(F, 5, 8)
    assert p.value(("a", "c", 1, "d")) == Mark(F, 5, 11)


def test_where_names_the_nearest_known_key_and_the_field_path() -> None:
    p = load_yaml("source:\n  csv: {path: x}\n", F).positions
    assert p.where(("source", "csv", "path")) == "f.yaml:2:9 source.csv.path"
    assert p.where(("source", "csv", "nope")) == "f.yaml:2:3 source.csv.nope"
    assert p.where(()) == "f.yaml:1:1"
    assert p.line_of(("source", "csv")) == 2


def test_format_path_writes_items_in_brackets() -> None:
    assert format_path(("processors", 2, "js", "script")) == "processors[2].js.script"
    assert format_path(()) == ""


def test_booleans_follow_yaml_1_2() -> None:
    data = load_yaml("a: yes\nb: NO\nc: on\nd: true\ne: False\n", F).data
    assert data == {"a": "yes", "b": "NO", "c": "on", "d": True, "e": False}


def test_keys_given_twice_and_keys_that_are_not_strings_are_reported() -> None:
    doc = load_yaml("a: 1\n1: x\na: 2\n", F)
    assert doc.data == {"a": 2, 1: "x"}
    (twice,) = doc.duplicate_keys
    assert (twice.path, twice.first, twice.again) == (("a",), Mark(F, 1, 1), Mark(F, 3, 1))
    (odd,) = doc.non_string_keys
    assert (odd.path, odd.key, odd.mark) == ((1,), 1, Mark(F, 2, 1))


def test_anchors_and_merge_keys_are_read() -> None:
    doc = load_yaml("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\nloop: &l [*l]\n", F)
    assert doc.data["use"] == {"x": 1, "y": 2}
    assert not doc.duplicate_keys and not doc.non_string_keys


def test_a_syntax_error_is_one_error_with_its_position() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml("a: [1, 2\nb: 3\n", F)
    (detail,) = info.value.details
    assert detail.where.startswith("f.yaml:2:")
    assert detail.message.startswith("invalid YAML:")


def test_an_unknown_tag_is_an_error_not_a_traceback() -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml("a: !!python/object:os.system x\n", F)


def test_an_empty_document_has_no_data() -> None:
    assert load_yaml("# nothing\n", F).data is None


# ---------------------------------------------------------------------------- substitution


def test_a_name_is_the_environment_when_the_file_has_no_variables_of_its_own() -> None:
    assert value("v: a-${X}-b\n", environ={"X": "1"}) == "a-1-b"
    assert value("v: ${env:X}\n", environ={"X": "1"}) == "1"


def test_a_name_is_the_files_variable_and_env_is_always_the_environment() -> None:
    kw: dict[str, Any] = {"environ": {"X": "from env"}, "names": {"X": "variable"}}
    assert value("v: ${X}\n", **kw) == "variable"
    assert value("v: ${env:X}\n", **kw) == "from env"


def test_a_variable_named_env_may_have_a_default() -> None:
    assert value("v: ${env:-d}\n", names={"env": "e"}) == "e"
    assert value("v: ${env:-d}\n", names={}) == "d"


def test_a_default_applies_when_unset_or_empty() -> None:
    assert value("v: ${X:-d}\n") == "d"
    assert value("v: ${X:-d}\n", environ={"X": ""}) == "d"
    assert value("v: ${env:X:-d}\n", environ={"X": "set"}) == "set"
    assert value("v: ${X:-}\n") == ""


def test_a_file_is_read_relative_to_the_base_directory_without_its_last_newline(
    tmp_path: Path,
) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "token").write_text("abc\n\n")
    assert value("v: 'Bearer ${file:s/token}'\n", base_dir=tmp_path) == "Bearer abc\n"
    assert value(f"v: ${{file:{tmp_path}/s/token}}\n", base_dir=Path("/")) == "abc\n"


def test_keys_and_non_strings_are_left_alone() -> None:
    done = run("'${X}': 1\nn: 5\nl: [true, null]\n", environ={"X": "x"})
    assert done.data == {"${X}": 1, "n": 5, "l": [True, None]}


# ---------------------------------------------------------------------------------- escapes


def test_dollar_dollar_brace_is_a_literal_reference() -> None:
    assert value("v: $${X} and $${file:y}\n") == "${X} and ${file:y}"


def test_any_other_dollar_is_literal() -> None:
    assert value("v: 'cost $5, pa$$word, $'\n") == "cost $5, pa$$word, $"


def test_escape_gives_the_text_back_unchanged() -> None:
    text = "a ${X} $${Y} $$ $"
    assert value(f"v: '{escape(text)}'\n") == text


def test_the_old_pipeline_escape_is_accepted_with_a_deprecation_at_its_position() -> None:
    done = run("v: 'cost $$5 ${X}'\n", names={"X": "x"}, legacy=True)
    assert done.data["v"] == "cost $5 x"
    (dep,) = done.deprecations
    assert dep.mark == Mark(F, 1, 10)
    assert dep.render(F) == (
        "f.yaml:1:10 v: '$$' for a literal '$' is deprecated "
        "(write a single '$'; only '${' needs escaping, as '$${')"
    )


def test_legacy_mode_still_reads_dollar_dollar_brace_as_a_literal_reference() -> None:
    done = run("v: $${X} $$${X}\n", names={"X": "x"}, legacy=True)
    assert done.data["v"] == "${X} $x"
    assert len(done.deprecations) == 1


def test_legacy_mode_keeps_a_reference_that_names_nothing_with_a_deprecation() -> None:
    done = run("v: |\n  a = `${row.id}`;\n", legacy=True)
    assert done.data["v"] == "a = `${row.id}`;\n"
    (dep,) = done.deprecations
    assert dep.mark == Mark(F, 2, 8)
    assert "write '$${row.id}' for a literal '${row.id}'" in dep.fix


def test_without_legacy_mode_there_are_no_deprecations() -> None:
    done = run("v: a$$b\n", legacy=False)
    assert done.data["v"] == "a$$b" and not done.deprecations


# ----------------------------------------------------------------------------------- errors


def test_an_unset_environment_variable_is_an_error_at_the_reference() -> None:
    assert only_error("v: 'x ${NOPE}'\n") == (
        "f.yaml:1:7 v: environment variable NOPE is not set "
        "(export NOPE, or give a default with ${NOPE:-value})"
    )
    assert "${env:NOPE:-value}" in only_error("v: ${env:NOPE}\n", names={})


def test_an_unset_variable_suggests_the_closest_known_name() -> None:
    text = only_error("v: ${INPTU}\n", names={"INPUT": "a", "OUTPUT": "b"})
    assert "f.yaml:1:4 v: variable ${INPTU} is not set; did you mean 'INPUT'?" in text
    text = only_error("v: ${DATABSE_URL}\n", environ={"DATABASE_URL": "x"})
    assert "did you mean 'DATABASE_URL'?" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v: 'abc ${X'\n", "f.yaml:1:9 v: '${' is not closed"),
        ("v: ${}\n", "f.yaml:1:4 v: '${}' names no variable"),
        ("v: ${:-d}\n", "f.yaml:1:4 v: '${:-d}' names no variable"),
        ("v: ${env:}\n", "f.yaml:1:4 v: '${env:}' names no variable"),
        ("v: ${file:}\n", "f.yaml:1:4 v: '${file:}' names no file"),
        ("v: ${a.b}\n", "f.yaml:1:4 v: '${a.b}' is not a valid reference"),
    ],
)
def test_bad_references_are_one_error_each_with_their_position(text: str, message: str) -> None:
    assert only_error(text).startswith(message)


def test_an_unterminated_reference_is_an_error_even_in_legacy_mode() -> None:
    assert "is not closed" in only_error("v: a ${X\n", legacy=True)


def test_a_missing_file_is_an_error_with_its_position_and_the_folder_searched(
    tmp_path: Path,
) -> None:
    text = only_error("k:\n  v: ${file:nope.txt}\n", base_dir=tmp_path)
    assert text.startswith(f"f.yaml:2:6 k.v: cannot read secret file '{tmp_path}/nope.txt'")
    assert f"a relative path starts in {tmp_path}" in text


def test_every_error_is_collected() -> None:
    done = run("a: ${A}\nb: ['${B}', ok]\nc: ${}\n")
    assert [e.mark for e in done.errors] == [Mark(F, 1, 4), Mark(F, 2, 6), Mark(F, 3, 4)]
    assert done.data == {"a": "", "b": ["", "ok"], "c": ""}


def test_positions_inside_values_follow_quotes_and_block_scalars() -> None:
    p = load_yaml("a: 'xy'\nb: |\n    one\n    two\nc: \"q\"\n", F).positions
    assert isinstance(p, Positions)
    assert p.inside(("a",), "xy", 1) == Mark(F, 1, 6)
    assert p.inside(("b",), "one\ntwo\n", 5) == Mark(F, 4, 6)
    assert p.inside(("c",), "q", 0) == Mark(F, 5, 5)
    assert p.inside(("missing",), "x", 0) is None
