"""The catalog of a reflected database and of an authored app, checked against the database.

Expected tables, columns and keys are read with plain SQL through the independent drivers of
:class:`tests.conftest.ChinookDb`, never from Quiver itself.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quiver.schema.authoring import compile_app
from quiver.schema.catalog import Catalog, build_catalog
from quiver.schema.ir import Entity, Field, Scalar, Schema
from quiver.schema.reflect import reflect_database
from tests.conftest import ChinookDb


def _tables(db: ChinookDb) -> dict[str, list[str]]:
    """Table name -> its column names in declaration order, read with plain SQL."""
    if db.dialect == "sqlite":
        names = [
            r[0]
            for r in db.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {n: [r[1] for r in db.query(f"PRAGMA table_info('{n}')")] for n in names}
    schema = "'public'" if db.dialect == "postgresql" else "DATABASE()"
    rows = db.query(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        f" WHERE c.table_schema = {schema} AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name, c.ordinal_position"
    )
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def _primary_key(db: ChinookDb, table: str) -> list[str]:
    """The primary key columns of ``table`` in key order, read with plain SQL."""
    if db.dialect == "sqlite":
        rows = db.query(f"PRAGMA table_info('{table}')")
        return [r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]
    schema = "'public'" if db.dialect == "postgresql" else "DATABASE()"
    return [
        r[0]
        for r in db.query(
            "SELECT k.column_name FROM information_schema.table_constraints c"
            " JOIN information_schema.key_column_usage k"
            " ON k.constraint_name = c.constraint_name AND k.table_schema = c.table_schema"
            " AND k.table_name = c.table_name"
            f" WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = {schema}"
            f" AND c.table_name = '{table}' ORDER BY k.ordinal_position"
        )
    ]


async def _reflected(db: ChinookDb) -> Catalog:
    return build_catalog(await reflect_database(db.url))


async def test_a_reflected_catalog_has_every_table_with_its_columns_and_key(
    chinook_db: ChinookDb,
) -> None:
    catalog = await _reflected(chinook_db)
    tables = _tables(chinook_db)
    keyed = {e.source: e for e in catalog.entities.values() if e.primary_key}
    assert sorted(keyed) == sorted(tables)
    for table, columns in tables.items():
        entity = keyed[table]
        assert [f.column for f in catalog.fields[entity.name].values()] == columns
        key = _primary_key(chinook_db, table)
        assert [f.column for f in catalog.key_fields(entity)] == key
        assert list(entity.primary_key) == key


async def test_a_reflected_catalog_serves_four_root_fields_per_table_and_three_per_view(
    chinook_db: ChinookDb,
) -> None:
    catalog = await _reflected(chinook_db)
    track = {n: r.kind for n, r in catalog.root_fields.items() if r.entity.name == "Track"}
    assert track == {
        "tracks": "list",
        "track": "by_key",
        "tracksConnection": "connection",
        "tracksAggregate": "aggregate",
    }
    spend = [r for r in catalog.root_fields.values() if r.entity.source == "customer_spend"]
    assert sorted(r.kind for r in spend) == ["aggregate", "connection", "list"]
    assert all(name == r.name for name, r in catalog.root_fields.items())


async def test_relations_and_their_aggregates_are_found_by_name_with_their_columns(
    chinook_db: ChinookDb,
) -> None:
    catalog = await _reflected(chinook_db)
    album = catalog.relations["Track"]["album"]
    assert (album.kind, album.target, album.local_columns) == ("one", "Album", ("album_id",))
    tracks = catalog.relations["Album"]["tracks"]
    assert catalog.relation_aggregates["Album"] == {"tracksAggregate": tracks}
    assert "albumAggregate" not in catalog.relation_aggregates["Track"]
    playlist_track = catalog.entities["PlaylistTrack"]
    assert [f.name for f in catalog.key_fields(playlist_track)] == ["playlistId", "trackId"]


AUTHORED_APP = """
from __future__ import annotations

import quiver


@quiver.type(source="artist", key="artist_id")
class Artist:
    artist_id: int
    name: str | None
    albums: list[Album] = quiver.relation(fk="artist_id")


@quiver.type(source="album", key="album_id")
class Album:
    album_id: int
    title: str
    artist_id: int
    artist: Artist = quiver.relation(fk="artist_id")


@quiver.query(aggregate=True)
def artists(limit: int | None = None) -> list[Artist]: ...


@quiver.query(name="albumById")
def album(album_id: int) -> Album | None: ...
"""


async def test_an_authored_catalog_serves_exactly_the_declared_root_fields(
    chinook_db: ChinookDb, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(AUTHORED_APP))
    compiled = await compile_app(app, check_db=chinook_db.url)
    assert compiled.lines() == []
    assert compiled.schema is not None
    catalog = build_catalog(compiled.schema)
    assert {n: (r.kind, r.entity.name) for n, r in catalog.root_fields.items()} == {
        "artists": ("list", "Artist"),
        "artistsAggregate": ("aggregate", "Artist"),
        "albumById": ("by_key", "Album"),
    }
    tables = _tables(chinook_db)
    for entity in catalog.entities.values():
        assert {f.column for f in entity.fields} <= set(tables[entity.source])
        assert list(entity.primary_key) == _primary_key(chinook_db, entity.source)
    assert catalog.relation_aggregates["Artist"] == {
        "albumsAggregate": catalog.relations["Artist"]["albums"]
    }


def test_a_key_column_without_a_field_is_reported_by_name() -> None:
    entity = Entity(
        name="Thing",
        source="thing",
        fields=(Field(name="label", column="label", scalar=Scalar.STRING),),
        primary_key=("id",),
    )
    catalog = build_catalog(Schema(entities=(entity,)))
    with pytest.raises(ValueError, match="Thing: key column 'id' is not a field"):
        catalog.key_fields(entity)


def test_the_catalog_module_imports_no_graphql() -> None:
    probe = (
        "import sys, quiver.schema.catalog\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'graphql'"
        " or m.startswith(('quiver.graphql', 'quiver.pipeline')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
