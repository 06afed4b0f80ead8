"""FlowEngine pipeline files, translated into Quiver's native graph form.

FlowEngine (.NET) describes a pipeline under a top-level ``pipeline:`` key, with its steps as
``plugins:`` (``name``/``type``/``config``) or ``steps:`` (``id``/``type``/``config``),
``connections:`` (``from``/``to``), optional ``routing:`` targets and ``settings:``; global
``variables:`` are referenced as ``{Name}``. Keys are case-insensitive (``FilePath`` and
``filePath`` are the same key). :func:`translate` maps the three FlowEngine plugins onto
Quiver components:

=====================  ===========  ===================================================
FlowEngine             Quiver       notes
=====================  ===========  ===================================================
DelimitedSource        ``csv``      OutputSchema -> ``types`` (or ``columns`` headerless)
JavaScriptTransform    ``js``       same script, ``process(context)`` style
DelimitedSink          ``csv``      AppendMode is not supported (output is atomic)
=====================  ===========  ===================================================

.NET-only keys (channel tuning, buffer sizes, assembly paths, monitoring settings) are
dropped with a warning naming each key; a key FlowEngine does not have is an error with its
``file:line:column``. See docs/pipelines/flowengine.md.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from quiver.pipeline.js_runtime.codec import normalize_type
from quiver.pipeline.path_map import PathMap, is_windows_path, map_windows_path, path_map_hint
from quiver.runtime.errors import ConfigError, ErrorDetail
from quiver.runtime.hints import did_you_mean

__all__ = ["Marks", "is_flowengine", "translate"]

Path_ = tuple[str | int, ...]

_FE_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: FlowEngine field types -> the CSV source's type names.
_CSV_TYPES = {
    "string": "str",
    "integer": "int32",
    "long": "int",
    "decimal": "decimal",
    "double": "float",
    "boolean": "bool",
    "datetime": "datetime",
    "date": "date",
    "time": "time",
}


def is_flowengine(doc: Any) -> bool:
    """Whether a loaded YAML document is a FlowEngine pipeline (top-level ``pipeline:``)."""
    return isinstance(doc, dict) and any(
        isinstance(k, str) and k.lower() == "pipeline" for k in doc
    )


class Marks(Protocol):
    """Where each field path of the document is in its file (the loader's YAML positions)."""

    def where(self, path: Path_) -> str: ...
    def line_of(self, path: Path_) -> int | None: ...


@dataclass
class _Ctx:
    file: str
    marks: Marks
    lines: list[str] = field(default_factory=list)
    errors: list[ErrorDetail] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    path_map: list[tuple[str, str]] = field(default_factory=list)
    #: connection (from, to) -> the SQL condition of its `filter:`
    filters: dict[tuple[str, str], str] = field(default_factory=dict)

    def where(self, path: Path_) -> str:
        return self.marks.where(path)

    def error(self, path: Path_, message: str, fix: str) -> None:
        self.errors.append(ErrorDetail(message, self.where(path), fix))

    def ignored(self, path: Path_, why: str) -> None:
        self.warnings.append(f"ignored: {self.where(path)} ({why})")


class _Section:
    """A FlowEngine mapping read with case-insensitive keys; reports what was not read."""

    def __init__(self, ctx: _Ctx, data: Any, path: Path_, what: str) -> None:
        self.ctx = ctx
        self.path = path
        self.what = what
        self.keys: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        if data is None:
            data = {}
        if not isinstance(data, dict):
            ctx.error(path, f"{what} must be a mapping", "write `key: value` lines")
            data = {}
        for key, value in data.items():
            text = str(key)
            low = text.lower()
            if low in self.keys:
                ctx.error(
                    (*path, text),
                    f"'{text}' repeats '{self.keys[low]}' (FlowEngine keys ignore case)",
                    "keep one of them",
                )
                continue
            self.keys[low] = text
            self.data[low] = value
        self.read: set[str] = set()

    def has(self, name: str) -> bool:
        return name.lower() in self.data

    def at(self, name: str) -> Path_:
        return (*self.path, self.keys.get(name.lower(), name))

    def get(self, *names: str) -> Any:
        for name in names:
            low = name.lower()
            if low in self.data:
                self.read.add(low)
                return self.data[low]
        return None

    def key_of(self, *names: str) -> str | None:
        for name in names:
            if name.lower() in self.data:
                return name
        return None

    def text(self, *names: str) -> str | None:
        value = self.get(*names)
        if value is None:
            return None
        if isinstance(value, dict | list):
            name = self.key_of(*names) or names[0]
            self.ctx.error(self.at(name), f"'{name}' must be a single value", "write a value")
            return None
        return str(value)

    def flag(self, *names: str) -> bool | None:
        value = self.get(*names)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        name = self.key_of(*names) or names[0]
        self.ctx.error(
            self.at(name), f"'{name}' must be true or false, got {value!r}", "write true or false"
        )
        return None

    def number(self, *names: str) -> float | None:
        value = self.get(*names)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            value = "?"
        try:
            return float(value)
        except ValueError:
            name = self.key_of(*names) or names[0]
            self.ctx.error(
                self.at(name), f"'{name}' must be a number, got {value!r}", "write a number"
            )
            return None

    def ignore(self, names: dict[str, str]) -> None:
        """Drop the .NET-only keys in ``names`` (key -> reason) with a warning each."""
        for name, why in names.items():
            if name.lower() in self.data:
                self.read.add(name.lower())
                self.ctx.ignored(self.at(name), why)

    def accept(self, *names: str) -> None:
        """Keys with nothing to translate and nothing worth a warning (names, versions)."""
        for name in names:
            if name.lower() in self.data:
                self.read.add(name.lower())

    def finish(self, known: list[str], *, open_schema: bool = False) -> None:
        """Every key not read is an error, with the closest known key as a suggestion.

        With ``open_schema`` (FlowEngine's plugin schemas that allow further properties, which
        FlowEngine then ignores) such a key is ignored with a warning that names it instead.
        """
        for low, original in self.keys.items():
            if low in self.read:
                continue
            hint = did_you_mean(original, known)
            if open_schema:
                self.ctx.ignored(
                    (*self.path, original),
                    f"not a setting of {self.what}; FlowEngine accepts and ignores it, "
                    "and so does Quiver" + (f"; {hint}" if hint else ""),
                )
                continue
            self.ctx.error(
                (*self.path, original),
                f"unknown key '{original}' in {self.what}" + (f"; {hint}" if hint else ""),
                f"known keys: {', '.join(known)}",
            )


# ---------------------------------------------------------------------------- values


def _subst(ctx: _Ctx, value: str) -> str:
    """``{Name}`` (FlowEngine variable) -> ``${Name}``; a literal ``$`` is doubled."""
    value = value.replace("$", "$$")

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        return "${" + name + "}" if name in ctx.variables else m.group(0)

    return _FE_VAR.sub(repl, value)


def _local_path(ctx: _Ctx, value: str, at: Path_) -> str:
    """A FlowEngine file path for this system: a Windows path through ``--path-map``.

    FlowEngine files name ``C:\\source\\...``; unmapped, such a path is an error saying how
    to map it (on POSIX it would otherwise become a file literally named ``C:\\...``).
    """
    expanded = _FE_VAR.sub(lambda m: ctx.variables.get(m.group(1), m.group(0)), value)
    if not is_windows_path(expanded):
        return _subst(ctx, value)
    mapped = map_windows_path(expanded, ctx.path_map)
    if mapped is None:
        ctx.error(
            at,
            f"{expanded!r} is a Windows path, which names no file on this system",
            path_map_hint(expanded),
        )
        return _subst(ctx, value)
    return mapped.replace("$", "$$")


def _resolve_variables(ctx: _Ctx, raw: Any, path: Path_) -> None:
    section = _Section(ctx, raw, path, "variables")
    values: dict[str, str] = {}
    for low, value in section.data.items():
        section.read.add(low)
        name = section.keys[low]
        if isinstance(value, dict | list):
            ctx.error((*path, name), f"variable '{name}' must be a single value", "write a value")
            continue
        values[name] = "" if value is None else str(value)
    # Variables may refer to each other ({BasePath}/out): resolve them here, in order.
    for _ in range(len(values) + 1):
        changed = False
        for name, value in values.items():
            new = _FE_VAR.sub(lambda m: values.get(m.group(1), m.group(0)), value)
            if new != value:
                values[name] = new
                changed = True
        if not changed:
            break
    else:
        ctx.error(path, "variables refer to each other in a cycle", "break the cycle")
    ctx.variables = values


# ---------------------------------------------------------------------------- schemas


def _schema_fields(
    ctx: _Ctx, raw: Any, path: Path_, *, script: bool = False
) -> list[dict[str, Any]] | None:
    """FlowEngine OutputSchema (``Columns`` with Index or ``Fields``) -> ordered field specs.

    A JavaScriptTransform's schema may say ``InferFromScript: true`` instead of listing its
    fields: None then, and the output holds the fields the script sets.
    """
    schema = _Section(ctx, raw, path, "OutputSchema")
    schema.accept("Name", "Description")
    schema.ignore(
        {
            "Strict": "Quiver always converts to the declared types",
            "AllowExtraFields": "only declared fields are written",
            "ValidateFieldTypes": "values are always checked against their type",
            "ConvertTypes": "values are always converted to their type",
        }
    )
    items = schema.get("Columns", "Fields")
    list_key = schema.key_of("Columns", "Fields") or "Columns"
    infer = schema.flag("InferFromScript") if script else None
    schema.finish(
        ["Name", "Description", "Columns", "Fields", "Strict", "AllowExtraFields"]
        + (["InferFromScript"] if script else [])
    )
    if items is None and infer:
        return None  # the fields are those the script sets, as without an OutputSchema
    if items is None:
        ctx.error(path, "OutputSchema has no Columns (or Fields)", "list the columns")
        return []
    if not isinstance(items, list):
        ctx.error(schema.at(list_key), f"{list_key} must be a list", "write `- Name: ...` items")
        return []
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        ipath = (*schema.at(list_key), i)
        col = _Section(ctx, item, ipath, "a schema column")
        name = col.text("Name")
        type_name = col.text("Type")
        index = col.number("Index")
        nullable = col.flag("IsNullable", "Nullable")
        required = col.flag("Required")
        precision = col.number("Precision")
        scale = col.number("Scale")
        col.ignore(
            {
                "MaxLength": "string lengths are not limited",
                "Minimum": "add a `validate` step for ranges",
                "Maximum": "add a `validate` step for ranges",
                "Pattern": "add a `validate` step for patterns",
                "Enum": "add a `validate` step for allowed values",
                "Format": "dates and times are read and written as ISO 8601",
            }
        )
        col.accept("Description")
        col.finish(
            ["Name", "Type", "Index", "IsNullable", "Required", "Precision", "Scale", "Description"]
        )
        if not name:
            ctx.error(ipath, "a schema column needs a Name", "add `Name: column_name`")
            continue
        canonical = normalize_type(type_name or "string")
        if canonical is None:
            hint = did_you_mean((type_name or "").lower(), _CSV_TYPES)
            ctx.error(
                col.at("Type"),
                f"unknown type '{type_name}'" + (f"; {hint}" if hint else ""),
                "use string, integer, long, decimal, double, boolean, datetime, date or time",
            )
            continue
        out.append(
            {
                "name": name,
                "type": canonical,
                "index": i if index is None else int(index),
                "required": bool(required) or nullable is False,
                "precision": None if precision is None else int(precision),
                "scale": None if scale is None else int(scale),
            }
        )
    out.sort(key=lambda f: f["index"])
    return out


def _csv_type(f: dict[str, Any]) -> str:
    if f["type"] == "decimal" and (f["precision"] is not None or f["scale"] is not None):
        return f"decimal({f['precision'] or 38},{f['scale'] if f['scale'] is not None else 9})"
    return _CSV_TYPES[f["type"]]


# ---------------------------------------------------------------------------- plugins


def _script_origin(ctx: _Ctx, path: Path_) -> dict[str, Any]:
    """Where a block-scalar script starts in the pipeline file, so its errors point there."""
    key_line = ctx.marks.line_of(path)
    if key_line is None or key_line >= len(ctx.lines):
        return {}
    head = ctx.lines[key_line - 1].split(":", 1)[-1].strip()
    if not head.startswith(("|", ">")):
        return {}
    first = key_line  # 0-based index of the line after the key
    while first < len(ctx.lines) and not ctx.lines[first].strip():
        first += 1
    if first >= len(ctx.lines):
        return {}
    body = ctx.lines[first]
    return {
        "script_name": Path(ctx.file).name,
        "script_line": first + 1,
        "script_indent": len(body) - len(body.lstrip(" ")),
    }


def _delimited_file(
    ctx: _Ctx, cfg: _Section, plugin: str, example: str, header_keys: tuple[str, ...]
) -> dict[str, Any]:
    """The settings DelimitedSource and DelimitedSink share: file, header, delimiter, encoding."""
    out: dict[str, Any] = {}
    path = cfg.text("FilePath", "Path")
    if path is None:
        ctx.error(cfg.path, f"{plugin} needs FilePath", f"add `FilePath: {example}`")
    else:
        out["path"] = _local_path(ctx, path, cfg.at(cfg.key_of("FilePath", "Path") or "FilePath"))
    header = cfg.flag(*header_keys)
    if header is not None:
        out["header"] = header
    delimiter = cfg.text("Delimiter")
    if delimiter is not None:
        out["delimiter"] = _subst(ctx, delimiter)
    encoding = cfg.text("Encoding")
    if encoding is not None:
        out["encoding"] = encoding.lower()
    return out


def _dotnet_encoding(name: str | None, *, writing: bool) -> str:
    """The codec .NET uses for an Encoding name: UTF-8 and UTF-16 write a byte order mark
    (and reading UTF-8 skips one); FlowEngine's default is UTF-8."""
    low = re.sub(r"[^a-z0-9]", "", (name or "utf-8").lower())
    if low == "utf8":
        return "utf-8-sig"
    if low in ("utf16", "unicode") and writing:
        return "utf-16"
    return (name or "utf-8").lower()


def _delimited_source(ctx: _Ctx, cfg: _Section, policy: dict[str, Any]) -> dict[str, Any]:
    out = _delimited_file(
        ctx, cfg, "DelimitedSource", "data/input.csv", ("HasHeaders", "HasHeader")
    )
    chunk = cfg.number("ChunkSize")
    if chunk is not None:
        out["batch_rows"] = int(chunk)
    quote = cfg.text("QuoteChar")
    if quote is not None:
        out["quote"] = quote
    escape = cfg.text("EscapeChar")
    if escape is not None and escape != (quote or '"'):
        out["escape"] = escape
        out["double_quote"] = False
    out["encoding"] = _dotnet_encoding(cfg.text("Encoding"), writing=False)
    infer = cfg.flag("InferSchema")
    if infer:
        out["infer"] = True
    sample = cfg.number("InferenceSampleRows")
    if sample is not None:
        ctx.ignored(
            cfg.at("InferenceSampleRows"),
            "Quiver infers the types from the first block of the file"
            + ("" if infer else "; InferSchema is not true, so nothing is inferred"),
        )
    if cfg.has("OutputSchema"):
        fields = _schema_fields(ctx, cfg.get("OutputSchema"), cfg.at("OutputSchema")) or []
        out["types"] = {f["name"]: _csv_type(f) for f in fields}
        if fields:
            # FlowEngine skips the header line and takes the fields by position, named by
            # the schema: a header that disagrees with the data changes nothing
            out["columns"] = [f["name"] for f in fields]
            if out.get("header", True):
                out["header"] = False
                out["skip_lines"] = 1
    skip = cfg.flag("SkipMalformedRows", "ContinueOnError")
    max_errors = cfg.number("MaxErrors", "MaxErrorCount")
    if skip is not None:
        out["on_malformed"] = "reject" if skip else "fail"
    if skip and max_errors is not None:
        policy["max_errors"] = int(max_errors)
    elif max_errors is not None and not skip:
        ctx.ignored(
            cfg.at(cfg.key_of("MaxErrors", "MaxErrorCount") or "MaxErrors"),
            "without SkipMalformedRows the first malformed row fails the run",
        )
    cfg.ignore(
        {
            "BufferSize": ".NET read buffer; Quiver reads in blocks of `block_size`",
            "SkipEmptyLines": "empty lines are always skipped",
            "TrimFields": "add a `derive` or `js` step to trim values",
            "AllowQuotedNewlines": "quoted line breaks are always allowed",
        }
    )
    cfg.finish(
        [
            "FilePath",
            "HasHeaders",
            "Delimiter",
            "Encoding",
            "ChunkSize",
            "OutputSchema",
            "SkipMalformedRows",
            "MaxErrors",
            "InferSchema",
            "QuoteChar",
            "EscapeChar",
            "BufferSize",
            "InferenceSampleRows",
        ],
        open_schema=True,
    )
    return {"csv": out}


def _javascript_transform(ctx: _Ctx, cfg: _Section, routes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"style": "process"}
    script = cfg.text("Script")
    script_file = cfg.text("ScriptFile", "ScriptPath")
    if script is not None:
        out["script"] = script.replace("$", "$$")
        out.update(_script_origin(ctx, cfg.at("Script")))
    elif script_file is not None:
        key = cfg.key_of("ScriptFile", "ScriptPath") or "ScriptFile"
        out["file"] = _local_path(ctx, script_file, cfg.at(key))
    else:
        ctx.error(cfg.path, "JavaScriptTransform needs Script", "add `Script: |` with the code")
    fields = None
    if cfg.has("OutputSchema"):
        fields = _schema_fields(ctx, cfg.get("OutputSchema"), cfg.at("OutputSchema"), script=True)
    if fields is not None:
        schema: dict[str, Any] = {}
        for f in fields:
            spec: dict[str, Any] = {"type": f["type"]}
            if f["required"]:
                spec["required"] = True
            if f["precision"] is not None:
                spec["precision"] = f["precision"]
            if f["scale"] is not None:
                spec["scale"] = f["scale"]
            schema[f["name"]] = spec if len(spec) > 1 else f["type"]
        out["output_schema"] = schema
    timeout = cfg.number("TimeoutSeconds")
    if timeout is not None:
        out["timeout_seconds"] = timeout
    if cfg.has("Engine"):
        engine = _Section(ctx, cfg.get("Engine"), cfg.at("Engine"), "Engine")
        ms = engine.number("Timeout")
        if ms is not None and timeout is None:
            out["timeout_seconds"] = ms / 1000.0
        engine.ignore(
            {
                "MemoryLimit": "Jint's allocation limit; V8's heap limit is the js step's "
                "`heap_limit_mb` (default 512)",
                "EnableCaching": "scripts are always compiled once per worker",
                "EnableDebugging": "script errors always carry file:line:column",
            }
        )
        engine.finish(["Timeout", "MemoryLimit", "EnableCaching", "EnableDebugging"])
    cfg.ignore(
        {
            "Performance": "throughput monitoring of the .NET plugin; see the run summary",
            "ChunkSize": "batches come from the source (its ChunkSize)",
        }
    )
    if routes:
        out["routes"] = list(routes)
    cfg.finish(["Script", "OutputSchema", "TimeoutSeconds", "Engine", "Performance", "ChunkSize"])
    return {"js": out}


def _delimited_sink(ctx: _Ctx, cfg: _Section) -> dict[str, Any]:
    out = _delimited_file(
        ctx, cfg, "DelimitedSink", "out/result.csv", ("HasHeaders", "IncludeHeaders", "HasHeader")
    )
    out["encoding"] = _dotnet_encoding(cfg.text("Encoding"), writing=True)
    ending = cfg.text("LineEnding")
    if ending is not None:
        terminator = _LINE_ENDINGS.get(ending.strip().lower())
        if terminator is None:
            ctx.error(
                cfg.at("LineEnding"),
                f"unknown LineEnding {ending!r}",
                "use System, CRLF, LF or CR",
            )
        else:
            out["line_terminator"] = terminator
    overwrite_alias = cfg.flag("Overwrite")
    if overwrite_alias is not None:
        ctx.ignored(
            cfg.at("Overwrite"),
            "FlowEngine's DelimitedSink does not read it and replaces the file unless "
            "OverwriteExisting: false; so does Quiver",
        )
    if cfg.has("InputSchema"):
        _input_schema(ctx, cfg.get("InputSchema"), cfg.at("InputSchema"))
    if cfg.has("ColumnMappings"):
        mapping = _column_mappings(ctx, cfg.get("ColumnMappings"), cfg.at("ColumnMappings"))
        if mapping:
            out["_columns"] = mapping
    create = cfg.flag("CreateDirectory", "CreateDirectories")
    if create is not None:
        out["create_dirs"] = create
    overwrite = cfg.flag("OverwriteExisting")
    if overwrite is not None:
        out["overwrite"] = overwrite
    quote = cfg.text("QuoteChar")
    if quote is not None:
        out["quote"] = quote
    quote_all = cfg.flag("QuoteAllFields")
    if quote_all:
        out["quoting"] = "all"
    append = cfg.flag("AppendMode")
    if append:
        ctx.error(
            cfg.at("AppendMode"),
            "AppendMode: true is not supported: Quiver replaces the output file atomically "
            "when the run succeeds",
            "set AppendMode: false, or write to a new file per run (e.g. a {Date} variable "
            "in FilePath)",
        )
    cfg.ignore(
        {
            "BufferSize": ".NET write buffer",
            "FlushInterval": "output is written once, atomically, when the run succeeds",
            "EscapeChar": "quotes inside fields are always doubled",
            "EnableCompression": "name the file .csv.gz (or .zst, .bz2) to compress it",
            "CompressionLevel": "compression uses the codec's default level",
            "ContinueOnError": "a failed write fails the run; retries are the engine's",
            "MaxErrorCount": "a failed write fails the run; retries are the engine's",
        }
    )
    cfg.finish(
        [
            "FilePath",
            "HasHeaders",
            "Delimiter",
            "Encoding",
            "CreateDirectory",
            "OverwriteExisting",
            "AppendMode",
            "QuoteChar",
            "QuoteAllFields",
            "BufferSize",
            "FlushInterval",
            "LineEnding",
            "InputSchema",
            "ColumnMappings",
        ],
        open_schema=True,
    )
    return {"csv": out}


#: DelimitedSink LineEnding -> line terminator ("System" is this system's, as in .NET).
_LINE_ENDINGS = {"system": os.linesep, "crlf": "\r\n", "lf": "\n", "cr": "\r"}


def _input_schema(ctx: _Ctx, raw: Any, path: Path_) -> None:
    """DelimitedSink InputSchema: FlowEngine checks its columns against the sink's input
    before the run; Quiver writes the columns it receives, so it is read and ignored."""
    if isinstance(raw, dict) and any(str(k).lower() == "columns" for k in raw):
        _schema_fields(ctx, raw, path)  # its mistakes are still reported
    ctx.ignored(path, "the sink writes the columns it receives, as they arrive")


def _items(
    ctx: _Ctx, raw: Any, path: Path_, what: str, example: str, item: str
) -> list[tuple[Path_, _Section]]:
    """The mappings of a FlowEngine list, each with its path; an error if it is no list."""
    if not isinstance(raw, list):
        ctx.error(path, f"{what} must be a list", f"write `{example}` items")
        return []
    return [((*path, i), _Section(ctx, value, (*path, i), item)) for i, value in enumerate(raw)]


def _column_mappings(ctx: _Ctx, raw: Any, path: Path_) -> list[tuple[str, str]]:
    """DelimitedSink ColumnMappings -> (source column, output column) pairs, in order: the
    sink writes only these columns, in this order, under their output names."""
    out: list[tuple[str, str]] = []
    for ipath, sec in _items(ctx, raw, path, "ColumnMappings", "- SourceColumn: a", "a mapping"):
        src = sec.text("SourceColumn")
        dst = sec.text("OutputColumn")
        if sec.has("Format"):
            sec.get("Format")
            ctx.ignored(
                sec.at("Format"),
                ".NET format strings are not applied; values are written in their shortest "
                "exact form (add a js or sql step to format them)",
            )
        sec.finish(["SourceColumn", "OutputColumn", "Format"])
        if not src:
            ctx.error(ipath, "a column mapping needs SourceColumn", "add `SourceColumn: name`")
            continue
        out.append((src, dst or src))
    return out


_PLUGIN_TYPES = {
    "delimitedsource": "DelimitedSource",
    "javascripttransform": "JavaScriptTransform",
    "delimitedsink": "DelimitedSink",
}


def _plugin_kind(type_name: str) -> str | None:
    last = type_name.strip().split(".")[-1]
    key = re.sub(r"[^a-z0-9]", "", last.lower())
    if key.endswith("plugin"):
        key = key[: -len("plugin")]
    return _PLUGIN_TYPES.get(key)


# ---------------------------------------------------------------------------- the pipeline


@dataclass
class _Plugin:
    name: str
    kind: str
    config: Any
    path: Path_
    config_path: Path_


def translate(
    doc: dict[str, Any],
    source_file: str,
    marks: Marks,
    lines: list[str],
    path_map: PathMap | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A FlowEngine pipeline document -> (native graph-form document, warnings).

    ``marks`` and ``lines`` are the positions and the text lines of the loaded file, so every
    problem is reported with ``file:line:column``: a ``ConfigError`` lists them all. The
    translation knows nothing of Quiver's own pipeline model; the loader validates the result.
    """
    ctx = _Ctx(source_file, marks, lines, path_map=list(path_map or []))
    root = _Section(ctx, doc, (), "the pipeline file")
    if root.has("Variables"):
        _resolve_variables(ctx, root.get("Variables"), root.at("Variables"))
    pipeline_raw = root.get("Pipeline")
    root.finish(["Pipeline", "Variables"])
    pipe = _Section(ctx, pipeline_raw, root.at("Pipeline"), "pipeline")
    out: dict[str, Any] = {}
    name = pipe.text("Name")
    if name:
        out["name"] = _FE_VAR.sub(lambda m: ctx.variables.get(m.group(1), m.group(0)), name)
    description = pipe.text("Description")
    if description:
        out["description"] = description
    pipe.accept("Version")
    if ctx.variables:
        out["variables"] = dict(ctx.variables)

    plugins = _read_plugins(ctx, pipe)
    connections_raw = pipe.get("Connections")
    routing_raw = pipe.get("Routing")
    if pipe.has("Settings"):
        settings = _Section(ctx, pipe.get("Settings"), pipe.at("Settings"), "settings")
        for low in list(settings.keys):
            settings.read.add(low)
            ctx.ignored(
                (*settings.path, settings.keys[low]),
                "FlowEngine engine setting; Quiver's engine is tuned under `engine:`",
            )
    pipe.finish(
        ["Name", "Version", "Description", "Plugins", "Steps", "Connections", "Routing", "Settings"]
    )

    names = {p.name for p in plugins}
    connections = _read_connections(ctx, connections_raw, pipe.at("Connections"), names)
    if not connections and len(plugins) > 1:
        connections = _linear_chain(ctx, plugins, pipe)
    routing = _read_routing(ctx, routing_raw, pipe.at("Routing"), plugins)

    # Route names each JavaScriptTransform may send to: those wired by connections or routing.
    route_names: dict[str, list[str]] = {p.name: [] for p in plugins}
    for src, _dst in connections + routing[1]:
        if "." in src:
            step, route = src.split(".", 1)
            if step in route_names and route not in route_names[step]:
                route_names[step].append(route)

    policy: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    for p in plugins:
        cfg = _Section(ctx, p.config, p.config_path, f"the config of {p.kind} '{p.name}'")
        if p.kind == "DelimitedSource":
            steps[p.name] = _delimited_source(ctx, cfg, policy)
        elif p.kind == "JavaScriptTransform":
            steps[p.name] = _javascript_transform(ctx, cfg, route_names.get(p.name, []))
        else:
            steps[p.name] = _delimited_sink(ctx, cfg)
    for target_name, body in routing[0].items():
        steps[target_name] = body

    edges = connections + routing[1]
    _check_downstream(ctx, plugins, edges)
    if ctx.errors:
        raise ConfigError(ctx.errors)
    edges = _insert_steps(ctx, steps, edges)
    out["steps"] = steps
    out["connections"] = [{"from": s, "to": d} for s, d in edges]
    stem = Path(source_file).stem
    out["on_error"] = {"policy": "reject", "rejects": f"{stem}.rejects.csv", **policy}
    ctx.warnings.append(
        f"rows FlowEngine would drop (script errors, malformed lines) are written to "
        f"{stem}.rejects.csv beside the pipeline file"
    )
    return out, ctx.warnings


def _linear_chain(ctx: _Ctx, plugins: list[_Plugin], pipe: _Section) -> list[tuple[str, str]]:
    """No connections: the plugins in the order listed, as FlowEngine's validator assumes
    ("No explicit connections defined"), when that order is a source, transforms, a sink."""
    kinds = [p.kind for p in plugins]
    if (
        kinds[0] != "DelimitedSource"
        or kinds[-1] != "DelimitedSink"
        or any(k != "JavaScriptTransform" for k in kinds[1:-1])
    ):
        return []  # _check_downstream says what is missing
    ctx.warnings.append(
        f"{ctx.where(pipe.path)}: no connections: the plugins run in the order listed ("
        + " -> ".join(p.name for p in plugins)
        + "); write `connections:` to say so"
    )
    return [(a.name, b.name) for a, b in itertools.pairwise(plugins)]


def _check_downstream(ctx: _Ctx, plugins: list[_Plugin], edges: list[tuple[str, str]]) -> None:
    """FlowEngine stops a run whose source feeds nothing ("No downstream plugin found for
    source"): so does the translation, before anything runs."""
    feeding = {src.split(".", 1)[0] for src, _dst in edges}
    for p in plugins:
        if p.kind == "DelimitedSource" and p.name not in feeding:
            ctx.error(
                p.path,
                f"source '{p.name}' feeds no plugin: the pipeline has no connection from it "
                "(FlowEngine stops such a run with 'No downstream plugin found')",
                f"add `connections:` with `- from: {p.name}` and `to:` the plugin that "
                "takes its rows",
            )


def _unique(name: str, taken: dict[str, Any]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def _insert_steps(
    ctx: _Ctx, steps: dict[str, Any], edges: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Steps FlowEngine performs inside a connection or a sink: a connection's `filter:`
    becomes a `filter` step on it, a sink's ColumnMappings `select` and `rename` steps
    before it."""
    out: list[tuple[str, str]] = []
    for src, dst in edges:
        condition = ctx.filters.get((src, dst))
        if condition is None:
            out.append((src, dst))
            continue
        name = _unique(f"{src.split('.', 1)[0]}_to_{dst}_filter", steps)
        steps[name] = {"filter": {"expression": condition}}
        out += [(src, name), (name, dst)]
    for sink_name in list(steps):
        body = steps[sink_name].get("csv") if isinstance(steps[sink_name], dict) else None
        if not isinstance(body, dict) or "_columns" not in body:
            continue
        mapping: list[tuple[str, str]] = body.pop("_columns")
        chain = [_unique(f"{sink_name}_columns", steps)]
        steps[chain[0]] = {"select": {"columns": [src for src, _ in mapping]}}
        renames = {src: dst for src, dst in mapping if src != dst}
        if renames:
            chain.append(_unique(f"{sink_name}_names", steps))
            steps[chain[1]] = {"rename": {"columns": renames}}
        out = [(s, chain[0] if d == sink_name else d) for s, d in out]
        out += list(zip(chain, [*chain[1:], sink_name], strict=True))
    return out


def _read_plugins(ctx: _Ctx, pipe: _Section) -> list[_Plugin]:
    key = pipe.key_of("Plugins", "Steps")
    items = pipe.get("Plugins", "Steps")
    if key is None or items is None:
        ctx.error(pipe.path, "the pipeline has no plugins (or steps)", "list them under `plugins:`")
        return []
    list_path = pipe.at(key)
    if not isinstance(items, list):
        ctx.error(list_path, f"{key} must be a list", "write `- name: ...` items")
        return []
    plugins: list[_Plugin] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        ipath = (*list_path, i)
        sec = _Section(ctx, item, ipath, "a plugin")
        name = sec.text("Name", "Id")
        type_name = sec.text("Type")
        config = sec.get("Config")
        sec.ignore(
            {
                "AssemblyPath": ".NET assembly; Quiver components are built in or entry points",
                "Assembly": ".NET assembly; Quiver components are built in or entry points",
                "AssemblyName": ".NET assembly; Quiver components are built in or entry points",
                "TypeName": ".NET type; the component comes from `type`",
                "IsolationLevel": ".NET assembly isolation",
                "ResourceLimits": ".NET plugin resource limits",
            }
        )
        sec.finish(["Name", "Type", "Config", "AssemblyPath"])
        if not name:
            ctx.error(ipath, "a plugin needs a name", "add `name: MyStep`")
            continue
        if "." in name:
            ctx.error(
                sec.at("Name"), f"plugin name '{name}' contains '.'", "rename it without dots"
            )
            continue
        if name in seen:
            ctx.error(
                sec.at("Name"), f"plugin name '{name}' is used twice", "give each a unique name"
            )
            continue
        seen.add(name)
        if not type_name:
            ctx.error(ipath, f"plugin '{name}' needs a type", "add `type: DelimitedSource`")
            continue
        kind = _plugin_kind(type_name)
        if kind is None:
            hint = did_you_mean(type_name, _PLUGIN_TYPES.values())
            ctx.error(
                sec.at("Type"),
                f"unknown FlowEngine plugin type '{type_name}'" + (f"; {hint}" if hint else ""),
                "Quiver translates DelimitedSource, JavaScriptTransform and DelimitedSink; "
                "write other steps in Quiver's native form",
            )
            continue
        config_key = sec.key_of("Config") or "Config"
        plugins.append(
            _Plugin(name, kind, config, ipath, (*ipath, sec.keys.get("config", config_key)))
        )
    return plugins


def _read_connections(ctx: _Ctx, raw: Any, path: Path_, names: set[str]) -> list[tuple[str, str]]:
    if raw is None:
        return []
    out: list[tuple[str, str]] = []
    for ipath, sec in _items(ctx, raw, path, "connections", "- from: a` / `to: b", "a connection"):
        src = sec.text("From")
        dst = sec.text("To")
        sec.ignore({"Channel": "FlowEngine channel tuning (buffer, back-pressure, timeout)"})
        sec.ignore(
            {"SourcePort": "ports are `step.route` in `from`", "TargetPort": "one input per step"}
        )
        condition = None
        if sec.has("Filter"):
            condition = _connection_filter(ctx, sec.get("Filter"), sec.at("Filter"))
        sec.finish(["From", "To", "Channel", "Filter"])
        for label, value in (("From", src), ("To", dst)):
            if value is None:
                ctx.error(
                    ipath,
                    f"a connection needs '{label.lower()}'",
                    f"add `{label.lower()}: StepName`",
                )
                continue
            step = value.split(".", 1)[0] if label == "From" else value
            if step not in names:
                hint = did_you_mean(step, names)
                ctx.error(
                    sec.at(label),
                    f"connection {label.lower()} unknown plugin '{step}'"
                    + (f"; {hint}" if hint else ""),
                    f"plugins: {', '.join(sorted(names))}",
                )
        if src and dst:
            if condition is not None:
                ctx.filters[(src, dst)] = condition
            out.append((src, dst))
    return out


def _connection_filter(ctx: _Ctx, raw: Any, path: Path_) -> str | None:
    """A connection's ``filter: {field, value}`` -> the SQL condition of a ``filter`` step:
    only rows whose field equals the value (compared as text) pass along the connection."""
    sec = _Section(ctx, raw, path, "a connection filter")
    name = sec.text("Field")
    value = sec.get("Value")
    sec.finish(["Field", "Value"])
    if not name:
        ctx.error(path, "a connection filter needs a field", "add `field: column_name`")
        return None
    if isinstance(value, dict | list):
        ctx.error(sec.at("Value"), "a filter value must be a single value", "write a value")
        return None
    column = '"' + name.replace('"', '""') + '"'
    if value is None:
        return f"{column} IS NULL"
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"CAST({column} AS VARCHAR) = '" + text.replace("'", "''").replace("$", "$$") + "'"


def _read_routing(
    ctx: _Ctx, raw: Any, path: Path_, plugins: list[_Plugin]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``routing: {queue: {type: DelimitedSink, config}}`` -> sink steps fed by every JS step."""
    if raw is None:
        return {}, []
    section = _Section(ctx, raw, path, "routing")
    steps: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    js_steps = [p.name for p in plugins if p.kind == "JavaScriptTransform"]
    taken = {p.name for p in plugins}
    for low, queue in section.keys.items():
        section.read.add(low)
        tpath = (*path, queue)
        target = _Section(ctx, section.data[low], tpath, f"routing target '{queue}'")
        type_name = target.text("Type") or ""
        config = target.get("Config")
        mode = target.text("Mode")
        if target.has("Condition"):
            target.get("Condition")
            ctx.error(
                target.at("Condition"),
                "routing conditions are not translated",
                "send rows from the script with context.route.send('" + queue + "') instead",
            )
        target.finish(["Type", "Config", "Mode"])
        if _plugin_kind(type_name) != "DelimitedSink":
            ctx.error(
                target.at("Type"),
                f"routing target '{queue}' must be a DelimitedSink, got '{type_name}'",
                "use type: DelimitedSink",
            )
            continue
        if mode is not None and mode.lower() not in ("copy", "move"):
            ctx.error(target.at("Mode"), f"unknown routing mode '{mode}'", "use copy or move")
        if queue in taken:
            ctx.error(tpath, f"routing target '{queue}' has the name of a plugin", "rename it")
            continue
        cfg = _Section(
            ctx, config, (*tpath, target.keys.get("config", "Config")), f"routing target '{queue}'"
        )
        steps[queue] = _delimited_sink(ctx, cfg)
        edges.extend((f"{js}.{queue}", queue) for js in js_steps)
    return steps, edges
