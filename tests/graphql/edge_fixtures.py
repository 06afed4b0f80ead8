"""A small database of awkward shapes, built in each dialect for the edge-case tests.

Tables with mixed case, spaces, reserved words, ``%`` and quote characters, non-ASCII and very
long names; a composite primary key with a composite foreign key onto it; a self reference; two
foreign keys onto one table; a view without a key; an empty table; a table holding only its key;
columns named like the filter combinators (``and``, ``or``, ``not``).
Expected results are read back with plain SQL through :class:`tests.conftest.ChinookDb`, whose
drivers (sqlite3, psycopg, PyMySQL) are not the ones Quiver uses.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import Dialect

#: A column name close to the 63-byte identifier limit of PostgreSQL.
LONG_COLUMN = "a_very_long_column_name_that_goes_on_and_on_for_quite_a_whil"
#: Its GraphQL field name.
LONG_FIELD = "aVeryLongColumnNameThatGoesOnAndOnForQuiteAWhil"


def quote(dialect: Dialect, name: str) -> str:
    """``name`` as a quoted identifier of ``dialect``."""
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def statements(dialect: Dialect) -> list[str]:
    """CREATE and INSERT statements of the awkward database, in order."""

    def q(name: str) -> str:
        return quote(dialect, name)

    text = "VARCHAR(100)" if dialect == "mysql" else "TEXT"
    return [
        f"CREATE TABLE {q('Mixed Case')} ({q('Id')} INTEGER PRIMARY KEY, {q('order')} {text},"
        f" {q('select')} INTEGER, {q('group')} {text}, {q('pct%col')} {text},"
        f" {q(chr(39).join(['quo', 'te']))} {text}, {q('ünïcödé')} {text},"
        f" {q(LONG_COLUMN)} INTEGER, {q('Camel Col')} {text})",
        f"CREATE TABLE pair (a INTEGER NOT NULL, b INTEGER NOT NULL, label {text},"
        " PRIMARY KEY (a, b))",
        f"CREATE TABLE pair_child (id INTEGER PRIMARY KEY, pa INTEGER, pb INTEGER, note {text},"
        " FOREIGN KEY (pa, pb) REFERENCES pair (a, b))",
        f"CREATE TABLE node (id INTEGER PRIMARY KEY, parent_id INTEGER, name {text},"
        " FOREIGN KEY (parent_id) REFERENCES node (id))",
        f"CREATE TABLE airport (id INTEGER PRIMARY KEY, code {text})",
        "CREATE TABLE flight (id INTEGER PRIMARY KEY, origin_id INTEGER NOT NULL,"
        " dest_id INTEGER, FOREIGN KEY (origin_id) REFERENCES airport (id),"
        " FOREIGN KEY (dest_id) REFERENCES airport (id))",
        "CREATE VIEW pair_view AS SELECT a, b, label FROM pair",
        f"CREATE TABLE empty_t (id INTEGER PRIMARY KEY, val INTEGER, amount NUMERIC(10,2),"
        f" name {text})",
        "CREATE TABLE only_pk (id INTEGER PRIMARY KEY)",
        f"CREATE TABLE {q('order')} (id INTEGER PRIMARY KEY, {q('from')} INTEGER,"
        f" {q('where')} {text})",
        f"INSERT INTO {q('Mixed Case')} VALUES"
        " (1, 'o1', 10, 'g1', 'p%1', 'it''s', 'ü', 5, 'c1'),"
        " (2, NULL, NULL, 'g2', '50%', NULL, 'ß', NULL, NULL),"
        " (3, 'o3', 30, 'g1', 'a_b', 'x', '日本', 7, 'c3'),"
        " (4, 'o0', -3, NULL, 'back\\slash', 'q\"d', 'Ünï', 1, 'c4')"
        if dialect != "mysql"
        else f"INSERT INTO {q('Mixed Case')} VALUES"
        " (1, 'o1', 10, 'g1', 'p%1', 'it''s', 'ü', 5, 'c1'),"
        " (2, NULL, NULL, 'g2', '50%', NULL, 'ß', NULL, NULL),"
        " (3, 'o3', 30, 'g1', 'a_b', 'x', '日本', 7, 'c3'),"
        " (4, 'o0', -3, NULL, 'back\\\\slash', 'q\"d', 'Ünï', 1, 'c4')",
        "INSERT INTO pair VALUES (1, 1, 'one-one'), (1, 2, 'one-two'), (2, 1, 'two-one'),"
        " (3, 3, NULL)",
        "INSERT INTO pair_child VALUES (1, 1, 2, 'c1'), (2, 2, 1, 'c2'), (3, NULL, NULL, 'c3'),"
        " (4, 1, 2, 'c4'), (5, 2, 1, NULL)",
        "INSERT INTO node VALUES (1, NULL, 'root'), (2, 1, 'kid'), (3, 2, 'grandkid'),"
        " (4, 1, 'kid2'), (5, 3, 'great')",
        "INSERT INTO airport VALUES (1, 'AAA'), (2, 'BBB'), (3, 'CCC'), (4, NULL)",
        "INSERT INTO flight VALUES (1, 1, 2), (2, 2, 1), (3, 1, NULL), (4, 3, 3), (5, 2, 4),"
        " (6, 4, 2)",
        "INSERT INTO only_pk VALUES (1), (2)",
        f"INSERT INTO {q('order')} VALUES (1, 5, 'w'), (2, NULL, 'x')",
        f"CREATE TABLE logic (id INTEGER PRIMARY KEY, {q('and')} {text}, {q('or')} {text},"
        f" {q('not')} {text})",
        "INSERT INTO logic VALUES (1, 'a', 'o', 'n'), (2, NULL, 'x', NULL), (3, 'b', NULL, 'n')",
    ]


def build_sqlite(path: Path) -> str:
    """Create the awkward database as an SQLite file; returns its URL."""
    conn = sqlite3.connect(path)
    try:
        for statement in statements("sqlite"):
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()
    return f"sqlite:///{path.absolute()}"
