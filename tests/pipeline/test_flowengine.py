"""FlowEngine pipeline files: translation to the native graph form, and end-to-end runs of the
examples in examples/flowengine with ``quiver run`` / ``quiver validate``."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from quiver.config.yaml_source import load_yaml
from quiver.pipeline.config import load_pipeline
from quiver.pipeline.flowengine import is_flowengine, translate
from quiver.runtime.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flowengine"
QUIVER = str(Path(sys.executable).with_name("quiver"))


def fe(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> tuple[dict[str, Any], list[str]]:
    """Write a FlowEngine file and translate it."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    text = path.read_text()
    loaded = load_yaml(text, str(path))
    assert is_flowengine(loaded.data)
    return translate(loaded.data, str(path), loaded.positions, text.splitlines())


def line_of(text: str, needle: str) -> int:
    """1-based line of ``needle`` in the file ``fe`` writes for ``text``."""
    lines = textwrap.dedent(text).lstrip().splitlines()
    return next(i for i, t in enumerate(lines, 1) if needle in t)


def fe_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        fe(tmp_path, text)
    return [d.render() for d in info.value.details]


MINIMAL = """
Pipeline:
  Name: "Minimal"
  Plugins:
    - Name: "Source"
      Type: "DelimitedSource"
      Config:
        FilePath: "in.csv"
        HasHeaders: true
        Delimiter: ";"
        Encoding: "UTF-8"
        ChunkSize: 500
        OutputSchema:
          Columns:
            - {Name: "id", Type: "Integer", Index: 0, IsNullable: false}
            - {Name: "amount", Type: "Decimal", Index: 1}
        SkipMalformedRows: true
        MaxErrors: 5
    - Name: "Transform"
      Type: "JavaScriptTransform.JavaScriptTransformPlugin"
      Config:
        TimeoutSeconds: 10
        OutputSchema:
          Fields:
            - {Name: "id", Type: "integer", Required: true}
            - {Name: "gross", Type: "decimal", Scale: 2}
        Script: |
          function process(context) {
            return true;
          }
    - Name: "Sink"
      Type: "DelimitedSink"
      Config:
        FilePath: "out/result.csv"
        HasHeaders: true
        CreateDirectory: true
        OverwriteExisting: true
  Connections:
    - {From: "Source", To: "Transform"}
    - {From: "Transform", To: "Sink"}
"""


# ------------------------------------------------------------------ translate()


def test_plugins_form_translates_to_the_graph_form(tmp_path: Path) -> None:
    doc, _ = fe(tmp_path, MINIMAL)
    assert doc == {
        "name": "Minimal",
        "steps": {
            "Source": {
                "csv": {
                    "path": "in.csv",
                    "header": False,
                    "delimiter": ";",
                    "encoding": "utf-8-sig",
                    "batch_rows": 500,
                    "types": {"id": "int32", "amount": "decimal"},
                    "columns": ["id", "amount"],
                    "skip_lines": 1,
                    "on_malformed": "reject",
                }
            },
            "Transform": {
                "js": {
                    "style": "process",
                    "script": "function process(context) {\n  return true;\n}\n",
                    "script_name": "pipeline.yaml",
                    "script_line": line_of(MINIMAL, "function process"),
                    "script_indent": 10,
                    "output_schema": {
                        "id": {"type": "integer", "required": True},
                        "gross": {"type": "decimal", "scale": 2},
                    },
                    "timeout_seconds": 10.0,
                }
            },
            "Sink": {
                "csv": {
                    "path": "out/result.csv",
                    "header": True,
                    "encoding": "utf-8-sig",
                    "create_dirs": True,
                    "overwrite": True,
                }
            },
        },
        "connections": [
            {"from": "Source", "to": "Transform"},
            {"from": "Transform", "to": "Sink"},
        ],
        "on_error": {"policy": "reject", "rejects": "pipeline.rejects.csv", "max_errors": 5},
    }


def test_keys_are_case_insensitive_like_flowengine(tmp_path: Path) -> None:
    pascal, _ = fe(tmp_path, MINIMAL, "a.yaml")
    lower = MINIMAL.replace("Pipeline:", "pipeline:").replace("FilePath", "filePath")
    lower = lower.replace("HasHeaders", "hasHeaders").replace("Plugins:", "plugins:")
    lower = lower.replace("Name:", "name:").replace("Type:", "type:").replace("Config:", "config:")
    camel, _ = fe(tmp_path, lower, "a.yaml")
    assert camel == pascal


def test_the_same_key_twice_in_two_spellings_is_an_error(tmp_path: Path) -> None:
    errors = fe_errors(
        tmp_path,
        MINIMAL.replace('FilePath: "in.csv"', 'FilePath: "in.csv"\n        filePath: "b.csv"'),
    )
    assert any("'filePath' repeats 'FilePath'" in e for e in errors)


def test_steps_and_routing_form_with_nested_variables(tmp_path: Path) -> None:
    doc, _ = fe(
        tmp_path,
        """
        variables:
          Env: prod
          Base: "/data/{Env}"
        pipeline:
          name: "Risk {Env}"
          steps:
            - id: source
              type: delimited-source
              config: {filePath: "{Base}/in.csv"}
            - id: transform
              type: javascript-transform
              config:
                engine: {timeout: 2500, memoryLimit: 10485760, enableCaching: true}
                script: "function process(context) { return true; }"
            - id: sink
              type: delimited-sink
              config: {filePath: "{Base}/out.csv", includeHeaders: false}
          connections:
            - {from: source, to: transform}
            - {from: transform, to: sink}
          routing:
            review:
              type: delimited-sink
              config: {filePath: "{Base}/review.csv"}
        """,
    )
    assert doc["name"] == "Risk prod"
    assert doc["variables"] == {"Env": "prod", "Base": "/data/prod"}
    assert doc["steps"]["source"] == {"csv": {"path": "${Base}/in.csv", "encoding": "utf-8-sig"}}
    assert doc["steps"]["sink"] == {
        "csv": {"path": "${Base}/out.csv", "header": False, "encoding": "utf-8-sig"}
    }
    assert doc["steps"]["review"] == {
        "csv": {"path": "${Base}/review.csv", "encoding": "utf-8-sig"}
    }
    assert doc["steps"]["transform"]["js"]["timeout_seconds"] == 2.5
    assert doc["steps"]["transform"]["js"]["routes"] == ["review"]
    assert {"from": "transform.review", "to": "review"} in doc["connections"]


def test_dotnet_only_keys_become_warnings_naming_key_and_position(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '    - {From: "Source", To: "Transform"}',
        '    - {From: "Source", To: "Transform", Channel: {BufferSize: 10}}',
    ).replace(
        '        FilePath: "out/result.csv"',
        '        FilePath: "out/result.csv"\n        FlushInterval: 500',
    )
    text += "  Settings:\n    DefaultChannel: {BufferSize: 1000}\n"
    _, warnings = fe(tmp_path, text)
    joined = "\n".join(warnings)
    line = line_of(text, "FlushInterval")
    assert f"pipeline.yaml:{line}:9 Pipeline.Plugins[2].Config.FlushInterval" in joined
    assert "Pipeline.Connections[0].Channel (FlowEngine channel tuning" in joined
    assert "Pipeline.Settings.DefaultChannel" in joined
    assert all(w.startswith(("ignored: ", "rows FlowEngine would drop")) for w in warnings)


def test_unknown_key_is_an_error_with_position_and_suggestion(tmp_path: Path) -> None:
    # JavaScriptTransform's schema allows no further properties: a typo there is an error
    errors = fe_errors(tmp_path, MINIMAL.replace("TimeoutSeconds: 10", "TimeoutSecond5: 10"))
    assert len(errors) == 1
    line = line_of(MINIMAL, "TimeoutSeconds")
    assert errors[0].startswith(
        f"{tmp_path / 'pipeline.yaml'}:{line}:9 Pipeline.Plugins[1].Config.TimeoutSecond5: "
    )
    assert "unknown key 'TimeoutSecond5'" in errors[0]
    assert "did you mean 'TimeoutSeconds'?" in errors[0]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace('Type: "DelimitedSink"', 'Type: "DelimitedSnk"')
        .replace('To: "Transform"}', 'To: "Transfrom"}')
        .replace('Type: "Decimal"', 'Type: "Decimel"')
    )
    errors = "\n".join(fe_errors(tmp_path, text))
    assert "unknown FlowEngine plugin type 'DelimitedSnk'; did you mean 'DelimitedSink'?" in errors
    assert "connection to unknown plugin 'Transfrom'; did you mean 'Transform'?" in errors
    assert "unknown type 'Decimel'; did you mean 'decimal'?" in errors


def test_append_mode_is_rejected_with_a_fix(tmp_path: Path) -> None:
    errors = fe_errors(tmp_path, MINIMAL.replace("OverwriteExisting: true", "AppendMode: true"))
    assert len(errors) == 1
    assert "AppendMode: true is not supported" in errors[0]
    assert "set AppendMode: false" in errors[0]


def test_a_pipeline_without_plugins_is_an_error(tmp_path: Path) -> None:
    errors = fe_errors(tmp_path, "pipeline:\n  name: empty\n")
    assert any("the pipeline has no plugins (or steps)" in e for e in errors)


# ------------------------------------------------------------------ through the loader


def test_loader_translates_and_validates_the_examples() -> None:
    spec = load_pipeline(EXAMPLES / "customer-pipeline.yaml")
    assert set(spec.steps) == {
        "CustomerSource",
        "CustomerTransform",
        "ProcessedOutput",
        "PremiumOutput",
    }
    assert spec.steps["CustomerTransform"].component == "js"
    assert any("Settings.DefaultChannel" in w for w in spec.warnings)
    routing = load_pipeline(EXAMPLES / "routing-pipeline.yaml")
    assert routing.steps["high_value_review"].kind == "sink"


def test_dollar_signs_in_scripts_survive_variable_substitution(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,name\n1,ada\n")
    (tmp_path / "p.yaml").write_text(
        textwrap.dedent(
            """\
            pipeline:
              plugins:
                - {name: src, type: DelimitedSource, config: {filePath: in.csv, hasHeaders: true}}
                - name: js
                  type: JavaScriptTransform
                  config:
                    script: |
                      function process(context) {
                        var c = context.input.current();
                        context.output.setField('label', `${c.name}-$1`);
                        return true;
                      }
                - {name: out, type: DelimitedSink, config: {filePath: out.csv}}
              connections:
                - {from: src, to: js}
                - {from: js, to: out}
            """
        )
    )
    result = subprocess.run(
        [QUIVER, "run", str(tmp_path / "p.yaml"), "--quiet"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines() == ["id,name,label", "1,ada,ada-$1"]


# ------------------------------------------------------------------ quiver run / validate


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    return tmp_path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def test_quiver_run_customer_pipeline_end_to_end(examples: Path) -> None:
    result = subprocess.run(
        [QUIVER, "run", str(examples / "customer-pipeline.yaml"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode in (0, 3), result.stderr
    out = read_csv(examples / "output" / "processed-customers.csv")
    assert [r["customer_id"] for r in out] == ["1", "2", "3", "5", "6", "8"]
    assert out[0] == {
        "customer_id": "1",
        "full_name": "Ada Lovelace",
        "age": "36",
        "age_category": "Adult",
        "email_domain": "analytical.org",
        "account_value": "125000.5",
        "value_category": "Premium",
    }
    premium = read_csv(examples / "output" / "premium-customers.csv")
    assert [(r["customer_id"], r["first_name"]) for r in premium] == [("1", "Ada")]
    rejects = read_csv(examples / "customer-pipeline.rejects.csv")
    assert [(r["line"], r["reason"]) for r in rejects] == [
        ("5", "required field 'first_name' is missing"),
        ("8", "age is not a number"),
    ]


def test_quiver_run_routing_pipeline_end_to_end(examples: Path) -> None:
    result = subprocess.run(
        [QUIVER, "run", str(examples / "routing-pipeline.yaml"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    risk = read_csv(examples / "output" / "risk-2025-01-15.csv")
    assert [(r["customer_id"], r["risk"]) for r in risk] == [
        ("2", "medium"),
        ("4", "low"),
        ("5", "low"),
        ("6", "medium"),
        ("7", "low"),
    ]
    high = read_csv(examples / "output" / "high-value-2025-01-15.csv")
    assert [r["customer_id"] for r in high] == ["1", "3", "8"]


def test_quiver_validate_points_a_script_syntax_error_into_the_pipeline_file(
    examples: Path,
) -> None:
    path = examples / "customer-pipeline.yaml"
    text = path.read_text()
    broken = text.replace(
        "var age = parseInt(customer.age, 10);", "var age = parseInt(customer.age, 10;"
    )
    assert broken != text
    path.write_text(broken)
    result = subprocess.run([QUIVER, "validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    line = next(
        i for i, t in enumerate(broken.splitlines(), 1) if "parseInt(customer.age, 10;" in t
    )
    column = broken.splitlines()[line - 1].index("10;") + 1  # V8 marks the token "10"
    flat = " ".join(result.stderr.split())
    assert f"customer-pipeline.yaml:{line}:{column}" in flat, result.stderr
    assert "SyntaxError: missing ) after argument list" in flat


def test_quiver_validate_accepts_the_examples(examples: Path) -> None:
    for name in ("customer-pipeline.yaml", "routing-pipeline.yaml"):
        result = subprocess.run(
            [QUIVER, "validate", str(examples / name)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert "ok (" in result.stderr
