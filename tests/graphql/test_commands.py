"""The serving commands and ``quiver schema print`` run as a user runs them: the real CLI in a
subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.graphql.servers import QUIVER, free_port, serving
from tests.schema.subset import SUBSET_APP, build_sqlite_subset


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QUIVER, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.absolute()}"


def query(base: str, text: str) -> object:
    r = httpx.post(f"{base}/graphql", json={"query": text}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_help_lists_the_serving_commands() -> None:
    done = run("--help")
    assert done.returncode == 0
    for name in ("demo", "serve", "check"):
        assert name in done.stdout


def test_serve_a_sqlite_database(chinook_sqlite: Path) -> None:
    port = free_port()
    with serving("serve", "--db", sqlite_url(chinook_sqlite), "--port", str(port),
                 port=port) as base:  # fmt: skip
        assert query(base, "{ artist(artistId: 1) { name albums { title } } }") == {
            "data": {
                "artist": {
                    "name": "AC/DC",
                    "albums": [
                        {"title": "For Those About To Rock We Salute You"},
                        {"title": "Let There Be Rock"},
                    ],
                }
            }
        }
        page = httpx.get(f"{base}/graphql", headers={"accept": "text/html"})
        assert "graphiql" in page.text.lower()


def test_serve_postgresql_with_a_config_file_and_two_workers(
    chinook_postgresql: str, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "db_url").write_text(chinook_postgresql + "\n")
    (tmp_path / "quiver.yaml").write_text(
        "database:\n  url: ${file:db_url}\n  pool_max: 2\n"
        f"server:\n  port: {port}\n"
        "graphql:\n  max_depth: 3\n"
    )
    with serving("serve", "--workers", "2", port=port, cwd=tmp_path) as base:
        for _ in range(4):  # spread over both workers
            assert query(base, "{ artistsAggregate { count } }") == {
                "data": {"artistsAggregate": {"count": 275}}
            }
        deep = query(base, "{ artist(artistId: 1) { albums { artist { albums { title } } } } }")
        assert deep["errors"][0]["extensions"]["code"] == "DEPTH_LIMIT_EXCEEDED"  # type: ignore[index]


def test_serve_a_compiled_schema_file(chinook_sqlite: Path, tmp_path: Path) -> None:
    import asyncio

    from quiver.schema.reflect import reflect_database

    url = sqlite_url(chinook_sqlite)
    schema = asyncio.run(reflect_database(url, include=["artist", "album"]))
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(schema.to_json())
    port = free_port()
    with serving("serve", "--db", url, "--schema", str(schema_file), "--port", str(port),
                 port=port) as base:  # fmt: skip
        assert query(base, "{ artistsAggregate { count } }") == {
            "data": {"artistsAggregate": {"count": 275}}
        }
        missing = httpx.post(f"{base}/graphql", json={"query": "{ tracks { name } }"})
        assert "tracks" in missing.json()["errors"][0]["message"]


@pytest.mark.parametrize("given_by", ["--port", "QUIVER_SERVER_PORT"])
def test_demo_serves_the_chinook_database(tmp_path: Path, given_by: str) -> None:
    port, flight_port = free_port(), free_port()
    # The demo builds its database in the cache folder: use a private one.
    env_cache = tmp_path / "cache"
    proc_env = {"XDG_CACHE_HOME": str(env_cache), "QUIVER_FLIGHT_PORT": str(flight_port)}
    args = ["--port", str(port)] if given_by == "--port" else []
    if given_by == "QUIVER_SERVER_PORT":  # as in QUIVER_SERVER_PORT=8001 make demo
        proc_env["QUIVER_SERVER_PORT"] = str(port)
    proc = subprocess.Popen(
        [QUIVER, "demo", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env={**os.environ, **proc_env},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "quiver demo did not start"
            time.sleep(0.3)
        assert query(base, "{ artistsAggregate { count } }") == {
            "data": {"artistsAggregate": {"count": 275}}
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/graphql" in out
    assert f"Arrow Flight at grpc+tcp://127.0.0.1:{flight_port}" in out
    assert "artists(limit: 3" in out


def test_check_summarises_a_reachable_database(chinook_sqlite: Path) -> None:
    done = run("check", "--db", sqlite_url(chinook_sqlite))
    assert done.returncode == 0, done.stderr
    assert "reachable" in done.stdout
    assert "Artist (artist)" in done.stdout
    assert done.stdout.strip().endswith("ok")


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("postgresql://postgres@127.0.0.1:1/nope", "cannot connect to the database"),
        ("oracle://scott@db/x", "unsupported database URL scheme 'oracle'"),
    ],
)
def test_check_with_a_bad_url_exits_non_zero_with_one_clear_line(url: str, phrase: str) -> None:
    done = run("check", "--db", url)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert phrase in lines[0]
    assert "Traceback" not in done.stderr


def test_check_debug_prints_the_traceback() -> None:
    done = run("check", "--db", "oracle://scott@db/x", "--debug")
    assert done.returncode == 1
    assert "Traceback" in done.stderr


def test_check_reports_config_errors_with_their_location(tmp_path: Path) -> None:
    (tmp_path / "quiver.yaml").write_text("server:\n  prot: 80\n")
    done = run("check", cwd=tmp_path)
    assert done.returncode == 1
    assert "quiver.yaml:2:3: server.prot: unknown setting (did you mean 'port'?" in done.stderr


def test_serve_without_a_database_says_how_to_give_one(tmp_path: Path) -> None:
    done = run("serve", cwd=tmp_path)
    assert done.returncode == 1
    assert "no database to serve" in done.stderr
    assert "--db" in done.stderr


def test_set_overrides_reach_the_settings(tmp_path: Path) -> None:
    done = run("check", "--set", "graphql.max_dept=3", cwd=tmp_path)
    assert done.returncode == 1
    assert "command line override: graphql.max_dept: unknown setting" in done.stderr


def test_schema_print_shows_the_sdl_of_a_file_an_app_and_a_database(tmp_path: Path) -> None:
    subset = build_sqlite_subset(tmp_path)
    (tmp_path / "app.py").write_text(SUBSET_APP.format(db_schema=None))
    assert run("compile", "app.py", cwd=tmp_path).returncode == 0
    from_file = run("schema", "print", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    assert "type Album {" in from_file.stdout
    assert "albums(" in from_file.stdout and "albumId: Int!\n  ): Album" in from_file.stdout
    from_app = run("schema", "print", "--app", "app.py", cwd=tmp_path)
    assert from_app.stdout == from_file.stdout
    from_db = run("schema", "print", "--db", subset.url, cwd=tmp_path)
    assert from_db.returncode == 0, from_db.stderr
    # Reflection orders types by name, the app by declaration: the same SDL otherwise.
    assert sorted(from_db.stdout.splitlines()) == sorted(from_file.stdout.splitlines())


def test_schema_print_of_a_database_uses_the_names_quiver_serve_uses(
    chinook_sqlite: Path, tmp_path: Path
) -> None:
    (tmp_path / "quiver.yaml").write_text("names:\n  artist: {type: Band, plural: bands}\n")
    (tmp_path / "other.yaml").write_text("names:\n  artist: {fields: {name: title}}\n")
    here = run("schema", "print", "--db", sqlite_url(chinook_sqlite), cwd=tmp_path)
    assert here.returncode == 0, here.stderr
    assert "type Band {" in here.stdout and "bands(" in here.stdout
    assert "type Artist {" not in here.stdout
    other = run("schema", "print", "--db", sqlite_url(chinook_sqlite), "-c", "other.yaml",
                cwd=tmp_path)  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert "type Artist {\n  artistId: Int!\n  title: String" in other.stdout
    (tmp_path / "bad.yaml").write_text("names:\n  artist: {tpye: Band}\n")
    bad = run("schema", "print", "--db", sqlite_url(chinook_sqlite), "-c", "bad.yaml",
              cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 1
    assert "bad.yaml:2:12: names.artist.tpye: unknown setting (did you mean 'type'?" in bad.stderr


def test_schema_print_rejects_a_broken_schema_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"version": 1, "entities": [{"name": "A"}]}')
    out = run("schema", "print", "--schema", "bad.json", cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0] == (
        "error: bad.json: entities.0.source: Field required (compile it with "
        "'quiver compile app.py -o FILE')"
    )
    assert "bad.json: entities.0.fields: Field required" in lines[1]
    missing = run("schema", "print", "--schema", "nope.json", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "error: nope.json: no such schema file: nope.json (compile it with "
        "'quiver compile app.py -o FILE')"
    )
    both = run("schema", "print", "--schema", "x.json", "--db", "sqlite:///x", cwd=tmp_path)
    assert (both.returncode, both.stderr.strip()) == (1, "error: give only one of --schema, --db")
