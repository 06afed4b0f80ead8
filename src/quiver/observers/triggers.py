"""Change-log triggers: writes made outside Quiver recorded like Quiver's own mutations.

``quiver observers install-triggers`` creates, on each entity's table, AFTER INSERT, UPDATE and
DELETE triggers that insert change-log rows as a mutation does: the entity's API name, its key
fields as a JSON object, before and after images keyed by API field names, the changed fields.
The images are built by the database (PostgreSQL ``jsonb_build_object``, MariaDB ``JSON_OBJECT``,
SQLite ``json_object``) with each value spelled as the API serves it, using only functions
every connection has (SQLite, which has no base64, computes it from the value's hex digits).
Actor and
tenant stay empty; the transaction id is the database's own (PostgreSQL, MariaDB) or one per
row (SQLite).

A trigger logs nothing while ``<change log>_writers`` holds a row: Quiver's mutations mark
their transaction there (see :mod:`quiver.sql.changelog`) and log their changes themselves.
Identifiers come from the reflected schema and are quoted by the dialect.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from quiver.schema.ir import Entity, Field, Scalar
from quiver.schema.naming import enum_value_names
from quiver.sql.build import template
from quiver.sql.changelog import JSON_NULLS, ensure_change_log, writers_table
from quiver.sql.database import Database
from quiver.sql.dialects import Dialect
from quiver.sql.fragment import compile_sql, sql

__all__ = ["install_triggers", "trigger_names"]

_OPS = ("insert", "update", "delete")
_LOG_COLUMNS = (
    "entity, entity_key, operation, before_image, after_image, changed_fields, transaction_id"
)


def trigger_names(entity: Entity) -> dict[str, str]:
    """The trigger of each operation on ``entity``'s table (PostgreSQL uses one for all)."""
    return {op: f"{entity.source}_quiver_{op}"[:63] for op in _OPS}


def _literal(text: str) -> str:
    """A standard SQL string literal (PostgreSQL, SQLite)."""
    return "'" + text.replace("'", "''") + "'"


def _mysql_literal(text: str) -> str:
    """A MariaDB string literal, where a backslash escapes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _table(d: Dialect, e: Entity) -> str:
    name = d.quote_ident(e.source)
    return f"{d.quote_ident(e.db_schema)}.{name}" if e.db_schema else name


def _pairs(e: Entity) -> list[tuple[str, str]]:
    return [(f.column, f.name) for f in e.fields]


def _sqlite_base64() -> str:
    """Base64 of a value's bytes with SQLite's built-in functions only (it has no base64):
    its hex digits, three bytes (six digits) at a time, each group's 24 bits as four letters,
    ``=`` padding the last group; a recursive query accumulates the text."""
    digit = "(instr('0123456789ABCDEF', substr(q.h, {k}, 1)) - 1)"
    weights = (1048576, 65536, 4096, 256, 16, 1)
    # The group's 24 bits (missing digits of a short last group count as 0).
    bits = " + ".join(
        f"(CASE WHEN length(q.h) >= {k} THEN {digit.format(k=k)} ELSE 0 END) * {w}"
        for k, w in enumerate(weights, start=1)
    )
    letters = "'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'"

    def letter(shift: int) -> str:
        return f"substr({letters}, ((g.v >> {shift}) & 63) + 1, 1)"

    group = (
        f"(SELECT {letter(18)} || {letter(12)}"
        f" || CASE WHEN length(q.h) >= 4 THEN {letter(6)} ELSE '=' END"
        f" || CASE WHEN length(q.h) >= 6 THEN {letter(0)} ELSE '=' END"
        f" FROM (SELECT {bits} AS v) AS g)"
    )
    return (
        "CASE WHEN {0} IS NULL THEN NULL ELSE (WITH RECURSIVE q(h, out) AS"
        " (SELECT hex({0}), '' UNION ALL"
        f" SELECT substr(q.h, 7), q.out || {group} FROM q WHERE q.h <> '')"
        " SELECT out FROM q WHERE h = '') END"
    )


#: SQLite templates that call functions Quiver registers on its own connections only: a
#: trigger also runs in other programs' connections, so it uses built-in functions instead.
_SQLITE_PORTABLE = {
    "quiver_base64(": _sqlite_base64(),
    # Infinities as the strings the API serves (SQLite's JSON writes Inf, which is not
    # JSON); other reals with 20 significant digits, which read back as the same double (the
    # 17 that suffice in theory do not with SQLite's printf before 3.43: it wrote the
    # greatest double as 1.7976931348623156e+308, which reads back as another double).
    "quiver_real(": (
        "CASE WHEN typeof({0}) <> 'real' THEN {0}"
        " WHEN {0} > 1.7976931348623157e308 THEN 'Infinity'"
        " WHEN {0} < -1.7976931348623157e308 THEN '-Infinity'"
        " ELSE json(printf('%!.20g', {0})) END"
    ),
    "quiver_not_int(": "{}",
}


def _served(d: Dialect, f: Field, expr: str) -> str:
    """``expr``, a value of ``f``'s column, as the API serves it (MariaDB, SQLite), written
    with functions every connection has, so a trigger never refuses a write."""
    if f.read_as is not None:  # a domain over an enum: read as the enum (see Field.read_as)
        schema, name = f.read_as
        kind = f"{d.quote_ident(schema)}.{d.quote_ident(name)}{'[]' if f.is_list else ''}"
        expr = f"CAST({expr} AS {kind})"
    if f.is_list:
        if d.name != "postgresql":
            return expr
        elem = _served_value(d, f, '"__e"."x"')
        if elem == '"__e"."x"':
            # a value of several dimensions as the one-dimension list GraphQL serves
            flat, slots = compile_sql(template(d.flat_list, sql(expr)), d)
            assert not slots
            return flat
        text, slots = compile_sql(template(d.list_output, sql(expr), sql(elem)), d)
        assert not slots
        return text
    return _served_value(d, f, expr)


def _served_value(d: Dialect, f: Field, expr: str) -> str:
    """One value of ``f``'s scalar or enum, as served."""
    lit = _mysql_literal if d.name == "mysql" else _literal
    if f.enum_values is not None:
        renamed = [(db, g) for db, g in enum_value_names(f.enum_values).items() if db != g]
        if not renamed:
            return expr
        cases = "".join(f" WHEN {lit(db)} THEN {lit(g)}" for db, g in renamed)
        otherwise = d.text_of.format(expr) if d.text_of else expr
        return f"CASE {expr}{cases} ELSE {otherwise} END"
    tpl = d.column_output(f.db_type, f.scalar.value)
    if tpl is None:
        return expr
    if d.name == "sqlite":
        for call, portable in _SQLITE_PORTABLE.items():
            if call in tpl:
                tpl = portable
                break
        if f.scalar == Scalar.JSON:
            tpl = "CASE WHEN json_valid({0}) THEN json({0}) ELSE {0} END"
    text, slots = compile_sql(template(tpl, sql(expr)), d)
    assert not slots
    return text


def _key_names(e: Entity) -> list[str]:
    return [f.name for c in e.primary_key if (f := e.field_by_column(c)) is not None]


# ----- PostgreSQL: one plpgsql function per table, one trigger -----


def _pg_image(d: Dialect, e: Entity, row: str) -> str:
    """The row's image keyed by API names, each value as the API serves it (built in chunks:
    a function call takes at most 100 arguments)."""
    items = [
        f"{_literal(f.name)}, {_served(d, f, f'{row}.{d.quote_ident(f.column)}')}" for f in e.fields
    ]
    chunks = [items[i : i + 40] for i in range(0, len(items), 40)] or [[]]
    return " || ".join(f"jsonb_build_object({', '.join(c)})" for c in chunks)


def _pg_json_nulls(d: Dialect, e: Entity, row: str, image: str) -> str:
    """A statement adding to ``image`` (built from ``row``) the JSON fields holding a JSON
    null under JSON_NULLS, when there are any (see :mod:`quiver.sql.changelog`): a field whose
    image value is null while its column is not NULL."""
    tests = [
        (
            f.name,
            f"({row}.{d.quote_ident(f.column)} IS NOT NULL"
            f" AND {image}->{_literal(f.name)} = 'null'::jsonb)",
        )
        for f in e.fields
        if f.holds_json_null
    ]
    if not tests:
        return ""
    named = ", ".join(f"CASE WHEN {t} THEN {_literal(n)} END" for n, t in tests)
    anyone = " OR ".join(t for _, t in tests)
    return (
        f" IF {anyone} THEN {image} := {image} || jsonb_build_object({_literal(JSON_NULLS)},"
        f" to_jsonb(array_remove(ARRAY[{named}]::text[], NULL))); END IF;"
    )


def _pg_statements(d: Dialect, e: Entity, log: str, writers: str, drop: bool) -> list[str]:
    table = _table(d, e)
    name = d.quote_ident(trigger_names(e)["insert"].replace("_insert", ""))
    function = d.quote_ident(f"{e.source}_quiver_log"[:63])
    if e.db_schema:
        function = f"{d.quote_ident(e.db_schema)}.{function}"
    statements = [f"DROP TRIGGER IF EXISTS {name} ON {table}"]
    if drop:
        return [*statements, f"DROP FUNCTION IF EXISTS {function}()"]
    pairs = _literal(json.dumps(_pairs(e)))
    keys = _literal(json.dumps(_key_names(e)))
    # A JSON null and SQL NULL are both null in an image: JSON_NULLS tells them apart.
    given = inserted = ""
    if any(f.holds_json_null for f in e.fields):
        k = _literal(JSON_NULLS)
        given = f" OR coalesce(new_image->{k}, '[]') ? (p->>1)"
        inserted = (
            f"\n        OR ((new_image ? {k} OR old_image ? {k})"
            f" AND (coalesce(new_image->{k}, '[]') ? (p->>1))"
            f" <> (coalesce(old_image->{k}, '[]') ? (p->>1)))"
        )
    body = f"""
DECLARE
  pairs jsonb := {pairs}::jsonb;
  keys jsonb := {keys}::jsonb;
  old_image jsonb; new_image jsonb; image jsonb;
  changed jsonb;
BEGIN
  IF EXISTS (SELECT 1 FROM {writers}) THEN RETURN NULL; END IF;
  IF TG_OP <> 'INSERT' THEN
    old_image := {_pg_image(d, e, "OLD")};{_pg_json_nulls(d, e, "OLD", "old_image")}
  END IF;
  IF TG_OP <> 'DELETE' THEN
    new_image := {_pg_image(d, e, "NEW")};{_pg_json_nulls(d, e, "NEW", "new_image")}
  END IF;
  IF TG_OP = 'INSERT' THEN
    old_image := NULL;
    SELECT coalesce(jsonb_agg(p->>1 ORDER BY n), '[]'::jsonb) INTO changed
      FROM jsonb_array_elements(pairs) WITH ORDINALITY AS a(p, n)
      WHERE new_image->(p->>1) <> 'null'::jsonb{given};
  ELSIF TG_OP = 'UPDATE' THEN
    SELECT coalesce(jsonb_agg(p->>1 ORDER BY n), '[]'::jsonb) INTO changed
      FROM jsonb_array_elements(pairs) WITH ORDINALITY AS a(p, n)
      WHERE new_image->(p->>1) IS DISTINCT FROM old_image->(p->>1){inserted};
    IF changed = '[]'::jsonb THEN RETURN NULL; END IF;
  ELSE
    new_image := NULL;
    SELECT coalesce(jsonb_agg(p->>1 ORDER BY n), '[]'::jsonb) INTO changed
      FROM jsonb_array_elements(pairs) WITH ORDINALITY AS a(p, n);
  END IF;
  image := coalesce(new_image, old_image);
  INSERT INTO {log} ({_LOG_COLUMNS})
  VALUES ({_literal(e.name)},
    (SELECT coalesce(jsonb_object_agg(k, image->k), '{{}}'::jsonb)
       FROM jsonb_array_elements_text(keys) AS k),
    lower(TG_OP), old_image, new_image, changed, txid_current()::text);
  RETURN NULL;
END"""
    return [
        *statements,
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql"
        f" AS $quiver${body}$quiver$",
        f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


# ----- MariaDB and SQLite: three triggers per table, one INSERT ... SELECT each -----


def _json_null_tests(d: Dialect, e: Entity, row: str) -> list[tuple[str, str]]:
    """Each field that may hold the JSON value null, and the test that it does."""
    return [
        (f.name, d.json_null_test.format(f"{row}.{d.quote_ident(f.column)}"))
        for f in e.fields
        if f.holds_json_null
    ]


def _row_statements(d: Dialect, e: Entity, log: str, writers: str, drop: bool) -> list[str]:
    table = _table(d, e)
    names = trigger_names(e)
    statements = [f"DROP TRIGGER IF EXISTS {d.quote_ident(names[op])}" for op in _OPS]
    if drop:
        return statements
    mysql = d.name == "mysql"
    lit = _mysql_literal if mysql else _literal
    obj = "JSON_OBJECT" if mysql else "json_object"
    pairs = _pairs(e)

    def image(row: str) -> str:
        served = [(f.name, _served(d, f, f"{row}.{d.quote_ident(f.column)}")) for f in e.fields]
        # Built in parts where a function takes fewer arguments (SQLite: 127).
        limit = d.json_object_max_pairs or len(served) or 1
        built = f"{obj}(" + ", ".join(f"{lit(n)}, {v}" for n, v in served[:limit]) + ")"
        for start in range(limit, len(served), limit):
            more = ", ".join(
                f"{lit('$.' + n if d.json_object_more_paths else n)}, {v}"
                for n, v in served[start : start + limit]
            )
            built = d.json_object_more.format(built, more)
        tests = _json_null_tests(d, e, row)
        if not tests:
            return built
        # The JSON fields holding a JSON null, under JSON_NULLS when there are any.
        anyone = " OR ".join(t for _, t in tests)
        if mysql:
            parts = "".join(f", CASE WHEN {t} THEN {lit(json.dumps(n))} END" for n, t in tests)
            named = f"JSON_EXTRACT(CONCAT('[', CONCAT_WS(','{parts}), ']'), '$')"
            insert = "JSON_INSERT"
        else:
            joined = " || ".join(
                f"CASE WHEN {t} THEN ',' || {lit(json.dumps(n))} ELSE '' END" for n, t in tests
            )
            named = f"json('[' || substr({joined}, 2) || ']')"
            insert = "json_insert"
        marked = f"{insert}({built}, {lit('$.' + JSON_NULLS)}, {named})"
        return f"CASE WHEN {anyone} THEN {marked} ELSE {built} END"

    key_pairs = [(c, f.name) for c in e.primary_key if (f := e.field_by_column(c)) is not None]

    def key(row: str) -> str:
        items = [f"{lit(n)}, {row}.{d.quote_ident(c)}" for c, n in key_pairs]
        return f"{obj}(" + ", ".join(items) + ")"

    def changed(test: str) -> str:
        # Each field passing ``test`` as a JSON string, NULL otherwise; MariaDB's CONCAT_WS
        # skips the NULLs, SQLite (whose concat_ws is recent) drops the leading comma.
        tests = [(test.format(c=d.quote_ident(c)), lit(json.dumps(n))) for c, n in pairs]
        if mysql:
            parts = "".join(f", CASE WHEN {t} THEN {n} END" for t, n in tests)
            return f"CONCAT('[', CONCAT_WS(','{parts}), ']')"
        joined = " || ".join(f"CASE WHEN {t} THEN ',' || {n} ELSE '' END" for t, n in tests)
        return f"('[' || substr({joined or repr('')}, 2) || ']')"

    null_safe_differs = "NOT (OLD.{c} <=> NEW.{c})" if mysql else "OLD.{c} IS NOT NEW.{c}"
    txid = (
        "COALESCE((SELECT trx_id FROM information_schema.INNODB_TRX"
        " WHERE trx_mysql_thread_id = CONNECTION_ID()), CONCAT('connection-', CONNECTION_ID()))"
        if mysql
        else "lower(hex(randomblob(16)))"
    )
    cases = {
        "insert": ("NULL", image("NEW"), changed("NEW.{c} IS NOT NULL"), key("NEW")),
        "update": (image("OLD"), image("NEW"), changed(null_safe_differs), key("NEW")),
        "delete": (image("OLD"), "NULL", changed("1 = 1"), key("OLD")),
    }
    quiet = f"NOT EXISTS (SELECT 1 FROM {writers})"
    for op, (before, after, fields, row_key) in cases.items():
        select = (
            f"INSERT INTO {log} ({_LOG_COLUMNS}) SELECT {lit(e.name)}, {row_key}, {lit(op)},"
            f" {before}, {after}, {fields}, {txid}"
        )
        if op == "update":
            select += f" FROM (SELECT {fields} AS f) AS c WHERE c.f <> '[]' AND {quiet}"
        elif mysql:
            select += f" FROM DUAL WHERE {quiet}"
        else:
            select += f" WHERE {quiet}"
        trigger = d.quote_ident(names[op])
        head = f"CREATE TRIGGER {trigger} AFTER {op.upper()} ON {table} FOR EACH ROW"
        statements.append(f"{head} {select}" if mysql else f"{head} BEGIN {select}; END")
    return statements


async def install_triggers(
    db: Database, entities: Sequence[Entity], change_log_table: str, *, drop: bool = False
) -> list[str]:
    """Create (or, with ``drop``, remove) the change-log triggers of ``entities``' tables;
    re-running replaces them. Returns the names of the tables handled."""
    d = db.dialect
    async with db.transaction() as tx:
        await ensure_change_log(tx, d, change_log_table)
        log = d.quote_ident(change_log_table)
        writers = d.quote_ident(writers_table(change_log_table))
        if d.name == "postgresql":
            rows = await tx.fetch_rows("SELECT current_schema()", [])
            schema = d.quote_ident(str(rows[0][0]))
            log, writers = f"{schema}.{log}", f"{schema}.{writers}"
    done = []
    for e in entities:
        if not e.primary_key:
            continue
        build = _pg_statements if d.name == "postgresql" else _row_statements
        async with db.transaction() as tx:
            for statement in build(d, e, log, writers, drop):
                await tx.fetch_rows(statement, [])
        done.append(e.source)
    return done
