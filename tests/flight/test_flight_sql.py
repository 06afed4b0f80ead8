"""The Flight SQL subset through adbc-driver-flightsql, pandas and polars."""

from __future__ import annotations

from typing import Any

import pytest

from tests.flight.conftest import Served, sql


def test_a_select_runs_through_the_adbc_flight_sql_driver(served: Served, conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT trackId, name FROM Track WHERE genreId = 1 AND milliseconds > 300000 "
            "AND name NOT LIKE 'Z%' LIMIT 500"
        )
        table = cur.fetch_arrow_table()
    expected = sql(
        served,
        "SELECT track_id FROM track WHERE genre_id = 1 AND milliseconds > 300000 "
        "AND name NOT LIKE ?",
        ("Z%",),
    )
    assert sorted(table.column("trackId").to_pylist()) == sorted(r[0] for r in expected)
    assert table.column_names == ["trackId", "name"]


def test_table_names_and_conditions_of_sql_are_the_catalogs(served: Served, conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT * FROM invoice WHERE (billing_country IN ('Canada', 'France') OR total >= 20)"
            " AND billing_state IS NOT NULL"
        )
        table = cur.fetch_arrow_table()
    expected = sql(
        served,
        "SELECT count(*) FROM invoice WHERE (billing_country IN ('Canada', 'France') "
        "OR total >= 20) AND billing_state IS NOT NULL",
    )
    assert table.num_rows == expected[0][0] > 0
    assert "invoiceDate" in table.column_names


def test_pandas_and_polars_read_sql_through_flight_sql(served: Served, conn: Any) -> None:
    import pandas as pd
    import polars as pl

    frame = pd.read_sql("SELECT name FROM Genre WHERE genreId BETWEEN 1 AND 3", conn)
    assert sorted(frame["name"]) == sorted(
        r[0] for r in sql(served, "SELECT name FROM genre WHERE genre_id BETWEEN 1 AND 3")
    )
    polars_frame = pl.read_database("SELECT albumId, title FROM Album LIMIT 7", conn)
    assert polars_frame.height == 7
    assert polars_frame.columns == ["albumId", "title"]


def test_the_catalog_is_listed_through_get_objects(served: Served, conn: Any) -> None:
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["quiver"]
    names = {
        t["table_name"] for s in objects[0]["catalog_db_schemas"] for t in s["db_schema_tables"]
    }
    assert names == {e.name for e in served.schema.entities}
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Quiver"
    schema = conn.adbc_get_table_schema("Genre")
    assert schema.names == ["genreId", "name"]


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("DELETE FROM Track", "only SELECT is served"),
        ("SELECT count(*) FROM Track", "is not a column"),
        ("SELECT name FROM Track JOIN Album ON 1 = 1", "JOIN is not supported"),
        ("SELECT name FROM Genre TABLESAMPLE (10)", "TABLESAMPLE is not supported"),
        ("SELECT name FROM Genre FOR UPDATE", "FOR UPDATE / FOR SHARE is not supported"),
        ("WITH t AS (SELECT 1) SELECT name FROM Genre", "WITH is not supported"),
        ("SELECT name FROM Genre ORDER BY name", "ORDER BY is not supported"),
        ("SELECT name FROM Genre WHERE genreId BETWEEN SYMMETRIC 3 AND 1", "SYMMETRIC"),
        ("SELECT name FROM Genre LIMIT 99999999999999999999", "below 2^63"),
        ("SELECT name FROM Genre WHERE name = 'a\x00b'", "the SQL cannot be parsed"),
        ("SELECT name FROM Genre FETCH FIRST 50 PERCENT ROWS ONLY", "no PERCENT"),
        ("SELECT name FROM Nope", "no table or type 'Nope'"),
        ("SELECT nope FROM Track", "Track has no column 'nope'"),
        ("SELECT name FROM Track WHERE name = 'a' OR 1 = 1", "is not a column"),
        ("SELECT name FROM Track; DROP TABLE track", "exactly one statement"),
        ("SELEC name", "only SELECT is served"),
        ("SELECT name FROM (SELECT", "cannot be parsed"),
    ],
)
def test_sql_outside_the_subset_is_refused_with_what_is_not_served(
    served: Served, conn: Any, statement: str, says: str
) -> None:
    import adbc_driver_manager

    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
        cur.execute(statement)
        cur.fetch_arrow_table()
    assert says in str(caught.value)
    assert "INTERNAL" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert sql(served, "SELECT count(*) FROM track")[0][0] > 3000


def test_fetch_first_is_a_limit(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM Genre FETCH FIRST 3 ROWS ONLY")
        assert cur.fetch_arrow_table().num_rows == 3


@pytest.mark.parametrize(
    "statement",
    [
        "select genreid, NAME from genre where GENREID = 1",
        "SELECT GENRE_ID FROM Genre WHERE genre_id = ? AND Name LIKE 'R%'",
        "SELECT * FROM GENRE WHERE NOT (GenreId <> 1)",
    ],
)
def test_unquoted_names_match_whatever_their_case(conn: Any, statement: str) -> None:
    """SQL folds unquoted names; a name differing from a field's or column's only in case
    is that field (it was refused: "Genre has no column 'genreid'")."""
    with conn.cursor() as cur:
        if "?" in statement:
            cur.adbc_prepare(statement)
            import pyarrow as pa

            assert pa.schema(cur.adbc_statement.get_parameter_schema()).types == [pa.int32()]
            cur.execute(statement, (1,))
        else:
            cur.execute(statement)
        table = cur.fetch_arrow_table()
    assert table.num_rows == 1
    assert table.column("genreId").to_pylist() == [1]


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("SELECT name FROM other.Genre", "the table other.Genre names other, which this server"),
        ("SELECT name FROM someschema.Genre", "names someschema, which this server does not"),
        ("SELECT name FROM catalog.schema.Genre", "names catalog.schema, which this server"),
        ("SELECT name FROM quiver.other.Genre", "names quiver.other, which this server"),
        ("SELECT name FROM other.main.Genre", "in schema main of catalog quiver"),
        ("SELECT x.name FROM Genre", "the column x.name names x, which is not the table"),
        ("SELECT name FROM Genre WHERE x.genreId = 1", "x.genreId names x, which is not"),
        ("SELECT Genre.name FROM Genre g", "write g.name or name"),
        ("SELECT g.name FROM Genre", "(FROM Genre)"),
        ("SELECT other.Genre.name FROM Genre", "other.Genre.name names other.Genre"),
        ("SELECT x.* FROM Genre", "x.* names x"),
        ("SELECT *, name FROM Genre", "* with other columns is not served"),
        ("SELECT name, * FROM Genre", "* with other columns is not served"),
        ("SELECT name, name FROM Genre", "name and name select the same column (name)"),
        ("SELECT genreId, GENRE_ID FROM Genre", "genreId and GENRE_ID select the same column"),
        ("SELECT name FROM Genre WHERE name = X'ff'", "and name is a String column"),
        ("SELECT name FROM Genre WHERE genreId IN (1, X'01')", "genreId is an Int column"),
        ("SELECT name FROM Genre WHERE name = X'f'", "X'f' is not bytes"),
    ],
)
def test_what_a_statement_names_is_read_or_refused_never_ignored(
    conn: Any, statement: str, says: str
) -> None:
    """A qualifier naming another schema or table, ``*`` beside other columns and a binary
    string against a column that is not bytes were once dropped or unread: ``other.Genre``
    read Genre, ``x.name`` read name, ``*, name`` returned name once."""
    import adbc_driver_manager

    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
        cur.execute(statement)
        cur.fetch_arrow_table()
    said = str(caught.value)
    assert says in said, said
    assert "INTERNAL" not in said and "Traceback" not in said


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT name FROM main.Genre WHERE genreId = 1",
        "SELECT name FROM quiver.main.Genre WHERE genreId = 1",
        "SELECT g.name FROM Genre g WHERE g.genreId = 1",
        "SELECT G.name FROM Genre AS g WHERE g.genreId = 1",
        "SELECT Genre.name FROM Genre WHERE genre.genreId = 1",
        "SELECT main.Genre.name FROM quiver.main.Genre WHERE Genre.genreId = 1",
    ],
)
def test_the_served_schema_the_table_and_its_alias_qualify_names(
    served: Served, conn: Any, statement: str
) -> None:
    with conn.cursor() as cur:
        cur.execute(statement)
        table = cur.fetch_arrow_table()
    assert table.column_names == ["name"]
    assert table.column("name").to_pylist() == [
        r[0] for r in sql(served, "SELECT name FROM genre WHERE genre_id = 1")
    ]


def test_a_table_star_is_every_column(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT g.* FROM Genre g WHERE g.genreId = 1")
        assert cur.fetch_arrow_table().column_names == ["genreId", "name"]


def test_a_table_is_found_by_each_name_a_statement_reads_it_by(served: Served, conn: Any) -> None:
    """GetTables listed type names only, so ``adbc_get_table_schema`` of the database table
    name (which ``FROM`` reads) was NOT_FOUND; each name a statement reads a table by finds
    it now, listed under that name."""
    (genre,) = [e for e in served.schema.entities if e.name == "Genre"]
    for name in ("Genre", genre.source, "GENRE", "genres"):
        schema = conn.adbc_get_table_schema(name)
        assert schema.names == ["genreId", "name"], name
        assert schema.field("name").metadata[b"ARROW:FLIGHT:SQL:TABLE_NAME"] == name.encode()
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {name} WHERE genreId = 1")
            assert cur.fetch_arrow_table().schema.names == schema.names
    listed = conn.adbc_get_objects(depth="tables", table_name_filter="genre").read_all()
    tables = listed.to_pylist()[0]["catalog_db_schemas"][0]["db_schema_tables"]
    assert [t["table_name"] for t in tables] == (
        ["Genre"] if genre.source == "Genre" else [genre.source]
    )
    import adbc_driver_manager

    with pytest.raises(adbc_driver_manager.Error):
        conn.adbc_get_table_schema("nope")


def test_get_tables_reports_flight_sql_column_metadata(served: Served, conn: Any) -> None:
    schema = conn.adbc_get_table_schema("Track")
    (track,) = [e for e in served.schema.entities if e.name == "Track"]
    for f in track.fields:
        meta = schema.field(f.name).metadata
        assert meta[b"ARROW:FLIGHT:SQL:CATALOG_NAME"] == b"quiver"
        assert meta[b"ARROW:FLIGHT:SQL:SCHEMA_NAME"] == b"main"
        assert meta[b"ARROW:FLIGHT:SQL:TABLE_NAME"] == b"Track"
        assert meta[b"ARROW:FLIGHT:SQL:TYPE_NAME"] == (f.db_type or f.scalar.value).encode()
        assert meta[b"ARROW:FLIGHT:SQL:IS_READ_ONLY"] == b"1"
    searchable = {
        f.name: schema.field(f.name).metadata[b"ARROW:FLIGHT:SQL:IS_SEARCHABLE"]
        for f in track.fields
    }
    assert searchable["name"] == b"3" and searchable["milliseconds"] == b"2"
    assert schema.field("trackId").metadata[b"ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT"] == b"1"
    assert schema.field("name").metadata[b"ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT"] == b"0"


@pytest.mark.parametrize("connective", ["AND", "OR"])
def test_a_long_chain_of_and_or_or_is_one_level_of_the_filter(
    served: Served, conn: Any, connective: str
) -> None:
    test = "track_id <> {}" if connective == "AND" else "track_id = {}"
    where = f" {connective} ".join(test.format(i) for i in range(1, 301))
    with conn.cursor() as cur:
        cur.execute(f"SELECT trackId FROM Track WHERE {where}")
        table = cur.fetch_arrow_table()
    expected = sql(served, f"SELECT track_id FROM track WHERE {where}")
    assert sorted(table.column("trackId").to_pylist()) == sorted(r[0] for r in expected)
    assert table.num_rows > 0


@pytest.mark.parametrize(
    ("pattern", "listed"),
    [
        ("G_nre", ["Genre"]),
        ("%enre", ["Genre"]),
        ("Ge%e", ["Genre"]),
        ("[G]enre", []),
        ("[A-Z]enre", []),
        ("G*", []),
        ("Genr?", []),
    ],
)
def test_get_tables_patterns_have_only_like_wildcards(
    conn: Any, pattern: str, listed: list[str]
) -> None:
    objects = conn.adbc_get_objects(depth="tables", table_name_filter=pattern).read_all()
    schemas = objects.to_pylist()[0]["catalog_db_schemas"]
    tables = [t["table_name"] for s in schemas for t in s["db_schema_tables"] or []]
    assert tables == listed
