"""The one YAML reader of Quiver's files, and the one ``${...}`` substitution.

``quiver.yaml`` and pipeline files are both read by :func:`load_yaml`: the data, plus the
``file:line:column`` of every key, item and value (:class:`Positions`), so every error message
can say where the problem is. Booleans follow YAML 1.2: only ``true`` / ``false``; ``on``,
``off``, ``yes`` and ``no`` stay strings.

:func:`substitute` then replaces references inside string values, with one rule for both files:

* ``${NAME}`` is the file's variable ``NAME``: the environment in ``quiver.yaml``; in a
  pipeline ``--variable``, then the environment, then the file's ``variables:`` section;
* ``${env:NAME}`` is always the environment variable ``NAME``;
* ``${NAME:-default}`` and ``${env:NAME:-default}`` fall back to ``default`` when ``NAME`` is
  unset or empty;
* ``${file:path}`` is the content of a (secret) file, relative to the YAML file's folder,
  without its trailing newline;
* ``$${`` is a literal ``${``; any other ``$`` is a literal ``$``.

Pipeline files once wrote ``$$`` for a literal ``$``, and kept ``${`` literally when no name
followed. Both are still accepted there (``legacy_escapes``), each with a deprecation warning
saying where and what to write instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from quiver.runtime.errors import ConfigError
from quiver.runtime.hints import did_you_mean

__all__ = [
    "MAX_ALIAS_EXPANSION",
    "MAX_YAML_BYTES",
    "DuplicateKey",
    "FieldPath",
    "Issue",
    "Mark",
    "OddKey",
    "Positions",
    "Substituted",
    "Variables",
    "YamlDocument",
    "escape",
    "format_path",
    "load_yaml",
    "substitute",
]

FieldPath = tuple[str | int, ...]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: The largest YAML file read, in bytes: a configuration file is far smaller.
MAX_YAML_BYTES = 4 * 1024 * 1024
#: The most values a document may hold once its aliases (``*name``) are expanded: anchors
#: referring to anchors grow exponentially ("billion laughs"), and every reader of the data
#: (positions, substitution, validation) walks the expanded form.
MAX_ALIAS_EXPANSION = 100_000


@dataclass(frozen=True)
class Mark:
    """A place in a file, 1-based, as editors count."""

    file: str
    line: int
    column: int

    def render(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class _Value:
    """Where a scalar value starts, and how it is written (to place a character inside it)."""

    mark: Mark
    style: str | None  # None (plain), "'", '"', "|" or ">"
    indent: int  # column (0-based) of a block scalar's first content line


def format_path(path: FieldPath | list[str | int]) -> str:
    """``("source", "csv", "path")`` -> ``source.csv.path``; items as ``[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Positions:
    """``file:line:column`` of every key, item and value of a YAML document, by field path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._keys: dict[FieldPath, Mark] = {}
        self._values: dict[FieldPath, _Value] = {}

    def add(self, path: FieldPath, line: int, column: int) -> None:
        """Note the key (or item) at ``path``; the first one noted wins."""
        self._keys.setdefault(path, Mark(self.file, line, column))

    def _add_value(self, path: FieldPath, value: _Value) -> None:
        self._values.setdefault(path, value)

    def key(self, path: FieldPath) -> Mark | None:
        """Where the key (mapping) or item (sequence) at ``path`` is written."""
        return self._keys.get(tuple(path))

    def value(self, path: FieldPath) -> Mark | None:
        """Where the value at ``path`` starts."""
        found = self._values.get(tuple(path))
        return found.mark if found else None

    def nearest_key(self, path: FieldPath | list[str | int]) -> Mark | None:
        """The mark of ``path``'s key, or of its nearest ancestor's."""
        probe = tuple(path)
        while probe and probe not in self._keys:
            probe = probe[:-1]
        return self._keys.get(probe)

    def where(self, path: FieldPath | list[str | int]) -> str:
        """Location of the nearest known ancestor of ``path``, plus the dotted field path."""
        mark = self.nearest_key(path)
        loc = mark.render() if mark else self.file
        dotted = format_path(path)
        return f"{loc} {dotted}" if dotted else loc

    def line_of(self, path: FieldPath) -> int | None:
        mark = self._keys.get(tuple(path))
        return mark.line if mark else None

    def inside(self, path: FieldPath, text: str, offset: int) -> Mark | None:
        """Where character ``offset`` of the string value at ``path`` is written, as closely as
        the value's style allows (exact for plain and block scalars)."""
        found = self._values.get(tuple(path))
        if found is None:
            return None
        start = found.mark
        before = text[:offset]
        newlines = before.count("\n")
        if found.style in ("|", ">"):
            if found.style == ">":  # folded: lines of the text are not lines of the file
                return Mark(start.file, start.line + 1, found.indent + 1)
            last = before.rfind("\n")
            return Mark(start.file, start.line + 1 + newlines, found.indent + offset - last)
        if newlines:
            return start
        quote = 1 if found.style in ("'", '"') else 0
        return Mark(start.file, start.line, start.column + quote + offset)


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. ``on``, ``off``, ``yes``, ``no`` stay strings, so
    keys such as ``lookup: {on: ...}`` and values such as ``country: NO`` mean what they say."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class DuplicateKey:
    """A mapping key written twice (YAML keeps the last value)."""

    path: FieldPath
    first: Mark
    again: Mark


@dataclass(frozen=True)
class OddKey:
    """A mapping key that is not a string (a number, a boolean, null, a list)."""

    path: FieldPath
    key: Any
    mark: Mark


@dataclass
class YamlDocument:
    """A parsed YAML file: its plain data, its positions and the key problems seen."""

    data: Any
    positions: Positions
    duplicate_keys: list[DuplicateKey] = field(default_factory=list)
    non_string_keys: list[OddKey] = field(default_factory=list)


def load_yaml(text: str, file: str) -> YamlDocument:
    """Parse YAML text, noting where every key, item and value is written.

    Raises :class:`ConfigError` with the position of a syntax error, for a file larger than
    :data:`MAX_YAML_BYTES`, and for aliases expanding to more than :data:`MAX_ALIAS_EXPANSION`
    values.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise ConfigError.one(
            f"the file is {size:,} bytes, more than the {MAX_YAML_BYTES:,} a YAML file may have",
            file,
            "keep large data (scripts, lookup tables) in files of their own and name them",
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, file)
            _whole_characters(node, file)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise ConfigError.one(
            f"invalid YAML: {exc.problem or exc.context or exc}",
            where,
            "check indentation, quoting and that `key: value` pairs have a space after ':'",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError.one(f"invalid YAML: {exc}", file, "fix the YAML syntax") from None
    finally:
        loader.dispose()
    doc = YamlDocument(data, Positions(file))
    if node is not None:
        doc.positions.add((), node.start_mark.line + 1, node.start_mark.column + 1)
        _walk(node, (), doc, text.splitlines(), set())
    return doc


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand to more than :data:`MAX_ALIAS_EXPANSION` values.

    The expanded size of each distinct node is computed once (children before parents), so
    the check costs the size of the file, not of its expansion.
    """
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1
            for child in _children(node):
                total += sizes.get(id(child), 1)  # an alias of an ancestor counts once
            sizes[key] = total
            order.append(node)
            if total > MAX_ALIAS_EXPANSION:
                mark = _mark(file, node)
                raise ConfigError.one(
                    f"aliases (*name) expand this document to more than "
                    f"{MAX_ALIAS_EXPANSION:,} values",
                    mark.render(),
                    "write the values out, or use fewer levels of anchors (&name) that "
                    "refer to other anchors",
                )
            continue
        if key in sizes or key in on_path:
            continue
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _whole_characters(root: yaml.Node, file: str) -> None:
    """Join the halves of UTF-16 surrogate pairs that double-quoted strings write as escapes
    (``"\\ud83d\\ude00"``, as JSON does; the YAML parser keeps each half apart) into the
    characters they make, and refuse a string holding a half without its pair: it is not text,
    and nothing can write it as UTF-8."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(_children(node))
        value = node.value if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or _SURROGATE.search(value) is None:
            continue
        joined = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        half = _SURROGATE.search(joined)
        if half is not None:
            raise ConfigError.one(
                f"this string holds U+{ord(half[0]):04X}, half of a UTF-16 surrogate pair "
                "without the other half: it is not text",
                _mark(file, node).render(),
                "write the whole character: the character itself, an escape of all of it "
                '("\\U0001F600"), or both halves of its pair ("\\ud83d\\ude00")',
            )
        node.value = joined


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _mark(file: str, node: yaml.Node) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(
    node: yaml.Node, path: FieldPath, doc: YamlDocument, lines: list[str], on: set[int]
) -> None:
    if id(node) in on:  # an alias of one of its own ancestors
        return
    positions = doc.positions
    file = positions.file
    if isinstance(node, yaml.ScalarNode):
        indent = 0
        if node.style in ("|", ">"):
            first = node.start_mark.line + 1
            while first < len(lines) and not lines[first].strip():
                first += 1
            if first < len(lines):
                indent = len(lines[first]) - len(lines[first].lstrip(" "))
        positions._add_value(path, _Value(_mark(file, node), node.style, indent))
        return
    positions._add_value(path, _Value(_mark(file, node), None, 0))
    on = on | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = _key_of(key_node)
            child = (*path, key)
            mark = _mark(file, key_node)
            first = positions.key(child)
            if key_node.tag == _MERGE_TAG:
                pass
            elif not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR_TAG):
                doc.non_string_keys.append(OddKey(child, _construct_key(key_node), mark))
            elif first is not None and not _under_duplicate(child, doc.duplicate_keys):
                doc.duplicate_keys.append(DuplicateKey(child, first, mark))
            positions.add(child, mark.line, mark.column)
            _walk(value_node, child, doc, lines, on)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            mark = _mark(file, item)
            positions.add(child, mark.line, mark.column)
            _walk(item, child, doc, lines, on)


def _under_duplicate(path: FieldPath, found: list[DuplicateKey]) -> bool:
    """Whether ``path`` lies inside the value of a key already found written twice (its keys
    repeat the first value's keys without being written twice themselves)."""
    return any(path[: len(d.path)] == d.path for d in found)


def _key_of(node: yaml.Node) -> str | int:
    value = node.value if isinstance(node, yaml.ScalarNode) else str(node.value)
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":int"):
        try:
            return int(value)
        except ValueError:
            return str(value)
    return str(value)


def _construct_key(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return str(node.value)
    try:
        return _Loader("").construct_object(node, deep=True)
    except yaml.YAMLError:
        return node.value


# --------------------------------------------------------------------------- substitution


@dataclass(frozen=True)
class Issue:
    """A problem (or deprecation) found in a value: which field, where, what and the fix."""

    path: FieldPath
    mark: Mark | None
    message: str
    fix: str

    def where(self, file: str) -> str:
        """``file:line:column`` of the issue (the file alone when unknown)."""
        return self.mark.render() if self.mark else file

    def located(self, file: str) -> str:
        """``file:line:column field.path``, as pipeline files report a place."""
        dotted = format_path(self.path)
        return f"{self.where(file)} {dotted}" if dotted else self.where(file)

    def render(self, file: str) -> str:
        return f"{self.located(file)}: {self.message} ({self.fix})"


@dataclass(frozen=True)
class Variables:
    """What the references of one file stand for.

    ``environ`` answers ``${env:NAME}``; ``names`` answers ``${NAME}`` (None: the environment,
    as in ``quiver.yaml``); ``how_to_set`` is the fix offered for an unset ``${NAME}``;
    ``base_dir`` is where a relative ``${file:path}`` starts. ``legacy_escapes`` accepts the
    old escapes of pipeline files, each with a deprecation.
    """

    environ: Mapping[str, str]
    base_dir: Path
    names: Mapping[str, str] | None = None
    how_to_set: Callable[[str], str] | None = None
    legacy_escapes: bool = False


@dataclass
class Substituted:
    """The data with every reference replaced, the errors, and the deprecations seen."""

    data: Any
    errors: list[Issue] = field(default_factory=list)
    deprecations: list[Issue] = field(default_factory=list)


def escape(text: str) -> str:
    """``text`` written so that :func:`substitute` gives it back unchanged."""
    return text.replace("${", "$${")


def substitute(data: Any, variables: Variables, positions: Positions) -> Substituted:
    """Replace the references in every string value of ``data`` (keys are left alone)."""
    out = Substituted(None)
    out.data = _substitute_in(data, (), _Expander(variables, positions, out))
    return out


def _substitute_in(data: Any, path: FieldPath, expander: _Expander) -> Any:
    if isinstance(data, dict):
        return {k: _substitute_in(v, (*path, k), expander) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute_in(v, (*path, i), expander) for i, v in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        return expander.expand(data, path)
    return data


_SYNTAX = "write ${NAME}, ${NAME:-default}, ${env:NAME} or ${file:path}; $${ is a literal ${"


class _Expander:
    def __init__(self, variables: Variables, positions: Positions, out: Substituted) -> None:
        self.vars = variables
        self.positions = positions
        self.out = out

    def expand(self, text: str, path: FieldPath) -> str:
        parts: list[str] = []
        i = 0
        while True:
            j = text.find("$", i)
            if j < 0:
                parts.append(text[i:])
                return "".join(parts)
            parts.append(text[i:j])
            if text.startswith("$${", j):
                parts.append("${")
                i = j + 3
            elif text.startswith("${", j):
                end = text.find("}", j + 2)
                if end < 0:
                    self._error(
                        path,
                        text,
                        j,
                        "'${' is not closed",
                        "end the reference with '}', or write $${ for a literal ${",
                    )
                    parts.append(text[j:])
                    return "".join(parts)
                parts.append(self._resolve(text, j, end, path))
                i = end + 1
            elif self.vars.legacy_escapes and text.startswith("$$", j):
                self._deprecated(
                    path,
                    text,
                    j,
                    "'$$' for a literal '$' is deprecated",
                    "write a single '$'; only '${' needs escaping, as '$${'",
                )
                parts.append("$")
                i = j + 2
            else:
                parts.append("$")
                i = j + 1

    def _resolve(self, text: str, start: int, end: int, path: FieldPath) -> str:
        ref = text[start + 2 : end]
        written = text[start : end + 1]
        kind, colon, rest = ref.partition(":")
        if colon and kind == "file":
            return self._read_file(rest, text, start, path)
        from_env = bool(colon) and kind == "env" and not rest.startswith("-")  # not ${env:-x}
        name, sep, default = (rest if from_env else ref).partition(":-")
        if not name:
            self._error(path, text, start, f"'{written}' names no variable", _SYNTAX)
            return ""
        if not _NAME.match(name):
            if self.vars.legacy_escapes and not from_env:
                self._deprecated(
                    path,
                    text,
                    start,
                    f"'{written}' names no variable and is kept as written; this is deprecated",
                    f"write '$${{{ref}}}' for a literal '{written}'",
                )
                return written
            self._error(path, text, start, f"'{written}' is not a valid reference", _SYNTAX)
            return ""
        from_env = from_env or self.vars.names is None
        source = self.vars.environ if from_env else (self.vars.names or {})
        value = source.get(name)
        if sep and not value:
            return default
        if value is None:
            hint = did_you_mean(name, source)
            if from_env:
                message = f"environment variable {name} is not set"
                fix = f"export {name}, or give a default with ${{{ref}:-value}}"
            else:
                message = f"variable ${{{name}}} is not set"
                how = self.vars.how_to_set
                fix = how(name) if how else f"set {name}, or write ${{{name}:-default}}"
            self._error(path, text, start, message + (f"; {hint}" if hint else ""), fix)
            return ""
        half = _SURROGATE.search(value)
        if half is not None:
            # bytes of the environment that are not UTF-8 come as U+DC80-U+DCFF
            what = f"environment variable {name}" if from_env else f"variable ${{{name}}}"
            code = ord(half[0])
            byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
            self._error(
                path,
                text,
                start,
                f"{what} is not UTF-8 text: its value holds {byte} at character {half.start() + 1}",
                f"set {name} to UTF-8 text",
            )
            return ""
        return value

    def _read_file(self, raw: str, text: str, start: int, path: FieldPath) -> str:
        if not raw.strip():
            self._error(path, text, start, "'${file:}' names no file", "write ${file:path}")
            return ""
        file = Path(raw.strip()).expanduser()
        if not file.is_absolute():
            file = self.vars.base_dir / file
        try:
            content = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._error(
                path,
                text,
                start,
                f"cannot read secret file {str(file)!r}: {reason}",
                f"check the path (a relative path starts in {self.vars.base_dir})",
            )
            return ""
        return content[:-1] if content.endswith("\n") else content

    def _mark(self, path: FieldPath, text: str, offset: int) -> Mark | None:
        return self.positions.inside(path, text, offset) or self.positions.value(path)

    def _error(self, path: FieldPath, text: str, at: int, message: str, fix: str) -> None:
        self.out.errors.append(Issue(path, self._mark(path, text, at), message, fix))

    def _deprecated(self, path: FieldPath, text: str, at: int, what: str, fix: str) -> None:
        self.out.deprecations.append(Issue(path, self._mark(path, text, at), what, fix))
