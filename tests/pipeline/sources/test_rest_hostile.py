"""The rest source against a server that answers badly: pages nested too deeply to read, the
stdlib's NaN and Infinity, server errors, broken compression, redirect loops, TLS failures and
pages too large to hold (starlette + uvicorn on a free port, as the other REST tests)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quiver.pipeline.component import RunContext
from quiver.pipeline.json_text import MAX_JSON_DEPTH
from quiver.pipeline.sources.rest import RestSource
from quiver.runtime.errors import PermanentError

from ..conftest import build, read_all, serve_app
from ..test_connector_pipelines import run

FAST_RETRY = {"max_attempts": 3, "initial_delay": 0.01, "max_delay": 0.02}
CALLS: dict[str, int] = {}

BODIES: dict[str, bytes] = {
    "deep": b"[" * 100_000 + b"]" * 100_000,
    # the page's object, its list of records and a record: three levels of the limit
    "just-deep-enough": b'{"items": [{"v": '
    + b"[" * (MAX_JSON_DEPTH - 3)
    + b"]" * (MAX_JSON_DEPTH - 3)
    + b"}]}",
    "one-too-deep": b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    # brackets inside strings are text, not nesting
    "bracket-text": b'[{"a": "' + b"[" * 1000 + b'\\"' + b"{" * 1000 + b'"}]',
    "deep-inside-a-record": b'{"items": [{"id": 1, "v": ' + b"[" * 300 + b"]" * 300 + b"}]}",
    "nan": b'[{"a": NaN}]',
    "infinity": b'[{"a": 1},\n {"a": Infinity}]',
    "minus-infinity": b'{"total": -Infinity, "items": [{"a": 1}]}',
    "nan-as-text": b'[{"a": "NaN", "b": "x NaN y"}]',
    "nan-and-twice": b'[{"a": 1, "a": 2}, {"b": NaN}]',
}


async def body(request: Request) -> Response:
    name = request.path_params["name"]
    CALLS[name] = CALLS.get(name, 0) + 1
    return Response(BODIES[name], media_type="application/json")


APP = Starlette(routes=[Route("/body/{name}", body)])


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serve_app(APP) as url:
        yield url


async def failure(options: dict[str, Any], ctx: RunContext) -> PermanentError:
    with pytest.raises(PermanentError) as err:
        await read_all(build(RestSource, {"retry": FAST_RETRY, **options}), ctx)
    return err.value


# -- nesting -----------------------------------------------------------------------------------


async def test_a_page_nested_deeper_than_the_limit_fails_naming_the_url_and_the_limit(
    api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{api}/body/deep"}, run_ctx)
    said = str(err)
    assert "page 1 nests objects and arrays 100000 levels deep" in said, said
    assert f"more than the {MAX_JSON_DEPTH} the source reads" in said, said
    assert f"{api}/body/deep" in said, said
    assert CALLS["deep"] == 1  # not retried: the same page would come back


async def test_a_too_deep_page_ends_a_run_with_the_clear_error(api: str, tmp_path: Path) -> None:
    yaml = """
source: {rest: {url: "${API}/body/deep"}}
sink: {jsonl: {path: out/q.jsonl}}
"""
    with pytest.raises(PermanentError) as err:  # not an unexpected error in the component
        await run(tmp_path, yaml, API=api)
    said = str(err.value)
    assert "100000 levels deep" in said and "RecursionError" not in said, said
    assert "unexpected error" not in said, said


async def test_the_nesting_limit_is_the_jsonl_readers(api: str, run_ctx: RunContext) -> None:
    table = await read_all(
        build(RestSource, {"url": f"{api}/body/just-deep-enough", "records": "items"}), run_ctx
    )
    assert table.num_rows == 1
    err = await failure({"url": f"{api}/body/one-too-deep"}, run_ctx)
    assert f"{MAX_JSON_DEPTH + 1} levels deep" in str(err)


async def test_brackets_inside_strings_are_not_nesting(api: str, run_ctx: RunContext) -> None:
    table = await read_all(build(RestSource, {"url": f"{api}/body/bracket-text"}), run_ctx)
    assert table.column("a").to_pylist() == ["[" * 1000 + '"' + "{" * 1000]


async def test_a_page_with_one_record_nested_too_deeply_fails_whole(
    api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{api}/body/deep-inside-a-record", "records": "items"}, run_ctx)
    assert "page 1 nests objects and arrays 303 levels deep" in str(err)


# -- NaN and infinities ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "token", "at"),
    [
        ("nan", "NaN", "line 1 column 8"),
        ("infinity", "Infinity", "line 2 column 8"),
        ("minus-infinity", "-Infinity", "line 1 column 11"),
        ("nan-and-twice", "NaN", "line 1 column 26"),
    ],
)
async def test_nan_and_infinities_are_not_json_and_fail_the_page_naming_token_and_place(
    api: str, run_ctx: RunContext, name: str, token: str, at: str
) -> None:
    err = await failure({"url": f"{api}/body/{name}", "records": "$"}, run_ctx)
    said = str(err)
    assert f"page 1 is not JSON: {token} at {at} is not a JSON value" in said, said
    assert f"{api}/body/{name}" in said, said
    assert CALLS[name] == 1


async def test_the_string_forms_of_nan_are_still_read(api: str, run_ctx: RunContext) -> None:
    schema = {"a": "float", "b": "str"}
    options = {"url": f"{api}/body/nan-as-text", "schema": schema}
    [row] = (await read_all(build(RestSource, options), run_ctx)).to_pylist()
    assert math.isnan(row["a"]) and row["b"] == "x NaN y"
