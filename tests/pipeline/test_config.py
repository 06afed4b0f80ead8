"""Pipeline files: both forms, variables, graph checks and errors with file:line:column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quiver.pipeline.config import load_pipeline, parse_pipeline
from quiver.pipeline.registry import ComponentRegistry, ComponentSpec
from quiver.runtime.errors import ConfigError


def option(config: object, name: str) -> Any:
    """A component option by name (the config classes belong to the components)."""
    return getattr(config, name)


def errors_of(text: str, tmp_path: Path, **kwargs: object) -> list[str]:
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_pipeline(path, environ={}, **kwargs)  # type: ignore[arg-type]
    return [d.render() for d in err.value.details]


def test_linear_form_compiles_to_a_chain_of_named_steps(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - validate: {schema: {id: int}}\n"
        "  - validate: {schema: {id: long}}\n"
        "  - sql: {query: select * from input}\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    spec = load_pipeline(tmp_path / "p.yaml", environ={})
    assert list(spec.steps) == ["source", "validate", "validate_2", "sql", "sink"]
    assert [(c.source_step, c.target) for c in spec.connections] == [
        ("source", "validate"),
        ("validate", "validate_2"),
        ("validate_2", "sql"),
        ("sql", "sink"),
    ]
    assert [s.kind for s in spec.steps.values()] == ["source", *["processor"] * 3, "sink"]
    assert spec.base_dir == str(tmp_path)
    assert spec.on_error.policy == "fail_fast"


def test_graph_form_infers_kinds_and_reads_route_outputs(tmp_path: Path) -> None:
    (tmp_path / "g.yaml").write_text(
        "steps:\n"
        "  read: {csv: {path: in.csv}}\n"
        "  clean: {filter: {expression: 'id > 0', otherwise: invalid}}\n"
        "  good: {csv: {path: good.csv}}\n"
        "  bad: {csv: {path: bad.csv}}\n"
        "connections:\n"
        "  - {from: read, to: clean}\n"
        "  - {from: clean, to: good}\n"
        "  - {from: clean.invalid, to: bad}\n"
        "taps: [{step: clean, sample: 3}]\n"
    )
    spec = load_pipeline(tmp_path / "g.yaml", environ={})
    assert {n: s.kind for n, s in spec.steps.items()} == {
        "read": "source",
        "clean": "processor",
        "good": "sink",
        "bad": "sink",
    }
    assert [(c.source_step, c.output, c.target) for c in spec.connections][-1] == (
        "clean",
        "invalid",
        "bad",
    )
    assert spec.order()[0] == "read"


def test_variables_come_from_cli_then_environment_then_file_defaults(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(
        "variables: {IN: from_file.csv, OUT: o.csv}\n"
        "source: {csv: {path: '${IN}', delimiter: '${SEP:-;}'}}\n"
        "sink: {csv: {path: 'out/${OUT}', null_string: '$${literal}'}}\n"
    )
    spec = load_pipeline(tmp_path / "v.yaml", {"OUT": "cli.csv"}, environ={"IN": "env.csv"})
    src, sink = spec.steps["source"].config, spec.steps["sink"].config
    assert option(src, "path") == "env.csv" and option(src, "delimiter") == ";"
    assert option(sink, "path") == "out/cli.csv"
    assert option(sink, "null_string") == "${literal}"


def test_an_unset_variable_is_reported_where_it_is_used(tmp_path: Path) -> None:
    errors = errors_of("source: {csv: {path: '${INPUT}'}}\nsink: {csv: {path: o.csv}}\n", tmp_path)
    assert errors == [
        f"{tmp_path}/pipe.yaml:1:23 source.csv.path: variable ${{INPUT}} is not set "
        "(pass --variable INPUT=VALUE, export INPUT, add it under `variables:`, or write "
        "${INPUT:-default})"
    ]


def test_every_problem_is_reported_at_once_with_positions_and_suggestions(
    tmp_path: Path,
) -> None:
    errors = errors_of(
        "source: {csv: {path: in.csv, delimitr: ';'}}\n"
        "processors:\n"
        "  - validate: {schema: {id: integer}}\n"
        "  - filtr: {expression: 'x > 1'}\n"
        "  - sql: {}\n"
        "sink: {csv: {path: o.csv}}\n",
        tmp_path,
    )
    where = f"{tmp_path}/pipe.yaml"
    assert len(errors) == 4
    assert errors[0].startswith(
        f"{where}:1:30 source.csv.delimitr: unknown key 'delimitr'; did you mean 'delimiter'?"
    )
    assert errors[1].startswith(f"{where}:3:25 processors[0].validate.schema.id: Input should be")
    assert "unknown processor 'filtr'; did you mean 'filter'?" in errors[2]
    assert errors[2].startswith(f"{where}:4:5 processors[1].filtr")
    assert errors[3].startswith(f"{where}:5:5 processors[2].sql")
    assert "exactly one of `query` or `file`" in errors[3]


def test_unknown_top_level_keys_are_rejected_with_a_suggestion(tmp_path: Path) -> None:
    errors = errors_of(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: o.csv}}\non_eror: {policy: reject}\n",
        tmp_path,
    )
    assert errors[0].startswith(
        f"{tmp_path}/pipe.yaml:3:1 on_eror: unknown key 'on_eror'; did you mean 'on_error'?"
    )


def test_graph_errors_unknown_steps_cycles_and_lonely_steps(tmp_path: Path) -> None:
    errors = errors_of(
        "steps:\n"
        "  read: {csv: {path: in.csv}}\n"
        "  a: {select: {columns: [x]}}\n"
        "  b: {select: {columns: [x]}}\n"
        "  alone: {csv: {path: o.csv}}\n"
        "  out: {csv: {path: o.csv}}\n"
        "connections:\n"
        "  - {from: read, to: a}\n"
        "  - {from: a, to: b}\n"
        "  - {from: b, to: a}\n"
        "  - {from: b, to: ot}\n",
        tmp_path,
    )
    text = "\n".join(errors)
    assert "unknown step 'ot'; did you mean 'out'?" in text
    assert ":11:" in text.split("unknown step 'ot'")[0].splitlines()[-1]
    assert "step 'alone' is not connected to anything" in text
    assert "cycle through" in text


def test_reject_policy_needs_a_rejects_file(tmp_path: Path) -> None:
    errors = errors_of(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: o.csv}}\non_error: {policy: reject}\n",
        tmp_path,
    )
    assert errors == [
        f"{tmp_path}/pipe.yaml:3:12 on_error.policy: `policy: reject` needs a rejects file "
        "(add `rejects: out/rejects.csv` under on_error)"
    ]


def test_yaml_syntax_errors_point_at_the_problem(tmp_path: Path) -> None:
    errors = errors_of("source: {csv: {path: in.csv}\nsink: [\n", tmp_path)
    assert errors[0].startswith(f"{tmp_path}/pipe.yaml:2:")
    assert "invalid YAML" in errors[0]


def test_a_file_with_neither_form_says_what_is_expected(tmp_path: Path) -> None:
    errors = errors_of("name: x\n", tmp_path)
    assert "neither `source`/`sink` (linear form) nor `steps`/`connections`" in errors[0]


def test_a_source_used_as_a_processor_is_named_as_such(tmp_path: Path) -> None:
    registry = ComponentRegistry(plugins=False)
    with pytest.raises(ConfigError, match="'jsonl' is a source and a sink, not a processor"):
        registry.find("processor", "jsonl")
    errors = errors_of(
        "source: {csv: {path: in.csv}}\nprocessors: [{csv: {}}]\nsink: {csv: {path: o.csv}}\n",
        tmp_path,
    )
    assert "'csv' is a source and a sink, not a processor" in errors[0]


def test_registry_lists_builtins_and_takes_programmatic_components() -> None:
    registry = ComponentRegistry(plugins=False)
    assert {"csv", "tsv", "psv", "jsonl", "parquet"} <= set(registry.names("source"))
    assert {"validate", "sql", "python", "js", "dedupe", "lookup"} <= set(
        registry.names("processor")
    )
    tsv = registry.find("source", "tsv")
    assert tsv.preset == {"delimiter": "\t"} and tsv.load().name == "csv"
    registry.add(
        ComponentSpec("processor", "rows_split", "tests.pipeline.engine_components:SplitProcessor")
    )
    assert registry.get("processor", "rows_split").cls.__name__ == "SplitProcessor"
    with pytest.raises(ConfigError, match="unknown sink 'parqet'; did you mean 'parquet'"):
        registry.get("sink", "parqet")


def test_tsv_alias_presets_the_delimiter_and_lets_options_override_it(tmp_path: Path) -> None:
    spec = parse_pipeline(
        "source: {tsv: {path: a.tsv}}\nsink: {psv: {path: b.psv}}\n",
        str(tmp_path / "x.yaml"),
        environ={},
    )
    assert option(spec.steps["source"].config, "delimiter") == "\t"
    assert option(spec.steps["sink"].config, "delimiter") == "|"


def test_step_options_are_checked_even_when_top_level_keys_are_wrong(tmp_path: Path) -> None:
    errors = errors_of(
        "source: {csv: {path: in.csv, delimitr: ';'}}\n"
        "processors: [{sql: {}}]\n"
        "sink: {csv: {path: o.csv}}\n"
        "on_eror: {policy: reject}\n",
        tmp_path,
    )
    assert [e.split(": ")[0].rsplit(" ", 1)[-1] for e in errors] == [
        "on_eror",
        "source.csv.delimitr",
        "processors[0].sql",
    ]


def _one_processor(step: str) -> str:
    return (
        "source: {csv: {path: in.csv}}\n"
        f"processors:\n  - {step}\n"
        "sink: {csv: {path: o.csv}}\n"
    )


@pytest.mark.parametrize(
    ("step", "where", "expected"),
    [
        pytest.param(
            "validate: {schema: {qty: {type: int, minimum: 0}}}",
            "pipe.yaml:3:42 processors[0].validate.schema.qty.minimum",
            "unknown key 'minimum'; did you mean 'min'?",
            id="validate-rule",
        ),
        pytest.param(
            "cast: {columns: {qty: {type: decimal, precison: 5}}}",
            "pipe.yaml:3:43 processors[0].cast.columns.qty.precison",
            "unknown key 'precison'; did you mean 'precision'?",
            id="cast-rule",
        ),
        pytest.param(
            "validate: {schema: {qty: {type: int, scale: 50}}}",
            "pipe.yaml:3:42 processors[0].validate.schema.qty.scale",
            "less than or equal to 38 (got 50)",
            id="bad-value-inside-a-rule",
        ),
        pytest.param(
            "validate: {schema: {qty: {type: str, precision: 5, scale: 9}}}",
            "pipe.yaml:3:25 processors[0].validate.schema.qty",
            "scale must not exceed precision",
            id="rule-level-check",
        ),
    ],
)
def test_a_mistake_inside_a_union_option_is_reported_once_where_it_is(
    tmp_path: Path, step: str, where: str, expected: str
) -> None:
    errors = [e.removeprefix(f"{tmp_path}/") for e in errors_of(_one_processor(step), tmp_path)]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{where}: "), errors
    assert expected in errors[0], errors
    assert "Input should be 'int'" not in errors[0]


def test_a_value_fitting_no_member_of_a_union_names_every_accepted_shape(tmp_path: Path) -> None:
    errors = errors_of(
        "source: {csv: {path: {file: in.csv}}}\nsink: {csv: {path: o.csv}}\n", tmp_path
    )
    assert [e.removeprefix(f"{tmp_path}/") for e in errors] == [
        "pipe.yaml:1:16 source.csv.path: Input should be a valid string or a valid list "
        "(correct the value)"
    ]
    errors = errors_of(_one_processor("validate: {schema: {qty: integer}}"), tmp_path)
    assert len(errors) == 1 and "Input should be 'int', 'long'" in errors[0], errors
    assert "(got 'integer')" in errors[0]


def test_the_pipeline_models_default_factories_are_functions_of_their_own() -> None:
    """Pydantic reads a default factory's signature when it builds a model: for a class or a
    builtin (``list``) that costs every ``quiver`` start time (see config._made_by)."""
    import types

    from pydantic import BaseModel

    from quiver.pipeline import config

    models = [
        v
        for v in vars(config).values()
        if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == config.__name__
    ]
    factories = {
        (model.__name__, name): f.default_factory
        for model in models
        for name, f in model.model_fields.items()
        if f.default_factory is not None
    }
    assert len(factories) >= 8
    odd = [where for where, f in factories.items() if not isinstance(f, types.FunctionType)]
    assert odd == []
    # what they make is what the class or builtin makes
    spec = config.LinearPipelineConfig.model_validate({"source": {"csv": {}}, "sink": {"csv": {}}})
    assert spec.processors == [] and spec.taps == [] and spec.variables == {}
    assert spec.engine == config.EngineSettings.model_validate({})
    assert spec.engine.retry is not config.EngineSettings().retry
