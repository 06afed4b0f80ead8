"""The documented Python API: quiver.create_app and quiver.reflect, and the embedding example."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

import quiver
from quiver.runtime.errors import ConfigError
from tests.graphql.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
QUERY = {"query": "{ artists(limit: 2, orderBy: {artistId: ASC}) { name } }"}


def load_example() -> ModuleType:
    path = ROOT / "examples" / "embedding" / "app.py"
    spec = importlib.util.spec_from_file_location("embedding_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://host")


async def test_the_example_mounts_graphql_beside_its_own_routes(chinook_sqlite: Path) -> None:
    app: Starlette = load_example().build_app(f"sqlite:///{chinook_sqlite.absolute()}")
    async with app.router.lifespan_context(app), client_for(app) as client:
        own = (await client.get("/")).json()
        r = await client.post("/api/graphql", json=QUERY)
        page = await client.get("/api/graphql", headers={"accept": "text/html"})
        asset = await client.get("/api/graphql/static/react-18.3.1/react.production.min.js")
        deep = await client.post(
            "/api/graphql", json={"query": "{ a: artists { b: albums { c: tracks { name } } } }"}
        )
    assert "Artist" in own["types"]
    assert r.status_code == 200
    assert r.json() == {"data": {"artists": [{"name": "AC/DC"}, {"name": "Accept"}]}}
    assert page.status_code == 200 and "./graphql/static/" in page.text
    assert asset.status_code == 200
    assert deep.status_code == 200  # within max_depth 8


async def test_create_app_reflects_the_database_when_it_starts(chinook_sqlite: Path) -> None:
    app = quiver.create_app(f"sqlite:///{chinook_sqlite.absolute()}")
    assert app.schema is None
    await app.startup()
    try:
        async with client_for(app) as client:
            r = await client.post("/graphql", json=QUERY)
    finally:
        await app.shutdown()
    assert r.json()["data"]["artists"][0]["name"] == "AC/DC"
    assert app.schema is not None and len(app.schema.entities) == 13


async def test_reflect_returns_the_schema_create_app_serves(chinook_sqlite: Path) -> None:
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    schema = await quiver.reflect(url, include=["artist", "album"])
    assert sorted(e.name for e in schema.entities) == ["Album", "Artist"]
    app = quiver.create_app(url, schema=schema, settings={"graphql": {"path": "/gql"}})
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://q") as c:
            r = await c.post("/gql", json={"query": "{ albums(limit: 1) { title } }"})
            missing = await c.post("/gql", json={"query": "{ tracks { name } }"})
    finally:
        await app.shutdown()
    assert r.json()["data"]["albums"] == [{"title": "For Those About To Rock We Salute You"}]
    assert missing.json()["errors"][0]["message"].startswith("Cannot query field 'tracks'")


async def test_reflect_leaves_out_the_tables_quiver_keeps_for_itself(tmp_path: Path) -> None:
    path = tmp_path / "own.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE artist (id INTEGER PRIMARY KEY, name TEXT)")
        for own in ("quiver_change_log", "quiver_observer_ledger", "quiver_jobs"):
            conn.execute(f"CREATE TABLE {own} (id INTEGER PRIMARY KEY, artist_id INTEGER)")
    schema = await quiver.reflect(f"sqlite:///{path}")
    assert [e.source for e in schema.entities] == ["artist"]


def test_create_app_reads_a_config_file(chinook_sqlite: Path, tmp_path: Path) -> None:
    config = tmp_path / "quiver.yaml"
    config.write_text(f"database:\n  url: sqlite:///{chinook_sqlite.absolute()}\n")
    app = quiver.create_app(config=config)
    assert app.settings.database.url.endswith("chinook.sqlite")


def test_create_app_explains_bad_settings_and_a_missing_database() -> None:
    with pytest.raises(ConfigError) as info:
        quiver.create_app("sqlite:///x.db", settings={"graphql": {"max_dept": 3}})
    assert "graphql.max_dept: unknown setting" in str(info.value)
    assert "max_depth" in str(info.value)
    with pytest.raises(ConfigError, match="no database to serve"):
        quiver.create_app()


def test_the_example_runs_as_a_script(chinook_sqlite: Path) -> None:
    import subprocess

    port = free_port()
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    code = (
        "import runpy, sys, uvicorn\n"
        f"sys.argv = ['app.py', {url!r}]\n"
        "real = uvicorn.run\n"
        f"uvicorn.run = lambda app, **kw: real(app, **{{**kw, 'port': {port}}})\n"
        f"runpy.run_path({str(ROOT / 'examples' / 'embedding' / 'app.py')!r}, "
        "run_name='__main__')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/api/graphql", json=QUERY, timeout=2)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(proc.communicate()[0])
                time.sleep(0.2)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert r.json()["data"]["artists"][0]["name"] == "AC/DC"
    assert "Artist: artistId, name" in out  # quiver.reflect's summary


async def test_reflect_refuses_names_it_cannot_use_with_a_config_error(
    chinook_sqlite: Path,
) -> None:
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    with pytest.raises(ConfigError) as err:
        await quiver.reflect(url, names={"artist": {"type": "Band", "plurl": "bands"}})
    (detail,) = err.value.details
    assert detail.message == "names.artist.plurl: unknown setting"
    assert detail.fix is not None and "did you mean 'plural'?" in detail.fix
    schema = await quiver.reflect(url, include=["artist"], names={"artist": {"type": "Band"}})
    assert [e.name for e in schema.entities] == ["Band"]
