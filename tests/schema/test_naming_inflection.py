"""Type and field names from table names: English singulars and plurals from ``inflection``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from quiver.schema.api_names import root_field_names
from quiver.schema.naming import pluralize, singularize
from quiver.schema.reflect import reflect_database


@pytest.mark.parametrize(
    ("plural", "single"),
    [
        ("movies", "movie"),
        ("series", "series"),
        ("statuses", "status"),
        ("news", "news"),
        ("datas", "data"),
        ("invoice_lines", "invoice_line"),
        ("mediaTypes", "mediaType"),
        ("addresses", "address"),
        ("analyses", "analysis"),
        ("people", "person"),
        ("Quizzes", "Quiz"),
    ],
)
def test_singular_of_table_names(plural: str, single: str) -> None:
    assert singularize(plural) == single


@pytest.mark.parametrize(
    ("single", "plural"),
    [
        ("campus", "campuses"),
        ("canvas", "canvases"),
        ("gas", "gases"),
        ("lens", "lenses"),
        ("virus", "viruses"),
        ("cactus", "cacti"),
        ("cookie", "cookies"),
        ("hero", "heroes"),
        ("safe", "safes"),
        ("thief", "thieves"),
        ("sms", "sms"),
        ("leaf", "leaves"),
        ("hoof", "hooves"),
        ("bookshelf", "bookshelves"),
        ("housewife", "housewives"),
        ("life", "lives"),
        ("olive", "olives"),
        ("cave", "caves"),
        ("glove", "gloves"),
        ("reserve", "reserves"),
        ("cache", "caches"),
        ("niche", "niches"),
        ("headache", "headaches"),
        ("tie", "ties"),
        ("birdie", "birdies"),
        ("buzz", "buzzes"),
        ("waltz", "waltzes"),
        ("quiz", "quizzes"),
        ("by", "bys"),
    ],
)
def test_nouns_the_rails_rules_get_wrong_keep_their_english_forms(single: str, plural: str) -> None:
    # Neither form changes when it is already what is asked for: a table may be named either.
    assert (singularize(single), singularize(plural)) == (single, single)
    assert (pluralize(single), pluralize(plural)) == (plural, plural)
    assert singularize("user_" + plural) == "user_" + single
    assert pluralize(single.capitalize()) == plural.capitalize()


@pytest.mark.parametrize(
    ("single", "plural"),
    [
        ("movie", "movies"),
        ("status", "statuses"),
        ("series", "series"),
        ("mediaType", "mediaTypes"),
        ("person", "people"),
        ("box", "boxes"),
        ("category", "categories"),
    ],
)
def test_plural_of_type_names(single: str, plural: str) -> None:
    assert pluralize(single) == plural


async def test_reflected_tables_get_english_type_and_root_field_names(tmp_path: Path) -> None:
    path = tmp_path / "names.sqlite"
    with sqlite3.connect(path) as conn:
        for table in ("movies", "series", "statuses", "news", "datas", "campus", "canvases"):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, title TEXT)")
    schema = await reflect_database(f"sqlite:///{path}")
    by_source = {e.source: e for e in schema.entities}
    assert {t: e.name for t, e in by_source.items()} == {
        "movies": "Movie",
        "series": "Series",
        "statuses": "Status",
        "news": "News",
        "datas": "Data",
        "campus": "Campus",
        "canvases": "Canvas",
    }
    assert "campuses" in root_field_names(by_source["campus"])
    assert root_field_names(by_source["movies"]) == {
        "movies": "list",
        "movie": "by_key",
        "moviesConnection": "connection",
        "moviesAggregate": "aggregate",
    }
    assert root_field_names(by_source["statuses"])["status"] == "by_key"
    # A word whose plural is itself serves its list under the word and its row by key apart.
    series = root_field_names(by_source["series"])
    assert series["series"] == "list" and list(series.values()).count("by_key") == 1
    assert "seriesByKey" in series


@pytest.mark.parametrize("word", ["s", "S", "x_s", "item_S"])
def test_a_last_word_of_only_an_s_has_no_singular_and_stays(word: str) -> None:
    assert singularize(word) == word


async def test_a_table_named_s_is_served(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE s (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE x_s (id INTEGER PRIMARY KEY)")
    schema = await reflect_database(f"sqlite:///{path}")
    by_source = {e.source: e for e in schema.entities}
    assert {t: e.name for t, e in by_source.items()} == {"s": "S", "x_s": "XS"}
    assert root_field_names(by_source["s"]) == {
        "s": "list",
        "sByKey": "by_key",
        "sConnection": "connection",
        "sAggregate": "aggregate",
    }
