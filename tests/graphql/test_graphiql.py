"""GraphiQL works offline: its assets ship in the package (and the wheel), are served with
long-lived cache headers, and a real headless Chromium with every non-local request blocked
renders the page, runs a query typed into the editor and shows the answer."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.graphiql import asset_names
from quiver.graphql.http import GraphQLApp, create_app
from quiver.schema.reflect import reflect_database
from tests.graphql.servers import free_port, serving

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
HTML = "text/html,application/xhtml+xml,*/*;q=0.8"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(chinook_sqlite: Path) -> AsyncIterator[GraphQLApp]:
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
    app = create_app(await reflect_database(url), settings)
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


def page_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


async def test_the_page_loads_nothing_from_outside(client: httpx.AsyncClient) -> None:
    page = (await client.get("/graphql", headers={"accept": HTML})).text
    urls = page_urls(page)
    assert len(urls) == 6
    for url in urls:
        assert url.startswith("./graphql/static/"), url
    assert "http://" not in page and "https://" not in page


async def test_every_asset_of_the_page_is_served_for_good(client: httpx.AsyncClient) -> None:
    page = (await client.get("/graphql", headers={"accept": HTML})).text
    for url in page_urls(page):
        path = url.removeprefix(".")
        r = await client.get(path, headers={"accept-encoding": "identity"})
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        kind = "text/css" if path.endswith(".css") else "text/javascript"
        assert r.headers["content-type"] == f"{kind}; charset=utf-8"
        assert "content-encoding" not in r.headers
        assert len(r.content) > 1000
        raw = await client.get(path, headers={"accept-encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        assert raw.content == r.content  # httpx decoded the gzip body
        assert int(raw.headers["content-length"]) < len(r.content)


async def test_the_licences_are_served_beside_the_assets(client: httpx.AsyncClient) -> None:
    for package in ("react-18.3.1", "react-dom-18.3.1", "graphiql-3.8.3", "graphql-16.9.0"):
        r = await client.get(f"/graphql/static/{package}/LICENSE")
        assert r.status_code == 200
        assert "MIT License" in r.text
        assert "Permission is hereby granted" in r.text


async def test_a_file_not_shipped_is_not_found(client: httpx.AsyncClient) -> None:
    for path in (
        "/graphql/static/react-18.3.1/missing.js",
        "/graphql/static/../http.py",
        "/graphql/static/react-18.3.1/../../graphiql.py",
    ):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_no_assets_are_served_with_graphiql_turned_off(chinook_sqlite: Path) -> None:
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    settings = QuiverSettings.model_validate(
        {"database": {"url": url}, "graphql": {"graphiql": False}}
    )
    app = create_app(await reflect_database(url), settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://q") as c:
        r = await c.get("/graphql/static/react-18.3.1/react.production.min.js")
    assert r.status_code == 404


def test_the_wheel_carries_the_assets_and_their_licences(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("quiver-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in asset_names():
            member = f"quiver/graphql/static/{name}"
            assert member in names, member
            shipped = z.read(member)
            source = (ROOT / "src" / "quiver" / "graphql" / "static" / name).read_bytes()
            assert shipped == source
        licences = [n for n in names if n.startswith("quiver/graphql/static/")]
        for folder in {n.rsplit("/", 1)[0] for n in licences}:
            assert f"{folder}/LICENSE" in names, folder


def test_gzip_bodies_are_the_assets() -> None:
    from quiver.graphql.graphiql import graphiql_asset

    asset = graphiql_asset("graphiql-3.8.3/graphiql.min.js")
    assert asset is not None
    assert gzip.decompress(asset.gzipped) == asset.body


# ----- a real browser -----
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is missing: `make install` installs Debian's chromium package",
)
async def test_graphiql_runs_a_typed_query_in_a_browser_with_the_internet_blocked(
    chinook_sqlite: Path,
) -> None:
    from playwright.async_api import Route, async_playwright

    port = free_port()
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    blocked: list[str] = []

    async def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort()

    with serving("serve", "--db", url, "--port", str(port), port=port) as base:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                context = await browser.new_context()
                await context.route("**/*", only_local)
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"{base}/graphql", wait_until="load")
                editor = page.locator(".graphiql-query-editor .CodeMirror").first
                await editor.wait_for(state="visible", timeout=30_000)
                await editor.click()
                await page.keyboard.press("Control+A")
                await page.keyboard.press("Delete")
                await page.keyboard.type("{ artists(limit: 2, orderBy: {artistId: ASC}) { name ")
                typed = await page.evaluate(
                    "document.querySelector('.graphiql-query-editor .CodeMirror')"
                    ".CodeMirror.getValue()"
                )
                assert "artists(limit: 2" in typed
                await page.keyboard.press("Control+Enter")
                answer = page.locator(".graphiql-response .CodeMirror").first
                await answer.get_by_text("Accept").wait_for(timeout=30_000)
                text = await answer.inner_text()
            finally:
                await browser.close()
    assert '"name": "AC/DC"' in text
    assert '"name": "Accept"' in text
    assert not errors, errors
    assert not blocked, f"the page asked for outside resources: {blocked}"
