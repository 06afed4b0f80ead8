"""quiver.yaml loading: substitution, overrides and errors with their location."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from quiver.config.loader import load_settings, parse_override
from quiver.runtime.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "quiver.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def env_name() -> str:
    return f"QUIVER_TEST_{uuid.uuid4().hex[:8].upper()}"


def test_a_full_file_is_loaded_into_typed_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "database:\n  url: sqlite:///demo.db\n  pool_max: 3\n"
        "graphql:\n  max_depth: 7\n  introspection: false\n"
        "server:\n  port: 9001\n",
    )
    s = load_settings(path)
    assert s.database.url == "sqlite:///demo.db"
    assert s.database.pool_max == 3
    assert s.graphql.max_depth == 7
    assert s.graphql.introspection is False
    assert s.server.port == 9001
    assert s.server.host == "127.0.0.1"


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "# nothing yet\n"))
    assert s.graphql.max_depth == 15
    assert s.database.url == ""


def test_quiver_yaml_in_the_working_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "server:\n  port: 8123\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(None).server.port == 8123


def test_no_file_and_no_default_gives_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(None).server.port == 8000


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_environment_variables_are_substituted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = env_name(), env_name()
    monkeypatch.setenv(host, "db.internal")
    monkeypatch.setenv(port, "6543")
    path = write(
        tmp_path,
        f"database:\n  url: postgresql://app@${{{host}}}:${{{port}}}/shop\n"
        f"server:\n  port: ${{{port}}}\n",
    )
    s = load_settings(path)
    assert s.database.url == "postgresql://app@db.internal:6543/shop"
    assert s.server.port == 6543


def test_a_default_applies_when_the_variable_is_unset_or_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset, empty = env_name(), env_name()
    monkeypatch.setenv(empty, "")
    path = write(tmp_path, f"server:\n  host: ${{{unset}:-0.0.0.0}}\n  port: ${{{empty}:-8088}}\n")
    s = load_settings(path)
    assert s.server.host == "0.0.0.0"
    assert s.server.port == 8088


def test_an_unset_variable_without_default_is_reported_with_its_location(
    tmp_path: Path,
) -> None:
    name = env_name()
    path = write(tmp_path, f"database:\n  url: ${{{name}}}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert f"{path}:2:8" in text
    assert f"environment variable {name} is not set" in text
    assert "database.url" in text


def test_an_unset_variable_and_the_files_other_mistakes_are_reported_at_once(
    tmp_path: Path,
) -> None:
    """Every problem at once: a variable left unset does not hide an unknown or mistyped
    setting elsewhere, and the setting it leaves empty is not reported a second time."""
    name = env_name()
    path = write(
        tmp_path,
        f"database:\n  url: ${{{name}}}\n  pool_max: nope\ngraphql:\n  max_dept: 3\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problems = [(d.where, d.message) for d in info.value.details]
    assert [where for where, _ in problems] == [f"{path}:2:8", f"{path}:3:13", f"{path}:5:3"]
    assert f"environment variable {name} is not set" in problems[0][1]
    assert "database.pool_max" in problems[1][1]
    assert "max_dept" in problems[2][1]


def test_secret_files_are_read_relative_to_the_config_without_trailing_newline(
    tmp_path: Path,
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db_url").write_text("sqlite:///secret.db\n")
    path = write(tmp_path, "database:\n  url: ${file:secrets/db_url}\n")
    assert load_settings(path).database.url == "sqlite:///secret.db"


def test_a_missing_secret_file_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  url: ${file:missing.txt}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert f"{path}:2:8" in str(info.value)
    assert "cannot read secret file" in str(info.value)


def test_a_doubled_dollar_is_a_literal(tmp_path: Path) -> None:
    path = write(tmp_path, "graphql:\n  path: /api/$${raw}\n")
    assert load_settings(path).graphql.path == "/api/${raw}"


def test_unknown_key_is_rejected_with_location_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "graphql:\n  max_depht: 4\nserver:\n  port: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert f"{path}:2:3: graphql.max_depht: unknown setting" in text
    assert "did you mean 'max_depth'?" in text


def test_unknown_section_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "servr:\n  port: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert f"{path}:1:1: servr: unknown setting" in str(info.value)
    assert "did you mean 'server'?" in str(info.value)


def test_every_error_is_reported_at_once_with_the_bad_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "server:\n  port: eighty\n  workers: 0\ngraphql:\n  introspektion: true\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    details = info.value.details
    assert len(details) == 3
    text = str(info.value)
    assert f"{path}:2:9: server.port:" in text
    assert "'eighty'" in text
    assert f"{path}:3:12: server.workers:" in text
    assert "greater than or equal to 1" in text
    assert f"{path}:5:3: graphql.introspektion: unknown setting" in text


def test_yaml_syntax_errors_have_a_position(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}:")
    assert "invalid YAML" in str(info.value)


def test_a_top_level_list_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "- database\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(path)


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 1\n  port: 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert f"{path}:3:3: server.port: key given twice" in str(info.value)


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8000\n")
    key, value = parse_override("server.port=9100")
    s = load_settings(path, {key: value, "database.schemas": ["a", "b"]})
    assert s.server.port == 9100
    assert s.database.schemas == ["a", "b"]


def test_a_bad_override_names_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""), {"graphql.max_batch": "many"})
    assert "command line override: graphql.max_batch" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""), {"graphql.maxbatch": 3})
    assert "did you mean 'max_batch'?" in str(info.value)


def test_an_override_must_be_key_equals_value() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("server.port")


def test_override_values_are_read_as_yaml() -> None:
    assert parse_override("graphql.introspection=false") == ("graphql.introspection", False)
    assert parse_override("database.schemas=[a, b]") == ("database.schemas", ["a", "b"])
    assert parse_override("database.url=sqlite:///x.db") == ("database.url", "sqlite:///x.db")


def test_environment_is_not_modified(tmp_path: Path) -> None:
    before = dict(os.environ)
    load_settings(write(tmp_path, "server:\n  host: ${NOT_SET_ANYWHERE_XYZ:-h}\n"))
    assert dict(os.environ) == before


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("graphql", "not a path requests can ask for"),
        ("/graphql?pretty=1", "not a path requests can ask for"),
        ("/healthz", "liveness endpoint"),
        ("/metrics", "metrics endpoint"),
    ],
)
def test_a_graphql_path_no_request_could_reach_as_meant_is_refused(path: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"graphql\.path") as info:
        load_settings(None, {"graphql.path": path}, environ={})
    assert says in str(info.value)


def test_graphql_paths_that_requests_reach_are_taken() -> None:
    for path in ("/", "/gql/", "/api/v1/graphql", "/api: graphql"):
        assert load_settings(None, {"graphql.path": path}, environ={}).graphql.path == path


@pytest.mark.parametrize(
    "written", ["${QUIVER_TEST_UNSET_LIMIT:-}", "${QUIVER_TEST_UNSET_LIMIT:-null}"]
)
def test_an_empty_or_null_substitution_gives_null_to_a_setting_that_takes_it(
    tmp_path: Path, written: str
) -> None:
    path = tmp_path / "quiver.yaml"
    path.write_text(
        f"graphql:\n  default_list_limit: {written}\ndatabase:\n  pool_reserved: {written}\n",
        encoding="utf-8",
    )
    s = load_settings(path, environ={})
    assert s.graphql.default_list_limit is None
    assert s.database.pool_reserved is None
    s = load_settings(path, environ={"QUIVER_TEST_UNSET_LIMIT": "7"})
    assert s.graphql.default_list_limit == 7
