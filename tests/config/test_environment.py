"""Settings from QUIVER_* environment variables, and the command line over an unset ${VAR}."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel

from quiver.config.loader import load_settings, setting_env_names
from quiver.config.settings import QuiverSettings
from quiver.runtime.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "quiver.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def unset_name() -> str:
    return f"QUIVER_TEST_UNSET_{uuid.uuid4().hex[:8].upper()}"


def test_db_on_the_command_line_overrides_an_unset_variable_in_the_file(tmp_path: Path) -> None:
    variable = unset_name()
    path = write(tmp_path, f"database:\n  url: ${{{variable}}}\n  pool_max: 4\n")
    with pytest.raises(ConfigError, match=variable):
        load_settings(path, environ={})
    s = load_settings(path, {"database.url": "sqlite:///x.db"}, environ={})
    assert s.database.url == "sqlite:///x.db"
    assert s.database.pool_max == 4


def test_an_environment_setting_also_covers_an_unset_variable_in_the_file(tmp_path: Path) -> None:
    variable = unset_name()
    path = write(tmp_path, f"database:\n  url: ${{{variable}}}\n")
    s = load_settings(path, environ={"QUIVER_DATABASE_URL": "sqlite:///y.db"})
    assert s.database.url == "sqlite:///y.db"


def _settings_within(model: type[BaseModel], prefix: str = "") -> set[str]:
    """The dotted name of every setting of ``model``, the models it holds and their settings."""
    found: set[str] = set()
    for key, info in model.model_fields.items():
        dotted = f"{prefix}.{key}" if prefix else key
        inner = info.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            if prefix:
                found.add(dotted)
            found |= _settings_within(inner, dotted)
        else:
            found.add(dotted)
    return found


def test_every_setting_has_a_quiver_environment_variable() -> None:
    names = setting_env_names()
    expected = _settings_within(QuiverSettings)
    assert "dispatcher.retry.max_attempts" in expected
    assert set(names.values()) == expected
    assert names["QUIVER_SERVER_PORT"] == "server.port"
    assert names["QUIVER_SCHEMA_FILE"] == "schema_file"
    assert names["QUIVER_DISPATCHER_RETRY_MAX_ATTEMPTS"] == "dispatcher.retry.max_attempts"
    assert len(names) == len(expected)  # no two settings share a name


def test_a_setting_inside_a_section_setting_has_its_own_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "dispatcher:\n  retry:\n    max_attempts: 3\n    max_delay: 9\n")
    env = {
        "QUIVER_DISPATCHER_RETRY_MAX_ATTEMPTS": "7",
        "QUIVER_DISPATCHER_RETRY_JITTER": "false",
    }
    s = load_settings(path, environ=env)
    assert (s.dispatcher.retry.max_attempts, s.dispatcher.retry.jitter) == (7, False)
    assert s.dispatcher.retry.max_delay == 9
    whole = {"QUIVER_DISPATCHER_RETRY": "{max_attempts: 2, multiplier: 3}"}
    s = load_settings(None, environ={**whole, "QUIVER_DISPATCHER_RETRY_MAX_ATTEMPTS": "4"})
    assert (s.dispatcher.retry.max_attempts, s.dispatcher.retry.multiplier) == (4, 3)
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ={"QUIVER_DISPATCHER_RETRY_MAX_ATTEMPTS": "0"})
    assert err.value.details[0].where == "environment variable QUIVER_DISPATCHER_RETRY_MAX_ATTEMPTS"
    with pytest.raises(ConfigError) as err:
        load_settings(
            None,
            environ={**whole, "QUIVER_DISPATCHER_RETRY": "3"}
            | {"QUIVER_DISPATCHER_RETRY_JITTER": "true"},
        )
    assert err.value.details[0].where == "environment variable QUIVER_DISPATCHER_RETRY_JITTER"


def test_an_unknown_key_inside_a_mapping_of_settings_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "names:\n  movies: {type: Film, plurl: films}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    (detail,) = err.value.details
    assert detail.message == "names.movies.plurl: unknown setting"
    assert detail.fix is not None and "did you mean 'plural'?" in detail.fix
    assert "type, plural, by_key, fields" in detail.fix


def test_environment_variables_set_values_of_every_type(tmp_path: Path) -> None:
    env = {
        "QUIVER_SERVER_PORT": "9123",
        "QUIVER_GRAPHQL_INTROSPECTION": "false",
        "QUIVER_DATABASE_SCHEMAS": "[sales, hr]",
        "QUIVER_DATABASE_URL": "postgresql://u:p#1@127.0.0.1/db?x=1",
        "QUIVER_CORS_ALLOW_ORIGINS": '["https://app.example.com"]',
        "QUIVER_LOG_FORMAT": "json",
        "QUIVER_GRAPHQL_PATH": "/api: graphql",
    }
    s = load_settings(write(tmp_path, "server:\n  port: 8001\n"), environ=env)
    assert s.server.port == 9123
    assert s.graphql.introspection is False
    assert s.database.schemas == ["sales", "hr"]
    assert s.database.url == "postgresql://u:p#1@127.0.0.1/db?x=1"
    assert s.cors.allow_origins == ["https://app.example.com"]
    assert s.log.format == "json"
    assert s.graphql.path == "/api: graphql"


def test_the_command_line_wins_over_the_environment(tmp_path: Path) -> None:
    s = load_settings(None, {"server.port": 7001}, environ={"QUIVER_SERVER_PORT": "9123"})
    assert s.server.port == 7001


def test_a_bad_environment_value_names_its_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"QUIVER_SERVER_PORT": "eighty"})
    assert "environment variable QUIVER_SERVER_PORT" in str(info.value)
    assert "server.port" in str(info.value)


def test_a_misspelt_environment_setting_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"QUIVER_SERVER_PROT": "80"})
    text = str(info.value)
    assert "QUIVER_SERVER_PROT names no setting" in text
    assert "QUIVER_SERVER_PORT" in text


def test_other_quiver_variables_are_left_alone() -> None:
    s = load_settings(None, environ={"QUIVER_SERVE_SPEC": "{}", "QUIVER_TEST_X": "1"})
    assert s.server.port == 8000


def test_quiver_check_with_db_starts_although_the_file_leaves_its_variable_unset(
    tmp_path: Path, chinook_sqlite: Path
) -> None:
    import os
    import subprocess

    from tests.graphql.servers import QUIVER

    variable = unset_name()
    write(tmp_path, f"database:\n  url: ${{{variable}}}\ngraphql:\n  max_depth: 9\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    refused = subprocess.run(
        [QUIVER, "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert f"environment variable {variable} is not set" in refused.stderr
    done = subprocess.run(
        [QUIVER, "check", "--db", f"sqlite:///{chinook_sqlite.absolute()}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "schema: 13 types" in done.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("QUIVER_NAMES", "{movies: {tpye: Film}}", "names.movies.tpye: unknown setting"),
        (
            "QUIVER_AUTH_API_KEYS",
            "[{name: ci, key: short}]",
            "auth.api_keys[0].key: string should have at least 16 characters",
        ),
        ("QUIVER_DISPATCHER_RETRY", "{max_attempts: 0}", "dispatcher.retry.max_attempts: input"),
    ],
)
def test_a_bad_value_inside_a_variables_setting_names_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "server:\n  port: 8001\n"), environ={variable: value})
    (detail,) = err.value.details
    assert detail.where == f"environment variable {variable}"
    assert detail.message.startswith(message), detail.message


def test_a_section_check_failed_by_variables_names_them_not_the_files_first_line(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "graphql:\n  max_depth: 5\n")
    env = {"QUIVER_DATABASE_POOL_MAX": "3", "QUIVER_DATABASE_POOL_RESERVED": "3"}
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=env)
    (detail,) = caught.value.details
    assert detail.where == (
        "environment variable QUIVER_DATABASE_POOL_MAX, "
        "environment variable QUIVER_DATABASE_POOL_RESERVED"
    )
    path = write(tmp_path, "database:\n  pool_max: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"QUIVER_DATABASE_POOL_RESERVED": "3"})
    (detail,) = caught.value.details
    assert detail.where == (f"{path}:2:3, environment variable QUIVER_DATABASE_POOL_RESERVED")


@pytest.mark.parametrize(
    ("variable", "meant"),
    [
        ("QUIVER_SERVR_PORT", "QUIVER_SERVER_PORT"),
        ("QUIVER_GRAPH_MAX_DEPTH", "QUIVER_GRAPHQL_MAX_DEPTH"),
        ("QUIVER_LOGLEVEL", "QUIVER_LOG_LEVEL"),
        ("QUIVER_DATABASE_URI", "QUIVER_DATABASE_URL"),
    ],
)
def test_a_variable_with_a_misspelt_section_is_refused_with_a_suggestion(
    variable: str, meant: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={variable: "8"})
    text = str(info.value)
    assert f"{variable} names no setting" in text
    assert f"did you mean {meant!r}" in text


def test_a_variable_naming_a_whole_section_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"QUIVER_GRAPHQL": "{max_depth: 4}"})
    text = str(info.value)
    assert "QUIVER_GRAPHQL names a section, not a setting" in text
    assert "QUIVER_GRAPHQL_" in text


def test_a_variable_inside_a_mapping_setting_is_refused_naming_the_whole_setting() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"QUIVER_NAMES_ITEMS_TYPE": "Thing"})
    text = str(info.value)
    assert "QUIVER_NAMES_ITEMS_TYPE names no setting" in text
    assert "did you mean 'QUIVER_NAMES'" in text
