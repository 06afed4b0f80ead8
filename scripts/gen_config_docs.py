"""Generate docs/configuration.md from the settings models.

python scripts/gen_config_docs.py          # rewrite docs/configuration.md
python scripts/gen_config_docs.py --check  # exit 1 when the committed page is stale
"""

# ruff: noqa: E501  (the page text below holds Markdown table rows and sample error lines that must stay on one line)

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from quiver.config.loader import setting_env_names
from quiver.config.settings import QuiverSettings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

INTRO = """\
# Configuration

Quiver reads its settings from `quiver.yaml` in the working directory, or from the file given
with `--config`. Every key is optional; an unknown key is an error that names the file, line and
column and suggests the setting you probably meant:

```
quiver.yaml:7:3: graphql.max_dept: unknown setting (did you mean 'max_depth'? ...)
```

```yaml
database:
  url: ${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/shop}
  pool_max: 20
graphql:
  introspection: false
  max_depth: 10
server:
  host: 0.0.0.0
  port: 8000
  workers: 2
```

## Substitution

String values may refer to the environment and to secret files. `quiver.yaml` and pipeline
files follow this one rule:

| Form | Value |
|---|---|
| `${NAME}` | the environment variable `NAME` (in a pipeline file: its variable `NAME`, see [pipeline variables](pipelines/quickstart.md#6-variables)); an error when it is not set |
| `${env:NAME}` | the environment variable `NAME`, in every file |
| `${NAME:-default}` | `NAME`, or `default` when it is unset or empty (also `${env:NAME:-default}`) |
| `${file:path}` | the content of the file (relative to the YAML file's folder), trailing newline removed |
| `$${` | a literal `${` |

Any other `$` is a literal `$`: `pa$$word` stays `pa$$word`, `$5` stays `$5`. Only the two
characters that start a reference need escaping, so a password or a shell snippet pasted into a
value keeps its dollars as written; this is why `$${` is the one escape of every Quiver file.

```yaml
database:
  url: postgresql://app:${file:secrets/db_password}@${env:DB_HOST:-127.0.0.1}/shop
graphql:
  path: /api/$${raw}          # the path is /api/${raw}
```

A value made entirely of a substitution is converted to the setting's type, so
`port: ${PORT:-8000}` gives a number, and an empty value or `null` gives null to a setting that
takes null and no text (`default_list_limit: ${LIST_LIMIT:-}` is no limit while `LIST_LIMIT` is
unset). Keys are never substituted.

A reference that cannot be resolved is an error at its own line and column, all of them at
once: an unset variable (with the closest set name, if one is near), a `${` never closed, `${}`
naming nothing, an unknown form such as `${a.b}`, or a file that cannot be read:

```
quiver.yaml:2:8: database.url: environment variable DATABSE_URL is not set; did you mean 'DATABASE_URL'? (export DATABSE_URL, or give a default with ${DATABSE_URL:-value})
```

Booleans follow YAML 1.2, as in pipeline files: `true` and `false`; `yes`, `no`, `on` and `off`
are strings, which boolean settings still accept.

## Command-line overrides

`quiver serve` and `quiver check` accept `--set key.path=value` (repeatable); the value is read as
YAML (`--set graphql.introspection=false`, `--set database.schemas=[sales,hr]`) and wins over the
file and the environment. `--db URL` is short for `--set database.url=URL`.

## Environment variables

Every setting can be given by an environment variable named after it: `QUIVER_`, the section and
the key in capitals, joined by `_` (the table below lists each name). `server.port` is
`QUIVER_SERVER_PORT`, `database.url` is `QUIVER_DATABASE_URL`, `schema_file` is
`QUIVER_SCHEMA_FILE`. A setting inside another has one too: `dispatcher.retry.max_attempts` is
`QUIVER_DISPATCHER_RETRY_MAX_ATTEMPTS`, and `QUIVER_DISPATCHER_RETRY` gives the whole of
`dispatcher.retry` as YAML (the narrower variable wins). A string setting takes the value as
written; any other reads it as YAML (`QUIVER_GRAPHQL_MAX_DEPTH=8`,
`QUIVER_DATABASE_SCHEMAS='[sales, hr]'`, `QUIVER_CORS_ALLOW_ORIGINS='["https://app.example.com"]'`).
A value the setting does not accept is an error naming the variable:

```
error: environment variable QUIVER_SERVER_PORT: server.port: input should be a valid integer, unable to parse string as an integer (got 'abc') (see docs/configuration.md for the accepted values)
```

The order is: defaults, then `quiver.yaml`, then `QUIVER_*` variables, then the command line. A
setting that the environment or the command line gives needs nothing from the file: with
`url: ${DATABASE_URL}` in `quiver.yaml` and `DATABASE_URL` unset, `quiver serve --db URL` (or
`QUIVER_DATABASE_URL=URL`) still starts. A variable that starts like a setting but names none
(`QUIVER_SERVER_PROT`), or that is a setting's name with a letter or two wrong
(`QUIVER_SERVR_PORT`, `QUIVER_LOGLEVEL`), is an error that suggests the closest name; so is a
variable naming a whole section (`QUIVER_GRAPHQL`: give each of its settings its own
variable), and one inside a setting that has no variables of its own (`QUIVER_NAMES_ITEMS_TYPE`:
give the whole of `names` as YAML in `QUIVER_NAMES`). Other `QUIVER_*` variables are left
alone.

## Settings

This reference is generated from the settings models by `scripts/gen_config_docs.py`.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(
            "null" if a is type(None) else _type_name(a) for a in typing.get_args(annotation)
        )
    if origin is list:
        (arg,) = typing.get_args(annotation)
        return f"list of {_type_name(arg)}"
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"mapping of {_type_name(key)} to {_type_name(value)}"
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in typing.get_args(annotation))
    names = {int: "integer", str: "string", bool: "boolean", float: "number"}
    if isinstance(annotation, type):
        return names.get(annotation, annotation.__name__)
    return str(annotation)


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default is PydanticUndefined:
        value = field.default_factory() if field.default_factory else None
    else:
        value = field.default
    if value is None:
        return "`null`"
    if isinstance(value, BaseModel):
        return "the defaults below"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    if value == []:
        return "`[]`"
    if value == {}:
        return "`{}`"
    return f"`{value}`"


ENV = {dotted: variable for variable, dotted in setting_env_names().items()}


def _models_within(name: str, annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The settings models a list, mapping or optional field holds, each with the path its
    entries take (``auth.api_keys[]``, ``auth.permissions.<role>.<entity>``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return [x for a in args if a is not type(None) for x in _models_within(name, a)]
    if origin is list:
        return _models_within(f"{name}[]", args[0])
    if origin is dict:
        return _models_within(f"{name}.<{_ENTRY_NAMES.get(name, 'name')}>", args[1])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(name, annotation)]
    return []


#: What the keys of a mapping setting stand for, in the paths of its entries.
_ENTRY_NAMES = {"auth.permissions": "role", "auth.permissions.<role>": "entity"}


def _nested(name: str, model: type[BaseModel]) -> list[str]:
    """Sections for the models held in lists and mappings of ``model`` (and within those,
    their optional parts too)."""
    lines: list[str] = []
    for key, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            continue  # a plain sub-model is shown inline, as before
        for path, inner in _models_within(f"{name}.{key}", ann):
            lines += _section(path, inner, nested=True)
    return lines


def _section(name: str, model: type[BaseModel], nested: bool = False) -> list[str]:
    lines = [f"### `{name}`", ""]
    lines += ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    lines += _rows(name, model, nested)
    lines.append("")
    if nested or name.count(".") == 0:
        lines += _nested(name, model)
    return lines


def _rows(name: str, model: type[BaseModel], nested: bool) -> list[str]:
    """A row per setting of ``model``, each followed by the rows of a model it holds."""
    lines: list[str] = []
    for key, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        bounds = [
            f"{label} {getattr(m, attr)}"
            for m in field.metadata
            for attr, label in (("ge", "≥"), ("le", "≤"), ("gt", ">"), ("lt", "<"))
            if hasattr(m, attr)
        ]
        if bounds:
            desc += f" ({', '.join(bounds)})"
        env = ENV.get(f"{name}.{key}") if not nested else None
        shown = f"`{name}.{key}` <br> `{env}`" if env else f"`{name}.{key}`"
        lines.append(f"| {shown} | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines += _rows(f"{name}.{key}", ann, nested)
    return lines


def render() -> str:
    lines = [INTRO]
    top: list[tuple[str, Any]] = []
    entries: list[tuple[str, type[BaseModel]]] = []
    for key, field in QuiverSettings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines += _section(key, ann)
            continue
        top.append((key, field))
        args = typing.get_args(ann)
        if (
            typing.get_origin(ann) is dict
            and isinstance(args[1], type)
            and issubclass(args[1], BaseModel)
        ):
            entries.append((f"{key}.<table>", args[1]))
    if top:
        lines += [
            "### Top level",
            "",
            "| Key | Type | Default | Description |",
            "|---|---|---|---|",
        ]
        for key, field in top:
            lines.append(
                f"| `{key}` <br> `{ENV[key]}` | {_type_name(field.annotation)} | "
                f"{_default(field)} | "
                f"{field.description or ''} |"
            )
        lines.append("")
    for name, model in entries:
        lines += _section(name, model)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is out of date: run python scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
