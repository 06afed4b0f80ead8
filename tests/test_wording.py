"""Counts in the command line's output agree with their nouns."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from quiver.runtime.wording import plural
from tests.graphql.servers import QUIVER


def test_plural_takes_the_singular_only_for_one() -> None:
    assert [plural(n, "relation") for n in (0, 1, 2)] == [
        "0 relations",
        "1 relation",
        "2 relations",
    ]
    assert plural(3, "entry", "entries") == "3 entries"


def test_check_says_1_relation_and_1_field_and_which_key(tmp_path: Path) -> None:
    path = tmp_path / "small.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE author (id INTEGER PRIMARY KEY);
            CREATE TABLE book (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES author(id));
            CREATE TABLE tag (id INTEGER PRIMARY KEY);
            CREATE TABLE book_tag (book_id INTEGER, tag_id INTEGER, PRIMARY KEY (book_id, tag_id));
            CREATE TABLE note (body TEXT);
            """
        )
    done = subprocess.run(
        [QUIVER, "check", "--db", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "schema: 5 types, 2 relations" in lines
    assert "  Author (author): 1 field, 1 relation, key id" in lines
    assert "  Book (book): 2 fields, 1 relation, key id" in lines
    assert "  Tag (tag): 1 field, 0 relations, key id" in lines
    assert "  BookTag (book_tag): 2 fields, 0 relations, key (book_id, tag_id)" in lines
    assert "  Note (note): 1 field, 0 relations, no primary key" in lines
