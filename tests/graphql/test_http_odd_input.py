"""Odd and hostile requests to the GraphQL HTTP surface: each is answered with a GraphQL error
that says what is wrong (a 400 for a malformed request), never a 500, and the server goes on
answering."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.graphql.apq import MAX_STORED_CHARS, ApqStore
from quiver.graphql.http import GraphQLApp
from tests.graphql.test_http import GQL, open_app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(chinook_sqlite: Path) -> AsyncIterator[GraphQLApp]:
    app = await open_app(f"sqlite:///{chinook_sqlite.absolute()}")
    try:
        yield app
    finally:
        await app.shutdown()


async def post_bytes(client: httpx.AsyncClient, body: bytes, accept: str = GQL) -> httpx.Response:
    headers = {"content-type": "application/json", "accept": accept}
    return await client.post("/graphql", content=body, headers=headers)


def bad_request(r: httpx.Response, *phrases: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    error: dict[str, Any] = r.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST", error
    for phrase in phrases:
        assert phrase in error["message"], error["message"]
    return error


async def still_answers(client: httpx.AsyncClient) -> None:
    r = await client.post("/graphql", json={"query": "{ __typename }"})
    assert r.json() == {"data": {"__typename": "Query"}}


Receive = Callable[[], Awaitable[dict[str, Any]]]


async def call(
    app: GraphQLApp,
    method: str,
    headers: list[tuple[bytes, bytes]],
    receive: Receive,
    query_string: bytes = b"",
) -> list[dict[str, Any]]:
    """The messages ``app`` sends answering one request on ``/graphql``, as the HTTP server
    passes it: the headers and query string as they came, the body as ``receive`` gives it."""
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": method,
        "path": "/graphql",
        "root_path": "",
        "query_string": query_string,
        "headers": headers,
    }
    await app(scope, receive, send)
    return sent


def whole_body(body: bytes) -> Receive:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def answered_as(client: httpx.AsyncClient, accept: str) -> str:
    """The content type of the answer to a query sent with ``accept``."""
    r = await client.post("/graphql", json={"query": "{ __typename }"}, headers={"accept": accept})
    assert r.status_code == 200, r.text
    return r.headers["content-type"]


# A run of 16 digits sends the body to the exact reader; each case is tried with and without.
EXACT = b', "extensions": {"n": 12345678901234567890}'


@pytest.mark.parametrize("exact", [b"", EXACT], ids=["plain", "exact-numbers"])
@pytest.mark.parametrize(
    ("body", "phrases"),
    [
        (b'{"query": "{ __typename } # \xff"%s}', ("not UTF-8", "0xff", "line 1 column 29")),
        (b'{"query": "{ __typename } # \xed\xa0\x80"%s}', ("not UTF-8", "0xed")),
        (b'\xef\xbb\xbf{"query": "{ __typename }"%s}', ("byte order mark",)),
        (b'\xff\xfe{\x00"\x00q\x00"\x00:\x00 \x00"\x00{\x00}\x00"\x00%s}\x00', ("not UTF-8",)),
        (b'{"query": "{ __typename }", "variables": {"x": NaN}%s}', ("NaN", "not a JSON")),
        (b'{"query": "{ __typename }", "variables": {"x": Infinity}%s}', ("Infinity",)),
        (b'{"query": "{ __typename }", "variables": {"x": [-Infinity]}%s}', ("-Infinity",)),
        (b"NaN", ("NaN",)),
        (
            b'{"query": "{ __typename }", "operationName": "\\ud800"%s}',
            ("operationName", "\\ud800", "surrogate"),
        ),
        (
            b'{"query": "{ __typename }", "variables": {"a": [1, {"\\udc00": 2}]}%s}',
            ('variables.a[1]["\\udc00"]', "surrogate"),
        ),
        (
            b'{"query": "{ __typename }", "variables": {"s": "x\\uDBFFy"}%s}',
            ("variables.s", "\\udbff", "surrogate"),
        ),
    ],
    ids=[
        "invalid-utf8",
        "utf8-encoded-surrogate",
        "byte-order-mark",
        "utf16",
        "nan",
        "infinity",
        "minus-infinity",
        "nan-alone",
        "lone-surrogate-operation-name",
        "lone-surrogate-key",
        "lone-surrogate-value",
    ],
)
async def test_a_body_that_is_not_json_text_is_400_saying_why(
    client: httpx.AsyncClient, body: bytes, phrases: tuple[str, ...], exact: bytes
) -> None:
    body = body.replace(b"%s", exact)
    error = bad_request(await post_bytes(client, body), "not valid JSON", *phrases)
    assert "Internal" not in error["message"]
    await still_answers(client)


async def test_a_lone_surrogate_with_a_persisted_query_hash_is_400(
    client: httpx.AsyncClient,
) -> None:
    body = (
        b'{"query": "{ __typename } # \\ud800", "extensions": {"persistedQuery": '
        b'{"version": 1, "sha256Hash": "' + b"a" * 64 + b'"}}}'
    )
    bad_request(await post_bytes(client, body), "query", "surrogate")
    await still_answers(client)


async def test_surrogate_pairs_and_exact_numbers_still_read(client: httpx.AsyncClient) -> None:
    body = (
        b'{"query": "{ __typename }", "variables": {"s": "\\ud83d\\ude00"}, '
        b'"operationName": null, "extensions": {"n": 12345678901234567890}}'
    )
    r = await post_bytes(client, body)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    ("variables", "phrase"),
    [("%7B%22x%22%3ANaN%7D", "NaN"), ("%7B%22x%22%3A%22%5Cud800%22%7D", "surrogate")],
    ids=["nan", "lone-surrogate"],
)
async def test_get_variables_that_are_not_json_text_are_400(
    client: httpx.AsyncClient, variables: str, phrase: str
) -> None:
    r = await client.get(
        f"/graphql?query=%7B__typename%7D&variables={variables}", headers={"accept": GQL}
    )
    bad_request(r, "variables", phrase)


@pytest.mark.parametrize(
    ("query_string", "phrases"),
    [
        (
            "query=%7Bartists(where:%7Bname:%7Beq:%22Ant%F4nio%22%7D%7D)%7Bname%7D%7D",
            ("'query'", "0xf4", "byte 30 of its value"),
        ),
        ("query=%7B__typename%7D%23%ED%A0%80", ("'query'", "0xed")),
        ("query=%7B__typename%7D&variables=%7B%22s%22:%22%FF%22%7D", ("'variables'", "0xff")),
        ("query=%7B__typename%7D&%FF=1", ("'\\xff'", "byte 1 of its name")),
    ],
    ids=["latin1-letter", "encoded-surrogate", "variables", "name"],
)
async def test_a_query_string_that_is_not_utf8_is_400_naming_the_parameter(
    client: httpx.AsyncClient, query_string: str, phrases: tuple[str, ...]
) -> None:
    r = await client.get(f"/graphql?{query_string}", headers={"accept": GQL})
    bad_request(r, "not UTF-8", "%C3%B4", *phrases)


async def test_a_query_string_in_utf8_reads_as_its_characters(
    app: GraphQLApp, client: httpx.AsyncClient
) -> None:
    query = '{artists(where:{name:{eq:"Antônio Carlos Jobim"}}){name}}'
    # Percent-encoded, and as raw UTF-8 bytes (which some HTTP servers pass through).
    r = await client.get("/graphql", params={"query": query})
    assert r.json() == {"data": {"artists": [{"name": "Antônio Carlos Jobim"}]}}, r.text
    raw = b"query=" + query.replace(" ", "+").encode()
    sent = await call(app, "GET", [(b"accept", b"application/json")], whole_body(b""), raw)
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"data":{"artists":[{"name":"Ant\xc3\xb4nio Carlos Jobim"}]}}'


@pytest.mark.parametrize("number", ["123456789012345678901234567890", "1e400", "-1.5e-400"])
@pytest.mark.parametrize(
    ("query", "phrase"),
    [
        ("query($v: Int) { artists(limit: $v) { name } }", "Int cannot represent"),
        (
            "query($v: String) { artists(where: {name: {eq: $v}}) { name } }",
            "String cannot represent",
        ),
        ("query($v: Boolean!) { __typename @include(if: $v) }", "Boolean cannot represent"),
    ],
    ids=["Int", "String", "Boolean"],
)
async def test_a_number_past_a_double_is_named_as_written_in_a_variable_error(
    client: httpx.AsyncClient, number: str, query: str, phrase: str
) -> None:
    body = f'{{"query": "{query}", "variables": {{"v": {number}}}}}'
    r = await post_bytes(client, body.encode())
    assert r.status_code == 400, r.text
    error = r.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert phrase in error["message"], error["message"]
    assert f"got invalid value {number};" in error["message"], error["message"]
    assert "instance>" not in error["message"], error["message"]


HEX = "persistedQuery.sha256Hash must be the hex SHA-256 of the query"


@pytest.mark.parametrize(
    ("persisted", "message"),
    [
        ({"version": True, "sha256Hash": "a" * 64}, "Unsupported persisted query version"),
        ({"version": 1.0, "sha256Hash": "a" * 64}, "Unsupported persisted query version"),
        ({"version": "1", "sha256Hash": "a" * 64}, "Unsupported persisted query version"),
        ({"version": 1, "sha256Hash": "z" * 64}, HEX),
        ({"version": 1, "sha256Hash": "a" * 63 + "\n"}, HEX),
        ({"version": 1, "sha256Hash": "a" * 63 + "é"}, HEX),
    ],
    ids=["version-true", "version-float", "version-string", "not-hex", "newline", "letter"],
)
@pytest.mark.parametrize("with_query", [False, True], ids=["hash-only", "with-query"])
async def test_a_persisted_query_extension_of_the_wrong_form_is_400(
    client: httpx.AsyncClient, persisted: dict[str, Any], message: str, with_query: bool
) -> None:
    body: dict[str, Any] = {"extensions": {"persistedQuery": persisted}}
    if with_query:
        body["query"] = "{ __typename }"
    r = await client.post("/graphql", json=body, headers={"accept": GQL})
    assert r.status_code == 400, r.text
    assert r.json() == {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]}


@pytest.mark.parametrize(
    ("query", "operation", "variables", "quoted"),
    [
        ("{ __typename }", "\ud800", None, "Unknown operation named '\\ud800'"),
        (
            "query($w: ArtistWhere) { artists(where: $w) { name } }",
            None,
            {"w": {"\udc00x": 1}},
            "Field '\\udc00x' is not defined by type 'ArtistWhere'",
        ),
    ],
    ids=["operation-name", "input-field-name"],
)
async def test_an_error_quoting_half_a_surrogate_pair_from_python_is_a_request_error(
    app: GraphQLApp,
    query: str,
    operation: str | None,
    variables: dict[str, Any] | None,
    quoted: str,
) -> None:
    """The engine's Python API takes any str; an error that quotes one still serializes."""
    assert app.engine is not None
    outcome = await app.engine.execute(app.engine.prepare(query, operation), variables)
    assert outcome.kind == "request_error", outcome.body
    error = orjson.loads(outcome.body)["errors"][0]
    assert quoted in error["message"], error


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
        b"[" * 3000 + b"]" * 3000,
    ],
    ids=["variables", "body"],
)
async def test_a_body_nested_too_deeply_is_400_without_a_position_it_does_not_know(
    client: httpx.AsyncClient, body: bytes
) -> None:
    error = bad_request(await post_bytes(client, body), "nested too deeply", "fewer levels")
    assert "line 1 column 1" not in error["message"], error["message"]


def same_name_fields(count: int) -> str:
    """``count`` root fields of one name with different arguments: each pair is compared."""
    return "{ " + " ".join(f"artists(limit: {i}) {{ name }}" for i in range(count)) + " }"


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
async def test_a_document_whose_merge_check_is_too_long_is_refused_quickly(
    client: httpx.AsyncClient, batched: bool
) -> None:
    # 300 fields of one response name: 44,850 pairs, past the merge check's budget. With
    # graphql-core's own budget, the largest such document under the token limit held the
    # event loop for over a second (a batch of ten, over ten seconds).
    query = same_name_fields(300)
    body: Any = [{"query": query + " " * i} for i in range(3)] if batched else {"query": query}
    r = await client.post("/graphql", json=body, headers={"accept": GQL})
    results = r.json() if batched else [r.json()]
    for result in results:
        messages = [e["message"] for e in result["errors"]]
        assert any("too complex to validate" in m for m in messages), messages


async def test_fields_of_one_name_from_many_fragments_still_merge(
    client: httpx.AsyncClient,
) -> None:
    fragments = " ".join(
        f"fragment F{i} on Artist {{ artistId name albums {{ albumId title }} }}" for i in range(40)
    )
    spreads = " ".join(f"...F{i}" for i in range(40))
    query = f"{{ artists(limit: 2, orderBy: {{artistId: ASC}}) {{ {spreads} }} }} {fragments}"
    r = await client.post("/graphql", json={"query": query}, headers={"accept": GQL})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["artists"][0]["name"] == "AC/DC"


async def test_requests_of_made_up_methods_count_as_other_in_the_metrics(
    client: httpx.AsyncClient,
) -> None:
    for i in range(20):
        r = await client.request(f"MADEUP{i}", "/graphql")
        assert r.status_code == 405, r.text
    text = (await client.get("/metrics")).text
    assert "MADEUP" not in text
    series = [
        line
        for line in text.splitlines()
        if line.startswith("quiver_graphql_requests_total{") and 'result="http_error"' in line
    ]
    assert any('method="OTHER"' in line and float(line.split()[-1]) >= 20 for line in series)


@pytest_asyncio.fixture(loop_scope="session")
async def small_cache_client(chinook_sqlite: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = await open_app(f"sqlite:///{chinook_sqlite.absolute()}", document_cache_mb=4)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quiver") as c:
            yield c
    finally:
        await app.shutdown()


async def retained_bytes(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> int:
    """The memory still held once ``bodies`` were answered (each must be answered data)."""
    await client.post("/graphql", json={"query": "{ __typename }"})
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for body in bodies:
            r = await client.post("/graphql", json=body)
            assert "data" in r.json(), r.text[:300]
            del r
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


async def test_distinct_large_documents_hold_no_more_than_the_document_cache(
    small_cache_client: httpx.AsyncClient,
) -> None:
    # Each document of 14,000 tokens held about 5 MB once prepared; a thousand were kept.
    values = ", ".join(["1"] * 7000)
    bodies = [
        {"query": f"{{ artists(where: {{artistId: {{in: [{values}]}}}}) {{ name }} }} # {i}"}
        for i in range(12)
    ]
    held = await retained_bytes(small_cache_client, bodies)
    assert held < 10 * 2**20, f"{held / 2**20:.0f} MiB held"


async def test_plans_of_long_list_variables_hold_no_more_than_the_document_cache(
    small_cache_client: httpx.AsyncClient,
) -> None:
    # Each list length is a plan of its own: 64 of them were kept for each document.
    query = "query($l: [Int!]) { artists(where: {artistId: {in: $l}}) { name } }"
    bodies = [{"query": query, "variables": {"l": list(range(8000 + i))}} for i in range(16)]
    held = await retained_bytes(small_cache_client, bodies)
    assert held < 10 * 2**20, f"{held / 2**20:.0f} MiB held"


def test_the_persisted_query_store_keeps_at_most_its_characters() -> None:
    store = ApqStore(max_entries=100, max_chars=1_000)
    for name in "abcde":
        store.put(name, name * 300)
    assert len(store) == 3
    assert store.get("a") is None and store.get("b") is None
    assert store.get("e") == "e" * 300
    store.put("e", "short")  # storing a hash again counts its new text only
    for name in "fg":
        store.put(name, name * 300)
    assert [h for h, _ in store.items()] == ["d", "e", "f", "g"]


async def test_persisted_queries_padded_to_a_megabyte_hold_a_bounded_store(
    app: GraphQLApp, client: httpx.AsyncClient
) -> None:
    # A valid query may carry a request's worth of comment; 10,000 were kept.
    padding = "#" + "x" * 900_000 + "\n"
    for i in range(80):
        query = f"{padding}{{ __typename }} # {i}"
        digest = hashlib.sha256(query.encode()).hexdigest()
        persisted = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
        r = await client.post("/graphql", json={"query": query, "extensions": persisted})
        assert r.json() == {"data": {"__typename": "Query"}}
    assert app.apq is not None
    assert sum(len(q) for _, q in app.apq.items()) <= MAX_STORED_CHARS
    assert len(app.apq) < 80


async def test_long_accept_headers_are_not_kept(chinook_sqlite: Path) -> None:
    # Each distinct Accept value was kept, up to 256 of them, however long.
    app = await open_app(f"sqlite:///{chinook_sqlite.absolute()}")
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quiver") as client:
            long_accept = "application/json;q=0.5, " * 8_000  # 200 kB
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for i in range(60):
                    r = await client.post(
                        "/graphql",
                        json={"query": "{ __typename }"},
                        headers={"accept": f"{long_accept}application/json;q=0.{i % 9 + 1}{i}"},
                    )
                    assert r.json() == {"data": {"__typename": "Query"}}
                    del r
                gc.collect()
                held = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
    finally:
        await app.shutdown()
    assert held < 3 * 2**20, f"{held / 2**20:.0f} MiB held"


async def test_many_accept_lines_are_read_in_time_in_proportion_to_their_size(
    app: GraphQLApp,
) -> None:
    # Each Accept line was appended to the ones before it: 30,000 lines of 200 bytes (6 MB,
    # which the HTTP server takes) copied gigabytes on the event loop.
    lines = [(b"accept", b"text/x-%d;q=0.5" % i + b"x" * 200) for i in range(30_000)]
    headers = [(b"content-type", b"application/json"), *lines, (b"accept", b"*/*")]
    started = time.perf_counter()
    sent = await call(app, "POST", headers, whole_body(b'{"query": "{ __typename }"}'))
    elapsed = time.perf_counter() - started
    assert sent[0]["status"] == 200, sent
    assert elapsed < 1.5, f"{elapsed:.1f} s"


@pytest.mark.parametrize("first", [b"", b'{"query": "{ __ty'], ids=["nothing", "a part"])
async def test_a_body_that_does_not_arrive_in_time_is_408_and_closes(
    chinook_sqlite: Path, first: bytes
) -> None:
    app = await open_app(f"sqlite:///{chinook_sqlite.absolute()}", body_timeout_ms=200)
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1 and first:
            return {"type": "http.request", "body": first, "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes
        raise AssertionError("unreachable")

    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    try:
        start, body = await asyncio.wait_for(call(app, "POST", headers, receive), timeout=5)
    finally:
        await app.shutdown()
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    error = orjson.loads(body["body"])["errors"][0]
    assert error["extensions"]["code"] == "REQUEST_TIMEOUT"
    assert "0.2 s" in error["message"] and "graphql.body_timeout_ms" in error["message"]


async def test_a_slow_body_times_out_alone_and_a_request_cancelled_otherwise_stays_cancelled(
    chinook_sqlite: Path,
) -> None:
    """One timer watches every body being read: a body that arrives in pieces within the
    timeout is served beside one that never comes (408), a request cancelled for another
    reason (the server stopping) is answered 503 SHUTTING_DOWN, not 408, and the timer stops
    once no body is being read."""
    app = await open_app(f"sqlite:///{chinook_sqlite.absolute()}", body_timeout_ms=300)
    document = b'{"query": "{ __typename }"}'

    def pieces(parts: list[bytes], pause: float, rest: bool = False) -> Any:
        """``parts`` of a body, ``pause`` apart; with ``rest``, more is announced and never
        comes."""
        queue = list(parts)

        async def receive() -> dict[str, Any]:
            if not queue:
                await asyncio.sleep(3600)
            await asyncio.sleep(pause)
            part = queue.pop(0)
            return {"type": "http.request", "body": part, "more_body": rest or bool(queue)}

        return receive

    headers = [(b"content-type", b"application/json")]
    halves = [document[:10], document[10:20], document[20:]]
    try:
        served, never = await asyncio.gather(
            call(app, "POST", headers, pieces(halves, 0.05)),
            call(app, "POST", headers, pieces([document[:5]], 0.0, rest=True)),
        )
        assert served[0]["status"] == 200, served
        assert never[0]["status"] == 408, never
        stopped = asyncio.create_task(call(app, "POST", headers, pieces([], 0.0)))
        await asyncio.sleep(0.05)
        stopped.cancel()
        answer = await stopped
        assert answer[0]["status"] == 503, answer
        assert b"SHUTTING_DOWN" in answer[1]["body"]
        await asyncio.sleep(0.5)  # past the timeout: the cancelled request is not counted late
        deadlines = app._body_deadlines
        assert not deadlines.reading and not deadlines.expired
        assert deadlines._timer is None
    finally:
        await app.shutdown()


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (f"application/json, {GQL}", GQL),
        (f"{GQL}, application/json", GQL),
        (f"application/json;q=0.8, {GQL};q=0.8", GQL),
        ("application/json, application/*", "application/json"),
        (f"application/json;q=0.9, {GQL};q=0.8", "application/json"),
    ],
    ids=["json-first", "gql-first", "equal-weights", "json-before-wildcard", "json-weighs-more"],
)
async def test_a_tie_between_the_json_types_goes_to_graphql_response_json_in_any_order(
    client: httpx.AsyncClient, accept: str, media: str
) -> None:
    assert await answered_as(client, accept) == f"{media}; charset=utf-8"


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (f"{GQL};q=nan, application/json;q=0.1", "application/json"),
        (f"application/json;q=0.1, {GQL};q=NaN", "application/json"),
        (f"application/json;q=2, {GQL}", GQL),
        (f"application/json;q=inf, {GQL};q=1", GQL),
        (f"{GQL};q=-1, application/json;q=0.5", "application/json"),
    ],
    ids=["nan-first", "nan-last", "above-one", "infinity", "negative"],
)
async def test_accept_weights_outside_zero_to_one_are_read_within_it(
    client: httpx.AsyncClient, accept: str, media: str
) -> None:
    assert await answered_as(client, accept) == f"{media}; charset=utf-8"
