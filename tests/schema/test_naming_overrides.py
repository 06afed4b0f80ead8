"""The ``names:`` section of quiver.yaml: the user's type, root field and field names."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings, TableNames
from quiver.graphql.engine import GraphQLEngine
from quiver.runtime.errors import ConfigError
from quiver.schema.reflect import reflect_database
from tests.graphql.servers import QUIVER


@pytest.fixture
def movies_db(tmp_path: Path) -> str:
    path = tmp_path / "movies.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE studios (id INTEGER PRIMARY KEY, studio_name TEXT);"
            "CREATE TABLE movies (id INTEGER PRIMARY KEY, movie_title TEXT,"
            " studio_id INTEGER REFERENCES studios(id));"
            "CREATE VIEW movie_titles AS SELECT movie_title FROM movies;"
            "INSERT INTO studios VALUES (1, 'Ealing');"
            "INSERT INTO movies VALUES (1, 'Passport to Pimlico', 1);"
        )
    return f"sqlite:///{path}"


def _names(raw: dict[str, Any]) -> dict[str, TableNames]:
    return {k: TableNames.model_validate(v) for k, v in raw.items()}


async def test_named_types_root_fields_and_fields_are_served(movies_db: str) -> None:
    names = _names(
        {
            "movies": {
                "type": "Film",
                "plural": "films",
                "by_key": "film",
                "fields": {"movie_title": "title"},
            },
            "studios": {"fields": {"studio_name": "name"}},
        }
    )
    schema = await reflect_database(movies_db, names=names)
    film = next(e for e in schema.entities if e.source == "movies")
    assert (film.name, film.list_field, film.by_key_field) == ("Film", "films", "film")
    settings = QuiverSettings.model_validate({"database": {"url": movies_db}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        prepared = engine.prepare(
            "{ films { title studio { name } } film(id: 1) { __typename title }"
            "  filmsConnection { totalCount } filmsAggregate { count } }"
        )
        body = orjson.loads((await engine.execute(prepared, None)).body)
    finally:
        await engine.close()
    assert body == {
        "data": {
            "films": [{"title": "Passport to Pimlico", "studio": {"name": "Ealing"}}],
            "film": {"__typename": "Film", "title": "Passport to Pimlico"},
            "filmsConnection": {"totalCount": 1},
            "filmsAggregate": {"count": 1},
        }
    }


async def test_named_relations_are_served_with_their_aggregates(movies_db: str) -> None:
    names = _names(
        {
            "studios": {"relations": {"movies": "films"}},
            "movies": {"relations": {"studio": "producer"}},
        }
    )
    schema = await reflect_database(movies_db, names=names)
    settings = QuiverSettings.model_validate({"database": {"url": movies_db}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        prepared = engine.prepare(
            "{ studios { films { movieTitle } filmsAggregate { count } }"
            '  movies(where: {producer: {studioName: {eq: "Ealing"}}}) {'
            "    producer { studioName } } }"
        )
        body = orjson.loads((await engine.execute(prepared, None)).body)
    finally:
        await engine.close()
    assert body == {
        "data": {
            "studios": [
                {"films": [{"movieTitle": "Passport to Pimlico"}], "filmsAggregate": {"count": 1}}
            ],
            "movies": [{"producer": {"studioName": "Ealing"}}],
        }
    }


async def test_a_bad_type_name_is_reported_once(movies_db: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await reflect_database(movies_db, names=_names({"movies": {"type": "bad name"}}))
    assert [d.where for d in caught.value.details] == ["names.movies.type"]


@pytest.mark.parametrize(
    ("names", "where", "needle"),
    [
        ({"movis": {"type": "Film"}}, "names.movis", "did you mean 'movies'?"),
        (
            {"movies": {"fields": {"movie_tilte": "title"}}},
            "names.movies.fields.movie_tilte",
            "did you mean 'movie_title'?",
        ),
        ({"movies": {"type": "Studio"}}, "names.movies.type", "also the type of table 'studios'"),
        ({"movies": {"type": "StudioWhere"}}, "names.movies.type", "derives"),
        ({"movies": {"type": "String"}}, "names.movies.type", "already has"),
        ({"movies": {"type": "2Film"}}, "names.movies.type", "not a GraphQL type name"),
        (
            {"movies": {"fields": {"movie_title": "same", "studio_id": "same"}}},
            "names.movies.fields.studio_id",
            "also the name given to column 'movie_title'",
        ),
        (
            {"movies": {"fields": {"movie_title": "or"}}},
            "names.movies.fields.movie_title",
            "reserved",
        ),
        ({"movie_titles": {"by_key": "movieTitle"}}, "names.movie_titles.by_key", "no primary key"),
        ({"movies": {"plural": "studios"}}, "names.movies.plural", "clashes"),
        ({"movies": {"by_key": "studiosConnection"}}, "names.movies.by_key", "clashes"),
        (
            {"studios": {"relations": {"movie": "films"}}},
            "names.studios.relations.movie",
            "Studio has no relation 'movie' (did you mean 'movies'?)",
        ),
        (
            {"movies": {"relations": {"studio": "movieTitle"}}},
            "names.movies.relations.studio",
            "'movieTitle' is also the name of field 'movieTitle' of Movie",
        ),
        (
            {
                "studios": {
                    "fields": {"studio_name": "filmsAggregate"},
                    "relations": {"movies": "films"},
                }
            },
            "names.studios.relations.movies",
            "'filmsAggregate' is also the name of field 'filmsAggregate' of Studio",
        ),
        (
            {"studios": {"relations": {"movies": "not"}}},
            "names.studios.relations.movies",
            "reserved",
        ),
        ({"studios": {"relations": {"movies": "a-b"}}}, "names.studios.relations.movies", "not a"),
    ],
)
async def test_bad_names_are_refused_with_their_location(
    movies_db: str, names: dict[str, Any], where: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        await reflect_database(movies_db, names=_names(names))
    rendered = str(caught.value)
    assert f"{where}: " in rendered and needle in rendered, rendered


def test_quiver_check_reports_names_that_match_no_table(movies_db: str, tmp_path: Path) -> None:
    (tmp_path / "quiver.yaml").write_text(
        f"database:\n  url: {movies_db}\nnames:\n  movies:\n    type: Film\n  studio:\n"
        "    type: Company\n  movies_x:\n    fields: {a: b}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [QUIVER, "check"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=dict(os.environ), check=False,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines == [
        "error: quiver.yaml:7:5 names.studio: no table or view 'studio' is reflected"
        " (did you mean 'studios'?)",
        "error: quiver.yaml:9:5 names.movies_x: no table or view 'movies_x' is reflected"
        " (did you mean 'movies'?)",
    ], done.stderr  # every problem at once, each placed in the file
    printed = subprocess.run(
        [QUIVER, "schema", "print", "--db", movies_db], capture_output=True, text=True,
        timeout=120, cwd=tmp_path, env=dict(os.environ), check=False,
    )  # fmt: skip
    assert printed.returncode == 1
    assert printed.stderr.splitlines() == lines


def test_names_given_by_the_environment_are_not_placed_in_the_file(
    movies_db: str, tmp_path: Path
) -> None:
    (tmp_path / "quiver.yaml").write_text("server:\n  port: 8001\n", encoding="utf-8")
    done = subprocess.run(
        [QUIVER, "check", "--db", movies_db], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, "QUIVER_NAMES": "{studio: {type: Company}}"},
        check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: names.studio: no table or view 'studio'"), done.stderr


def test_quiver_check_serves_the_named_types(movies_db: str, tmp_path: Path) -> None:
    (tmp_path / "quiver.yaml").write_text(
        f"database:\n  url: {movies_db}\nnames:\n  movies:\n    type: Film\n", encoding="utf-8"
    )
    done = subprocess.run(
        [QUIVER, "check"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=dict(os.environ), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Film (movies)" in done.stdout


FILM_APP = """
import quiver

@quiver.type(source="movies", key="id")
class Film:
    movie_title: str | None = quiver.field(name="title")
"""


def _compile(tmp_path: Path, url: str, names_yaml: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(FILM_APP, encoding="utf-8")
    (tmp_path / "quiver.yaml").write_text(f"names:\n{names_yaml}", encoding="utf-8")
    return subprocess.run(
        [QUIVER, "compile", "app.py", "--extend-db", url, "-o", "schema.json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=dict(os.environ),
        check=False,
    )  # fmt: skip


def test_quiver_compile_names_the_reflected_tables_it_extends(
    movies_db: str, tmp_path: Path
) -> None:
    done = _compile(tmp_path, movies_db, "  studios:\n    type: Company\n    plural: companies\n")
    assert done.returncode == 0, done.stderr
    schema = orjson.loads((tmp_path / "schema.json").read_bytes())
    company = next(e for e in schema["entities"] if e["source"] == "studios")
    assert (company["name"], company["list_field"]) == ("Company", "companies")


def test_quiver_compile_refuses_names_of_unknown_tables_and_columns(
    movies_db: str, tmp_path: Path
) -> None:
    done = _compile(tmp_path, movies_db, "  studio:\n    type: Company\n")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done
    assert "names.studio: no table or view 'studio' is reflected" in done.stderr, done.stderr
    assert not (tmp_path / "schema.json").exists()


async def test_quiver_reflect_takes_names_as_plain_mappings(movies_db: str) -> None:
    import quiver

    schema = await quiver.reflect(movies_db, names={"movies": {"type": "Film"}})
    assert "Film" in {e.name for e in schema.entities}
    with pytest.raises(ConfigError, match=r"names\.movies\.fields\.nope"):
        await quiver.reflect(movies_db, names={"movies": {"fields": {"nope": "x"}}})
