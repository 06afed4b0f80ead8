"""A subset of Chinook as tables and as the authored app that declares the same API.

Shared by the tests of ``quiver compile`` (tests/schema) and ``quiver schema print``
(tests/graphql).
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUBSET_APP", "SUBSET_DDL", "Database", "build_sqlite_subset"]

SUBSET_DDL = [
    "CREATE TABLE artist (artist_id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(120))",
    "CREATE TABLE genre (genre_id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(120))",
    """CREATE TABLE album (
        album_id INTEGER NOT NULL PRIMARY KEY,
        title VARCHAR(160) NOT NULL,
        artist_id INTEGER NOT NULL REFERENCES artist (artist_id))""",
    """CREATE TABLE track (
        track_id INTEGER NOT NULL PRIMARY KEY,
        name VARCHAR(200) NOT NULL,
        album_id INTEGER REFERENCES album (album_id),
        genre_id INTEGER REFERENCES genre (genre_id),
        milliseconds INTEGER NOT NULL,
        bytes BIGINT,
        unit_price NUMERIC(10, 2) NOT NULL,
        added_at TIMESTAMP)""",
    "INSERT INTO artist VALUES (1, 'AC/DC'), (2, 'Accept')",
    "INSERT INTO genre VALUES (1, 'Rock')",
    "INSERT INTO album VALUES (1, 'Let There Be Rock', 1), (2, 'Balls to the Wall', 2)",
    """INSERT INTO track VALUES
        (1, 'Go Down', 1, 1, 331180, 10847611, 0.99, NULL),
        (2, 'Dog Eat Dog', 1, 1, 215196, 7032162, 0.99, NULL),
        (3, 'Balls to the Wall', 2, 1, 342562, 5510424, 0.99, NULL)""",
]

# The same tables, authored: what reflection must reproduce field for field.
SUBSET_APP = """
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import quiver

DB_SCHEMA = {db_schema!r}


@quiver.type(source="artist", key="artist_id", db_schema=DB_SCHEMA)
class Artist:
    artist_id: int
    name: str | None
    albums: list[Album] = quiver.relation(fk="artist_id")


@quiver.type(source="genre", key="genre_id", db_schema=DB_SCHEMA)
class Genre:
    genre_id: int
    name: str | None
    tracks: list[Track] = quiver.relation(fk="genre_id")


@quiver.type(source="album", key="album_id", db_schema=DB_SCHEMA)
class Album:
    album_id: int
    title: str
    artist_id: int
    artist: Artist = quiver.relation(fk="artist_id")
    tracks: list[Track] = quiver.relation(fk="album_id")


@quiver.type(source="track", key="track_id", db_schema=DB_SCHEMA)
class Track:
    track_id: int
    name: str
    album_id: int | None
    genre_id: int | None
    milliseconds: int
    bytes: quiver.BigInt | None
    unit_price: Decimal
    added_at: datetime | None
    album: Album | None = quiver.relation(fk="album_id")
    genre: Genre | None = quiver.relation(fk="genre_id")
"""


@dataclass
class Database:
    dialect: str
    url: str
    db_schema: str | None


def build_sqlite_subset(tmp_path: Path) -> Database:
    """The subset as a new SQLite file under ``tmp_path``."""
    path = tmp_path / f"subset_{secrets.token_hex(4)}.db"
    conn = sqlite3.connect(path)
    for stmt in SUBSET_DDL:
        conn.execute(stmt)
    conn.commit()
    conn.close()
    return Database("sqlite", f"sqlite:///{path}", None)
