"""``${...}`` in pipeline files: where values come from, secret files, escapes and errors, as
``quiver validate`` and ``quiver run`` show them."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from quiver.pipeline.config import load_pipeline
from quiver.runtime.errors import ConfigError


def quiver(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command in-process, as the console script would."""
    from typer.testing import CliRunner

    from quiver.cli import app

    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "in.csv").write_text("id,name\n1,ada\n")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def errors_of(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_pipeline(path, environ={}, **kwargs)  # type: ignore[arg-type]
    return [d.render() for d in err.value.details]


def test_the_command_line_wins_over_the_environment_which_wins_over_the_file(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "variables: {A: file, B: file, C: file}\n"
        "source: {csv: {path: in.csv}}\n"
        "sink: {csv: {path: '${A}-${B}-${C}.csv'}}\n",
    )
    spec = load_pipeline(path, {"A": "cli"}, environ={"A": "env", "B": "env"})
    assert spec.steps["sink"].config.path == "cli-env-file.csv"  # type: ignore[union-attr]
    assert spec.variables["A"] == "cli"


def test_env_prefix_reads_only_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "variables: {HOST: file}\n"
        "source: {csv: {path: in.csv}}\n"
        "sink: {csv: {path: '${env:HOST}.csv', null_string: '${env:MISSING:-none}'}}\n",
    )
    spec = load_pipeline(path, {"HOST": "cli"}, environ={"HOST": "env"})
    assert spec.steps["sink"].config.path == "env.csv"  # type: ignore[union-attr]
    assert spec.steps["sink"].config.null_string == "none"  # type: ignore[union-attr]
    assert errors_of(path, variables={"HOST": "cli"})[0].startswith(
        f"{path}:3:21 sink.csv.path: environment variable HOST is not set"
    )


def test_a_default_applies_to_an_empty_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "source: {csv: {path: in.csv}}\nsink: {csv: {path: '${OUT:-o}.csv'}}\n")
    spec = load_pipeline(path, {"OUT": ""}, environ={})
    assert spec.steps["sink"].config.path == "o.csv"  # type: ignore[union-attr]


def test_a_secret_file_is_read_relative_to_the_pipeline_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "secrets").mkdir()
    (tmp_path / "sub" / "secrets" / "null").write_text("N/A\n")
    path = tmp_path / "sub" / "p.yaml"
    path.write_text(
        "source: {csv: {path: in.csv}}\n"
        "sink: {csv: {path: o.csv, null_string: '${file:secrets/null}'}}\n"
    )
    spec = load_pipeline(path, environ={})
    assert spec.steps["sink"].config.null_string == "N/A"  # type: ignore[union-attr]


def test_a_missing_secret_file_is_an_error_with_its_position_and_the_folder(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path, "source: {csv: {path: in.csv}}\nsink: {csv: {path: '${file:nope.txt}'}}\n"
    )
    (error,) = errors_of(path)
    assert error.startswith(
        f"{path}:2:21 sink.csv.path: cannot read secret file '{tmp_path}/nope.txt'"
    )
    assert f"(check the path (a relative path starts in {tmp_path}))" in error


def test_an_unknown_variable_suggests_a_declared_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "variables: {INPUT: in.csv}\nsource: {csv: {path: '${INPTU}'}}\n"
        "sink: {csv: {path: o.csv}}\n",
    )
    (error,) = errors_of(path)
    assert error.startswith(
        f"{path}:2:23 source.csv.path: variable ${{INPTU}} is not set; did you mean 'INPUT'?"
    )
    assert "(pass --variable INPTU=VALUE" in error


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'in ${X.csv'", ":2:26 source.csv.path: '${' is not closed"),
        ("'in ${}.csv'", ":2:26 source.csv.path: '${}' names no variable"),
        ("'${env:}'", ":2:23 source.csv.path: '${env:}' names no variable"),
    ],
)
def test_bad_references_are_one_clear_error_each(tmp_path: Path, value: str, message: str) -> None:
    path = write(
        tmp_path,
        f"variables: {{X: x}}\nsource: {{csv: {{path: {value}}}}}\n"
        "sink: {csv: {path: o.csv}}\n",
    )
    (error,) = errors_of(path)
    assert error.startswith(f"{path}{message}")
    done = quiver("validate", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_dollar_dollar_brace_is_a_literal_reference_without_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: o.csv, null_string: '$${X} $5'}}\n",
    )
    spec = load_pipeline(path, environ={})
    assert spec.steps["sink"].config.null_string == "${X} $5"  # type: ignore[union-attr]
    assert spec.warnings == []


DEPRECATED = (
    "source: {csv: {path: in.csv}}\n"
    "processors:\n"
    "  - js:\n"
    "      script: |\n"
    "        function transform(row) {\n"
    "          row.label = `${row.name}` + '$$';\n"
    "          return row;\n"
    "        }\n"
    "sink: {csv: {path: out.csv}}\n"
)


def test_the_old_escapes_still_work_and_the_loader_warns_where_they_are(tmp_path: Path) -> None:
    path = write(tmp_path, DEPRECATED)
    spec = load_pipeline(path, environ={})
    assert "`${row.name}` + '$';" in spec.steps["js"].config.script  # type: ignore[union-attr]
    assert spec.warnings == [
        f"{path}:6:24 processors[0].js.script: '${{row.name}}' names no variable and is kept "
        "as written; this is deprecated (write '$${row.name}' for a literal '${row.name}')",
        f"{path}:6:40 processors[0].js.script: '$$' for a literal '$' is deprecated "
        "(write a single '$'; only '${' needs escaping, as '$${')",
    ]


def test_validate_and_run_show_the_deprecation_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, DEPRECATED)
    checked = quiver("validate", "p.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "p.yaml:6:40 processors[0].js.script: '$$' for a literal '$' is deprecated" in (
        checked.stderr
    )
    ran = quiver("run", "p.yaml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "p.yaml:6:40 processors[0].js.script: '$$' for a literal '$' is deprecated" in (
        ran.stderr
    )
    assert (tmp_path / "out.csv").read_text() == "id,name,label\n1,ada,ada$\n"
    assert path.is_file()


def test_validate_reports_unset_variables_without_follow_on_errors(tmp_path: Path) -> None:
    (tmp_path / "codes.csv").write_text("id,code\n1,a\n")
    path = write(
        tmp_path,
        "source: {csv: {path: '${INPUT_DIR}/in.csv', batch_rows: '${ROWS}'}}\n"
        "processors:\n"
        "  - filter: {expression: '${COL} > 1'}\n"
        "  - select: {columns: [id, '${KEEP}']}\n"
        "  - lookup: {file: '${LOOKUP}', on: [id]}\n"
        "  - js: {script: 'function transform(r, c) { c.route.send(\"${ROUTE}\"); }'}\n"
        "steps_note: 1\n"
        "sink: {database: {url: '${DB_URL}', table: t}}\n",
    )
    done = quiver("validate", str(path), cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    names = ["INPUT_DIR", "ROWS", "COL", "KEEP", "LOOKUP", "ROUTE", "DB_URL"]
    assert [n for n in names if f"variable ${{{n}}} is not set" in done.stderr] == names
    # the one problem that is no unset variable is still found
    assert "unknown key 'steps_note'" in done.stderr
    assert len(errors) == len(names) + 1, done.stderr
    assert "8 problems found" in done.stderr


def test_a_step_with_an_unset_variable_still_reports_its_other_mistakes(tmp_path: Path) -> None:
    found = errors_of(
        write(
            tmp_path,
            "source: {csv: {path: in.csv}}\n"
            "processors:\n  - filter: {expression: '${COL} > 1', otherwize: no}\n"
            "sink: {csv: {path: '${OUT}'}}\n",
        )
    )
    assert len(found) == 3, found
    assert "variable ${COL} is not set" in found[0]
    assert "variable ${OUT} is not set" in found[1]
    assert "unknown key 'otherwize'" in found[2]
