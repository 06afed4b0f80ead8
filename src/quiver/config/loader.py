"""Load ``quiver.yaml``: YAML with ``${ENV}`` / ``${file:path}`` substitution and CLI overrides.

Every problem is reported with the ``file:line:column`` of the key (or value) at fault, all of
them at once, and an unknown key comes with a "did you mean" suggestion::

    quiver.yaml:7:3: graphql.max_dept: unknown setting (did you mean 'max_depth'?)

Substitution happens inside string scalars only:

* ``${NAME}`` is the environment variable ``NAME`` (an error when it is not set);
* ``${NAME:-default}`` falls back to ``default`` when ``NAME`` is unset or empty;
* ``${file:path}`` is the content of a secret file (relative to the YAML file), without its
  trailing newline;
* ``$${`` is a literal ``${``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from quiver.config.settings import QuiverSettings
from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = ["DEFAULT_CONFIG_FILE", "load_settings", "parse_override"]

DEFAULT_CONFIG_FILE = "quiver.yaml"

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class _Mark:
    file: str
    line: int
    column: int

    def render(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class _Document:
    """Plain values built from a YAML node tree, with the mark of every key and value."""

    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.key_marks: dict[Loc, _Mark] = {}
        self.value_marks: dict[Loc, _Mark] = {}
        self.errors: list[ErrorDetail] = []
        self._constructor = yaml.SafeLoader("")

    def mark(self, node: yaml.Node) -> _Mark:
        m = node.start_mark
        return _Mark(self.file, m.line + 1, m.column + 1)

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.value_marks[loc] = self.mark(node)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self.errors.append(
                        ErrorDetail(
                            f"{_dotted(loc) or 'top level'}: keys must be strings, got {key!r}",
                            self.mark(key_node).render(),
                            "quote the key or use a setting name",
                        )
                    )
                    continue
                child = (*loc, key)
                if key in out:
                    self.errors.append(
                        ErrorDetail(
                            f"{_dotted(child)}: key given twice",
                            self.mark(key_node).render(),
                            f"keep one '{key}' (the first is at {self.key_marks[child].render()})",
                        )
                    )
                    continue
                self.key_marks[child] = self.mark(key_node)
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        value = self._constructor.construct_object(node, deep=True)
        if isinstance(value, str) and "$" in value:
            return self._substitute(value, node, loc)
        return value

    def _substitute(self, text: str, node: yaml.Node, loc: Loc) -> str:
        where = self.mark(node).render()

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            ref = match.group(1)
            if ref.startswith("file:"):
                return self._read_secret(ref[5:], where, loc)
            name, sep, default = ref.partition(":-")
            if not _ENV_NAME.match(name):
                self.errors.append(
                    ErrorDetail(
                        f"{_dotted(loc)}: '${{{ref}}}' is not a valid reference",
                        where,
                        "write ${NAME}, ${NAME:-default} or ${file:path}; $${ is a literal ${",
                    )
                )
                return ""
            value = os.environ.get(name)
            if sep and not value:
                return default
            if value is None:
                self.errors.append(
                    ErrorDetail(
                        f"{_dotted(loc)}: environment variable {name} is not set",
                        where,
                        f"export {name}, or give a default with ${{{name}:-value}}",
                    )
                )
                return ""
            return value

        return _REF.sub(replace, text)

    def _read_secret(self, raw: str, where: str, loc: Loc) -> str:
        path = Path(raw.strip())
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.errors.append(
                ErrorDetail(
                    f"{_dotted(loc)}: cannot read secret file {str(path)!r}: {exc.strerror or exc}",
                    where,
                    "check the path (relative paths start at the configuration file's folder)",
                )
            )
            return ""
        return content[:-1] if content.endswith("\n") else content


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Split a CLI ``key.path=value`` override; the value is read as YAML (``8080``, ``[a, b]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError.one(
            f"override {text!r} is not of the form key=value",
            "command line",
            "write e.g. --set server.port=8080",
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_settings(
    path: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None
) -> QuiverSettings:
    """Read the settings from ``path`` (default ``quiver.yaml`` here, when present).

    ``overrides`` maps dotted keys (``server.port``) to values applied over the file. Raises
    :class:`ConfigError` listing every problem with its location.
    """
    data: dict[str, Any] = {}
    doc: _Document | None = None
    file: Path | None
    if path is None:
        file = Path(DEFAULT_CONFIG_FILE) if Path(DEFAULT_CONFIG_FILE).is_file() else None
    else:
        file = Path(path)
        if not file.is_file():
            raise ConfigError.one(
                f"configuration file {str(file)!r} not found",
                str(file),
                "check the --config path, or run without it to use the defaults",
            )
    if file is not None:
        doc, data = _read(file)
    errors = list(doc.errors) if doc else []
    override_keys: set[Loc] = set()
    for dotted, value in (overrides or {}).items():
        err = _apply_override(data, dotted, value)
        if err:
            errors.append(err)
        else:
            override_keys.add(tuple(dotted.split(".")))
    if errors:
        raise ConfigError(errors)
    try:
        return QuiverSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_explain(e, doc, override_keys, data) for e in exc.errors()]) from None


def _read(file: Path) -> tuple[_Document, dict[str, Any]]:
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.one(
            f"cannot read configuration file: {exc}", name, "check the file and its permissions"
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError.one(
            f"invalid YAML: {problem}", where, "fix the YAML syntax at this position"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError.one(f"invalid YAML: {exc}", name, "fix the YAML syntax") from None
    doc = _Document(name, file.resolve().parent)
    if node is None:
        return doc, {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError.one(
            "the configuration must be a mapping of sections (database:, graphql:, server:)",
            doc.mark(node).render(),
            "start the file with a section name, e.g. 'database:'",
        )
    data = doc.build(node, ())
    assert isinstance(data, dict)
    return doc, data


def _apply_override(data: dict[str, Any], dotted: str, value: Any) -> ErrorDetail | None:
    parts = dotted.split(".")
    if not all(parts):
        return ErrorDetail(
            f"override key {dotted!r} is not a dotted setting name",
            "command line",
            "write e.g. server.port=8080",
        )
    target = data
    for i, part in enumerate(parts[:-1]):
        nxt = target.setdefault(part, {})
        if not isinstance(nxt, dict):
            return ErrorDetail(
                f"override {dotted!r}: {'.'.join(parts[: i + 1])} is not a section",
                "command line",
                "override a setting inside a section, e.g. server.port",
            )
        target = nxt
    target[parts[-1]] = value
    return None


def _model_fields_at(loc: Loc) -> list[str]:
    """Names of the settings that the model at ``loc`` accepts."""
    model: type[BaseModel] = QuiverSettings
    for part in loc:
        info = model.model_fields.get(str(part))
        sub = info.annotation if info else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return []
        model = sub
    return list(model.model_fields)


def _lookup(data: Any, loc: Loc) -> tuple[bool, Any]:
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_dict or in_list:
            data = data[part]
        else:
            return False, None
    return True, data


def _explain(
    err: Any, doc: _Document | None, override_keys: set[Loc], data: dict[str, Any]
) -> ErrorDetail:
    loc: Loc = tuple(err["loc"])
    name = _dotted(loc)
    if loc in override_keys:
        where = "command line override"
    elif doc is None:
        where = "defaults"
    else:
        mark = None
        marks = doc.key_marks if err["type"] == "extra_forbidden" else doc.value_marks
        for n in range(len(loc), -1, -1):
            mark = marks.get(loc[:n]) or doc.key_marks.get(loc[:n])
            if mark:
                break
        where = mark.render() if mark else doc.file
    if err["type"] == "extra_forbidden":
        known = _model_fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        fix = f"did you mean '{close[0]}'?" if close else ""
        if known:
            fix = (fix + " " if fix else "") + "known settings here: " + ", ".join(known)
        return ErrorDetail(f"{name}: unknown setting", where, fix)
    found, value = _lookup(data, loc)
    seen = f" (got {value!r})" if found and not isinstance(value, dict | list) else ""
    msg = str(err["msg"])
    return ErrorDetail(
        f"{name or 'top level'}: {msg[0].lower() + msg[1:] if msg else msg}{seen}",
        where,
        "see docs/configuration.md for the accepted values",
    )
