"""``quiver compile`` against real databases, and the example app.

Every test gets its own SQLite file, PostgreSQL schema or MariaDB database (random name,
dropped afterwards).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncmy
import asyncpg
import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.authoring import compile_app
from quiver.schema.ir import Entity, Schema
from quiver.schema.reflect import reflect_database
from tests.schema.subset import SUBSET_APP, SUBSET_DDL, Database, build_sqlite_subset

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "authoring"
QUIVER = str(Path(sys.executable).parent / "quiver")
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def postgresql_subset() -> AsyncIterator[Database]:
    schema = f"authoring_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"SET search_path TO {schema}")
        for stmt in SUBSET_DDL:
            await conn.execute(stmt)
        yield Database("postgresql", PG_URL, schema)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


@pytest.fixture
async def mysql_subset() -> AsyncIterator[Database]:
    name = f"authoring_{secrets.token_hex(4)}"
    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE DATABASE {name}")
            await cur.execute(f"USE {name}")
            for stmt in SUBSET_DDL:
                await cur.execute(stmt)
        await conn.commit()
        yield Database("mysql", f"mysql://root@127.0.0.1:3306/{name}", None)
    finally:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def subset(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return build_sqlite_subset(tmp_path)
    db: Database = request.getfixturevalue(f"{request.param}_subset")
    return db


@pytest.fixture
def sqlite_subset(tmp_path: Path) -> Database:
    return build_sqlite_subset(tmp_path)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def write(path: Path, source: str) -> str:
    text = textwrap.dedent(source).lstrip("\n")
    path.write_text(text)
    return text


def line_of(text: str, marker: str) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


#: Facts of a column only reflection knows: what the database writes by itself.
_WRITTEN = {"has_default": False, "is_identity": False, "is_generated": False}


def comparable(schema: Schema) -> list[Entity]:
    """Entities without source locations and descriptions, relations in name order."""
    return sorted(
        (
            e.model_copy(
                update={
                    "location": None,
                    "description": None,
                    "fields": tuple(
                        f.model_copy(update={"location": None, "db_type": None, **_WRITTEN})
                        for f in e.fields
                    ),
                    "relations": tuple(
                        r.model_copy(update={"location": None})
                        for r in sorted(e.relations, key=lambda r: r.name)
                    ),
                }
            )
            for e in schema.entities
        ),
        key=lambda e: e.name,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def run_quiver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(
        [QUIVER, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


# --------------------------------------------------------------------------------------------
# Authoring and reflection agree
# --------------------------------------------------------------------------------------------


async def test_authored_chinook_subset_is_the_schema_reflection_gives(
    subset: Database, in_tmp: Path
) -> None:
    write(in_tmp / "app.py", SUBSET_APP.format(db_schema=subset.db_schema))
    compiled = await compile_app("app.py", check_db=subset.url)
    assert compiled.lines() == []
    assert compiled.schema is not None
    schemas = [subset.db_schema] if subset.db_schema else None
    reflected = await reflect_database(subset.url, schemas=schemas)
    assert comparable(compiled.schema) == comparable(reflected)


# --------------------------------------------------------------------------------------------
# --check-db
# --------------------------------------------------------------------------------------------

CHECKED_APP = """
from __future__ import annotations
import quiver

DB_SCHEMA = {db_schema!r}

@quiver.type(source="artist", key="artist_id", db_schema=DB_SCHEMA)
class Artist:
    artist_id: int
    name: str  # nullable in the database

@quiver.type(source="albun", key="album_id", db_schema=DB_SCHEMA)  # missing source
class Album:
    album_id: int

@quiver.type(source="track", key="track_id", db_schema=DB_SCHEMA)
class Track:
    track_id: int
    titel: str  # missing column
    milliseconds: str  # type mismatch
    bytes: int | None  # narrower than the column
    artist: Artist = quiver.relation(fk="composer_id")  # missing fk column
"""


async def test_check_db_reports_missing_sources_columns_and_type_mismatches(
    subset: Database, in_tmp: Path
) -> None:
    text = write(in_tmp / "app.py", CHECKED_APP.format(db_schema=subset.db_schema))
    result = await compile_app("app.py", check_db=subset.url)
    assert result.schema is None
    at = {
        m: line_of(text, m)
        for m in (
            "# nullable",
            "# missing source",
            "# missing column",
            "# type mismatch",
            "# narrower",
            "# missing fk",
        )
    }
    source = at["# missing source"] + 1
    albun = f"{subset.db_schema}.albun" if subset.db_schema else "albun"
    assert result.lines() == [
        f"app.py:{at['# nullable']}: warning: Artist.name: declared non-null but column "
        "artist.name allows NULL (annotate it '... | None', or a NULL row fails the whole "
        "response)",
        f"app.py:{source}: error: Album: source '{albun}' does not exist in the database; did you "
        "mean 'album'? (fix source= (a table or view) or create it)",
        f"app.py:{at['# missing column']}: error: Track.titel: column 'titel' does not exist in "
        "'track' (fix column= or the attribute name)",
        f"app.py:{at['# type mismatch']}: warning: Track.milliseconds: declared String but "
        "column track.milliseconds is Int (declare it as the database type (Int) unless the "
        "conversion is intended)",
        f"app.py:{at['# narrower']}: warning: Track.bytes: declared Int but column track.bytes "
        "is BigInt (declare it as the database type (BigInt) unless the conversion is intended)",
        f"app.py:{at['# missing fk']}: error: Track.artist: column 'composer_id' does not exist "
        "in 'track' (fix fk= / references=)",
    ]


# --------------------------------------------------------------------------------------------
# --extend-db
# --------------------------------------------------------------------------------------------

EXTENDING_APP = """
from __future__ import annotations
from decimal import Decimal
import quiver

@quiver.type(source="album", key="album_id")
class Record:
    '''An album, as the shop calls it.'''
    title: str = quiver.field(name="headline")
    artist_id: int = quiver.field(hidden=True)
    performer: Artist = quiver.relation(fk="artist_id")
    artist: Artist = quiver.relation(hidden=True)

@quiver.type(source="track", key="track_id")
class Song:
    unit_price: Decimal = quiver.field(name="price")
    bytes: quiver.BigInt | None = quiver.field(hidden=True)

@quiver.query
def record(album_id: int) -> Record | None: ...
"""


async def test_extend_db_lays_authored_types_over_the_reflected_ones(
    sqlite_subset: Database, in_tmp: Path
) -> None:
    write(in_tmp / "app.py", EXTENDING_APP)
    result = await compile_app("app.py", extend_db=sqlite_subset.url)
    assert result.lines() == []
    schema = result.schema
    assert schema is not None
    assert sorted(e.name for e in schema.entities) == ["Artist", "Genre", "Record", "Song"]
    record = schema.entity("Record")
    assert record is not None
    assert [f.name for f in record.fields] == ["albumId", "headline"]
    # Reflected relation names stay; only their targets follow the renamed types.
    assert sorted(r.name for r in record.relations) == ["performer", "tracks"]
    tracks = record.relation("tracks")
    assert tracks is not None and tracks.target == "Song"
    assert record.description == "An album, as the shop calls it."
    assert (record.root_fields, record.by_key_field) == (("by_key",), "record")
    artist = schema.entity("Artist")
    assert artist is not None and artist.root_fields is None
    albums = artist.relation("albums")
    assert albums is not None and albums.target == "Record"
    song = schema.entity("Song")
    assert song is not None and song.field("price") is not None and song.field("bytes") is None

    settings = QuiverSettings.model_validate({"database": {"url": sqlite_subset.url}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        prepared = engine.prepare(
            "{ record(albumId: 1) { headline performer { name } tracks { name price } } }", None
        )
        outcome = await engine.execute(prepared, None)
    finally:
        await engine.close()
    assert orjson.loads(outcome.body) == {
        "data": {
            "record": {
                "headline": "Let There Be Rock",
                "performer": {"name": "AC/DC"},
                "tracks": [
                    {"name": "Go Down", "price": "0.99"},
                    {"name": "Dog Eat Dog", "price": "0.99"},
                ],
            }
        }
    }


# --------------------------------------------------------------------------------------------
# The CLI, end to end
# --------------------------------------------------------------------------------------------


def test_cli_compile_writes_the_schema_and_nothing_else(tmp_path: Path) -> None:
    write(tmp_path / "app.py", SUBSET_APP.format(db_schema=None))
    out = run_quiver("compile", "app.py", "-o", "build/schema.json", cwd=tmp_path)
    assert out.returncode == 1  # the directory does not exist
    assert out.stderr.startswith("error: cannot write build/schema.json: ")
    (tmp_path / "build").mkdir()
    out = run_quiver("compile", "app.py", "-o", "build/schema.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "wrote build/schema.json (4 types)"
    assert os.listdir(tmp_path / "build") == ["schema.json"]
    assert (tmp_path / "build" / "schema.json").stat().st_mode & 0o777 == 0o666 & ~_umask()
    schema = Schema.from_json((tmp_path / "build" / "schema.json").read_bytes())
    assert sorted(e.name for e in schema.entities) == ["Album", "Artist", "Genre", "Track"]

    stdout = run_quiver("compile", "app.py", "-o", "-", cwd=tmp_path)
    assert stdout.returncode == 0
    assert Schema.from_json(stdout.stdout) == schema


def test_cli_compile_prints_every_error_and_keeps_the_previous_schema(tmp_path: Path) -> None:
    previous = '{"version": 1, "entities": []}\n'
    (tmp_path / "schema.json").write_text(previous)
    text = write(
        tmp_path / "app.py",
        """
        import quiver

        @quiver.type(source="a")
        class A:
            id: int
            tags: set[str]  # first
            b: "Brid" = quiver.relation(fk="b_id")  # second

        @quiver.type(source="b")
        class Bird:
            id: int
        """,
    )
    out = run_quiver("compile", "app.py", cwd=tmp_path)
    assert out.returncode == 1
    first, second = line_of(text, "# first"), line_of(text, "# second")
    assert out.stderr.splitlines() == [
        f"app.py:{first}: error: A.tags: unsupported annotation set[str] (use int, float, str, "
        "bool, Decimal, datetime, date, time, uuid.UUID, bytes, quiver.BigInt, quiver.ID, "
        "quiver.JSON, a @quiver.type class or list[...] of one, each optionally '| None')",
        f"app.py:{second}: error: A.b: unknown relation target 'Brid'; did you mean 'Bird'? "
        "(annotate it with a @quiver.type class, or with a reflected type's name and compile with "
        "--extend-db)",
        "2 errors; nothing written",
    ]
    assert "Traceback" not in out.stderr
    assert (tmp_path / "schema.json").read_text() == previous
    assert sorted(os.listdir(tmp_path)) == ["app.py", "schema.json"]


def test_cli_debug_shows_the_traceback_of_a_failing_import(tmp_path: Path) -> None:
    write(tmp_path / "helper.py", "def load():\n    return {}['missing']\n")
    write(tmp_path / "app.py", "import helper\n\nCONFIG = helper.load()\n")
    plain = run_quiver("compile", "app.py", cwd=tmp_path)
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == [
        "helper.py:2: error: importing the app failed: KeyError: 'missing' (fix the error (run "
        "with --debug for the traceback))",
        "1 error; nothing written",
    ]
    debug = run_quiver("compile", "app.py", "--debug", cwd=tmp_path)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert 'app.py", line 3' in debug.stderr and 'helper.py", line 2' in debug.stderr
    assert debug.stderr.splitlines()[-2:] == plain.stderr.splitlines()


def test_cli_reports_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    write(tmp_path / "app.py", SUBSET_APP.format(db_schema=None))
    out = run_quiver(
        "compile", "app.py", "--check-db", "postgresql://postgres@127.0.0.1:1/nope", cwd=tmp_path
    )
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("error: ")
    assert "127.0.0.1:1" in out.stderr
    assert not (tmp_path / "schema.json").exists()


# --------------------------------------------------------------------------------------------
# The example app
# --------------------------------------------------------------------------------------------


async def test_example_app_compiles_against_its_database_and_serves(tmp_path: Path) -> None:
    db = tmp_path / "chinook.db"
    conn = sqlite3.connect(db)
    conn.executescript((EXAMPLE / "chinook_subset.sql").read_text())
    conn.close()
    url = f"sqlite:///{db}"
    out = run_quiver(
        "compile", "app.py", "-o", str(tmp_path / "schema.json"), "--check-db", url, cwd=EXAMPLE
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == f"wrote {tmp_path / 'schema.json'} (4 types)"
    schema = Schema.from_json((tmp_path / "schema.json").read_bytes())
    track = schema.entity("Track")
    assert track is not None
    assert track.root_fields == ("list", "connection", "aggregate", "by_key")
    assert schema.entity("Album") is not None and schema.entity("Album").root_fields == ()  # type: ignore[union-attr]

    settings = QuiverSettings.model_validate({"database": {"url": url}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        query = """{
          artist(id: 1) { name albums { title tracks { name durationMs } } }
          tracks(limit: 2) { id genre { name } album { artist { name } } }
        }"""
        outcome = await engine.execute(engine.prepare(query, None), None)
        hidden = await engine.execute(engine.prepare("{ albums { id } }", None), None)
    finally:
        await engine.close()
    assert orjson.loads(outcome.body) == {
        "data": {
            "artist": {
                "name": "AC/DC",
                "albums": [
                    {
                        "title": "For Those About To Rock We Salute You",
                        "tracks": [
                            {
                                "name": "For Those About To Rock (We Salute You)",
                                "durationMs": 343719,
                            }
                        ],
                    },
                    {
                        "title": "Let There Be Rock",
                        "tracks": [
                            {"name": "Go Down", "durationMs": 331180},
                            {"name": "Dog Eat Dog", "durationMs": 215196},
                        ],
                    },
                ],
            },
            "tracks": [
                {"id": 1, "genre": {"name": "Rock"}, "album": {"artist": {"name": "AC/DC"}}},
                {"id": 2, "genre": {"name": "Rock"}, "album": {"artist": {"name": "Accept"}}},
            ],
        }
    }
    assert hidden.kind == "request_error"
    assert b"albums" in hidden.body
