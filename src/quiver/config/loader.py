"""Load ``quiver.yaml``: YAML with ``${ENV}`` / ``${file:path}`` substitution and CLI overrides.

Every problem is reported with the ``file:line:column`` of the key (or value) at fault, all of
them at once, and an unknown key comes with a "did you mean" suggestion::

    quiver.yaml:7:3: graphql.max_dept: unknown setting (did you mean 'max_depth'?)

Reading and substitution are those of every Quiver file (:mod:`quiver.config.yaml_source`);
in ``quiver.yaml``, ``${NAME}`` is the environment variable ``NAME``.

Every setting can also come from an environment variable named after it: ``server.port`` is
``QUIVER_SERVER_PORT``, ``schema_file`` is ``QUIVER_SCHEMA_FILE`` (:func:`setting_env_names`).
They win over the file; the command line's overrides win over both. A setting given by either
needs no value from the file, so an unset ``${DATABASE_URL}`` under ``database.url`` is no error
when ``--db`` (or ``QUIVER_DATABASE_URL``) gives the URL.
"""

from __future__ import annotations

import copy
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from quiver.config.settings import QuiverSettings
from quiver.config.yaml_source import (
    FieldPath,
    Positions,
    Variables,
    format_path,
    load_yaml,
    substitute,
)
from quiver.runtime.errors import ConfigError, ErrorDetail
from quiver.runtime.hints import did_you_mean

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "load_settings",
    "located",
    "parse_override",
    "setting_env_names",
    "setting_locator",
]

DEFAULT_CONFIG_FILE = "quiver.yaml"
ENV_PREFIX = "QUIVER_"
# How alike (difflib's ratio) a QUIVER_* variable and a setting's must be for the variable to
# be taken for a misspelling of it.
_MISSPELT = 0.9

Loc = FieldPath


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
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    base: Mapping[str, Any] | None = None,
) -> QuiverSettings:
    """Read the settings from ``path`` (default ``quiver.yaml`` here, when present).

    ``QUIVER_*`` variables of ``environ`` (default: the process environment) apply over the
    file, and ``overrides`` (dotted keys such as ``server.port`` mapped to values) over both.
    ``base``, sections of settings given in Python, stands in for the file (``path`` is then
    ignored). Raises :class:`ConfigError` listing every problem with its location.
    """
    env = os.environ if environ is None else environ
    from_env, errors = _settings_from_env(env)
    given: dict[Loc, str] = {
        tuple(k.split(".")): f"environment variable {n}" for k, (n, _) in from_env.items()
    }
    for dotted in overrides or {}:
        given[tuple(dotted.split("."))] = "command line override"
    data: dict[str, Any] = {}
    positions: Positions | None = None
    file: Path | None
    if base is not None:
        file = None
        data = copy.deepcopy(dict(base))
    elif path is None:
        file = Path(DEFAULT_CONFIG_FILE) if Path(DEFAULT_CONFIG_FILE).is_file() else None
    else:
        file = Path(path)
        if not file.is_file():
            raise ConfigError.one(
                f"configuration file {str(file)!r} not found",
                str(file),
                "check the --config path, or run without it to use the defaults",
            )
    unresolved: list[Loc] = []  # settings whose references could not be substituted
    if file is not None:
        positions, data, file_errors, unresolved = _read(file, env, set(given))
        errors = file_errors + errors
    layers = [(k, v, f"environment variable {n}") for k, (n, v) in from_env.items()]
    layers += [(k, v, "command line") for k, v in (overrides or {}).items()]
    for dotted, value, source in layers:
        err = _apply_override(data, dotted, value, source)
        if err:
            errors.append(err)
    try:
        settings = QuiverSettings.model_validate(data)
    except ValidationError as exc:
        # every problem at once: what the file writes wrong beside a variable left unset;
        # but not the checks of a setting whose reference was left empty (already reported)
        details = [
            _explain(e, positions, given, data)
            for e in exc.errors()
            if not any(_overlaps(tuple(e["loc"]), loc) for loc in unresolved)
        ]
        if base is not None:
            details = [
                ErrorDetail(d.message, "settings", d.fix) if d.where == "defaults" else d
                for d in details
            ]
        raise ConfigError(errors + details) from None  # (each unresolved one is in errors)
    if errors:
        raise ConfigError(errors)
    return settings


def _overlaps(one: Loc, other: Loc) -> bool:
    """Whether one setting's path holds the other's, or is it."""
    shorter = min(len(one), len(other))
    return one[:shorter] == other[:shorter]


def setting_locator(
    path: str | os.PathLike[str] | None = None,
) -> Callable[[Loc], str | None]:
    """``file:line:column`` of a setting of the file (default ``quiver.yaml`` here, when
    present), by field path, for errors found after loading; None where it is not written."""
    file = Path(path) if path is not None else Path(DEFAULT_CONFIG_FILE)
    try:
        positions = load_yaml(file.read_text(encoding="utf-8"), str(file)).positions
    except (OSError, UnicodeDecodeError, ConfigError):
        return lambda loc: None

    def locate(loc: Loc) -> str | None:
        if not loc or positions.key(loc[:1]) is None:
            return None  # a section the file does not write (the environment may give it)
        mark = positions.value(loc) or positions.nearest_key(loc)
        return mark.render() if mark else None

    return locate


def located(detail: ErrorDetail, locate: Callable[[Loc], str | None]) -> ErrorDetail:
    """``detail``, whose ``where`` is a setting's dotted path (``names.movies.type``), with the
    ``file:line:column`` that ``locate`` finds for it, or for the nearest setting above it."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in detail.where.split(".")]
    while parts:
        found = locate(tuple(parts))
        if found:
            return ErrorDetail(detail.message, f"{found} {detail.where}", detail.fix)
        parts.pop()
    return detail


def setting_env_names() -> dict[str, str]:
    """Every setting's environment variable: ``QUIVER_SERVER_PORT`` -> ``server.port``.

    A settings model inside a section has a variable of its own (``QUIVER_DISPATCHER_RETRY``,
    read as YAML) and one for each of its settings (``QUIVER_DISPATCHER_RETRY_MAX_ATTEMPTS``).
    """
    names: dict[str, str] = {}

    def walk(model: type[BaseModel], prefix: str, top: bool) -> None:
        for key, info in model.model_fields.items():
            dotted = f"{prefix}.{key}" if prefix else key
            sub = _plain_model(info.annotation)
            if sub is None or not top:
                names[ENV_PREFIX + dotted.replace(".", "_").upper()] = dotted
            if sub is not None:
                walk(sub, dotted, False)

    walk(QuiverSettings, "", True)
    return names


def _plain_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds directly (not in a list, mapping or union), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _settings_from_env(
    env: Mapping[str, str],
) -> tuple[dict[str, tuple[str, Any]], list[ErrorDetail]]:
    """The settings given by ``QUIVER_*`` variables (dotted key -> (variable, value)), and the
    variables that look like a setting but name none."""
    names = setting_env_names()
    sections = {
        f"{ENV_PREFIX}{key}_".upper()
        for key, info in QuiverSettings.model_fields.items()
        if _plain_model(info.annotation) is not None
    }
    # A variable starting like a section's settings, or like a top-level setting's (names,
    # observers: given whole, as YAML), is taken for one of them.
    prefixes = tuple(f"{ENV_PREFIX}{key}_".upper() for key in QuiverSettings.model_fields)
    found: dict[str, tuple[str, Any]] = {}
    errors: list[ErrorDetail] = []
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX):
            continue
        dotted = names.get(variable)
        if dotted is None:
            if f"{variable}_" in sections:
                errors.append(
                    ErrorDetail(
                        f"{variable} names a section, not a setting",
                        f"environment variable {variable}",
                        f"give each setting its own variable, e.g. {_first_setting(variable)}"
                        " (see docs/configuration.md), or unset it",
                    )
                )
            elif variable.startswith(prefixes) or _misspelt(variable, names):
                hint = did_you_mean(variable, list(names))
                errors.append(
                    ErrorDetail(
                        f"{variable} names no setting",
                        f"environment variable {variable}",
                        (hint + " " if hint else "")
                        + "see docs/configuration.md for the QUIVER_* names, or unset it",
                    )
                )
            continue
        found[dotted] = (variable, _env_value(dotted, env[variable]))
    return found, errors


def _misspelt(variable: str, names: Mapping[str, str]) -> bool:
    """Whether ``variable`` is a setting's variable with a letter or two wrong, in its section
    (``QUIVER_SERVR_PORT``, ``QUIVER_LOGLEVEL``): closer than other tools' ``QUIVER_*`` names
    come by chance."""
    import difflib  # only for a variable that names no setting

    return bool(difflib.get_close_matches(variable, list(names), n=1, cutoff=_MISSPELT))


def _first_setting(section_variable: str) -> str:
    prefix = f"{section_variable}_"
    return next(name for name in setting_env_names() if name.startswith(prefix))


def _env_value(dotted: str, raw: str) -> Any:
    """A string setting takes the variable as written; any other reads it as YAML (8080, [a, b])."""
    model: type[BaseModel] = QuiverSettings
    parts = dotted.split(".")
    for part in parts[:-1]:
        sub = _plain_model(model.model_fields[part].annotation)
        assert sub is not None
        model = sub
    annotation = model.model_fields[parts[-1]].annotation
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation)
        in (
            typing.Union,
            types.UnionType,
        )
        else (annotation,)
    )
    if str in args:
        return raw
    return parse_override(f"{dotted}={raw}")[1]


def _read(
    file: Path, environ: Mapping[str, str], given: set[Loc]
) -> tuple[Positions, dict[str, Any], list[ErrorDetail], list[Loc]]:
    """The file's data with references substituted, its positions, its problems, and the
    settings whose references could not be substituted.

    A reference under a setting in ``given`` (which the environment or the command line
    replaces) is not an error when it cannot be resolved.
    """
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.one(
            f"cannot read configuration file: {exc}", name, "check the file and its permissions"
        ) from None
    doc = load_yaml(text, name)
    positions = doc.positions
    if doc.data is None:
        return positions, {}, [], []
    if not isinstance(doc.data, dict):
        raise ConfigError.one(
            "the configuration must be a mapping of sections (database:, graphql:, server:)",
            positions.where(()),
            "start the file with a section name, e.g. 'database:'",
        )
    errors: list[ErrorDetail] = []
    for odd in doc.non_string_keys:
        errors.append(
            ErrorDetail(
                f"{format_path(odd.path[:-1]) or 'top level'}: keys must be strings, "
                f"got {odd.key!r}",
                odd.mark.render(),
                "quote the key or use a setting name",
            )
        )
    for twice in doc.duplicate_keys:
        errors.append(
            ErrorDetail(
                f"{format_path(twice.path)}: key given twice",
                twice.again.render(),
                f"keep one '{twice.path[-1]}' (the first is at {twice.first.render()})",
            )
        )
    done = substitute(doc.data, Variables(dict(environ), file.resolve().parent), positions)
    unresolved: list[Loc] = []
    for issue in done.errors:
        if any(tuple(issue.path[: len(loc)]) == loc for loc in given):
            continue  # the environment or the command line gives the setting
        unresolved.append(tuple(issue.path))
        errors.append(
            ErrorDetail(f"{format_path(issue.path)}: {issue.message}", issue.where(name), issue.fix)
        )
    data = done.data
    assert isinstance(data, dict)
    return positions, data, errors, unresolved


def _apply_override(
    data: dict[str, Any], dotted: str, value: Any, source: str = "command line"
) -> ErrorDetail | None:
    parts = dotted.split(".")
    if not all(parts):
        return ErrorDetail(
            f"override key {dotted!r} is not a dotted setting name",
            source,
            "write e.g. server.port=8080",
        )
    target = data
    for i, part in enumerate(parts[:-1]):
        nxt = target.setdefault(part, {})
        if not isinstance(nxt, dict):
            return ErrorDetail(
                f"override {dotted!r}: {'.'.join(parts[: i + 1])} is not a section",
                source,
                "override a setting inside a section, e.g. server.port",
            )
        target = nxt
    target[parts[-1]] = value
    return None


def _model_fields_at(loc: Loc) -> list[str]:
    """Names of the settings that the model at ``loc`` accepts, through the entries of lists
    and mappings too (``names.movies`` is a ``TableNames``)."""
    annotation: Any = QuiverSettings
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    model = _plain_model(_without_none(annotation))
    return list(model.model_fields) if model else []


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None``; any other annotation as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation of what ``part`` names inside a value of ``annotation``: a field of a
    model, an entry of a list or mapping; None when it names nothing."""
    annotation = _without_none(annotation)
    if typing.get_origin(annotation) in (list, dict):
        return typing.get_args(annotation)[-1]
    model = _plain_model(annotation)
    info = model.model_fields.get(str(part)) if model else None
    return info.annotation if info else None


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
    err: Any, positions: Positions | None, given: dict[Loc, str], data: dict[str, Any]
) -> ErrorDetail:
    loc: Loc = tuple(err["loc"])
    name = format_path(loc)
    within = [source for key, source in given.items() if key[: len(loc)] == loc]
    # The variable or override whose value holds the setting at fault (the longest one).
    holders = sorted((key for key in given if loc[: len(key)] == key), key=len)
    if holders:
        where = given[holders[-1]]
    elif within and positions is None:
        where = ", ".join(sorted(set(within)))
    elif positions is None:
        where = "defaults"
    else:
        # A section's own check (two of its settings that disagree) is located at what the
        # file writes of it, never at the file's first line when the file leaves the section
        # out, and the variables and overrides that gave the rest are named beside it.
        mark = None
        for n in range(len(loc), 0 if loc else -1, -1):
            if err["type"] != "extra_forbidden":
                mark = positions.value(loc[:n])
            mark = mark or positions.key(loc[:n])
            if mark:
                break
        sources = ([mark.render()] if mark else []) + sorted(set(within))
        where = ", ".join(sources) if sources else positions.file
    if err["type"] == "extra_forbidden":
        known = _model_fields_at(loc[:-1])
        fix = did_you_mean(str(loc[-1]), known)
        if known:
            fix = (fix + " " if fix else "") + "known settings here: " + ", ".join(known)
        return ErrorDetail(f"{name}: unknown setting", where, fix)
    found, value = _lookup(data, loc)
    seen = f" (got {value!r})" if found and not isinstance(value, dict | list) else ""
    msg = str(err["msg"])
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        msg = str(err["ctx"]["error"])  # a validator's own words, without "Value error, "
    return ErrorDetail(
        f"{name or 'top level'}: {msg[0].lower() + msg[1:] if msg else msg}{seen}",
        where,
        "see docs/configuration.md for the accepted values",
    )
