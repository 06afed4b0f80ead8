"""GraphQL subscriptions over WebSocket, checked with the reference client (npm graphql-ws)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.observers.triggers import install_triggers
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.subscription_fixtures import LiveServer, NodeClient, live_server

pytestmark = pytest.mark.asyncio(loop_scope="session")

FR_AUTHORS = """
subscription ($after: String) {
  authorChanged(where: {country: {eq: "FR"}}, after: $after) {
    op id cursor changedFields
    after { name country }
    before { name }
  }
}
"""


@pytest_asyncio.fixture(params=DIALECTS)
async def live(request: pytest.FixtureRequest) -> AsyncIterator[LiveServer]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    async with live_server(dialect, url) as server:
        yield server


async def create_author(live: LiveServer, name: str, country: str) -> int:
    data = await live.data(
        "mutation ($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }",
        {"i": {"name": name, "email": f"{name.lower()}@example.org", "country": country}},
    )
    return int(data["createAuthor"]["id"])


def changes(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p["data"]["authorChanged"] for p in payloads]


async def test_subscription_delivers_the_matching_changes_with_the_selection(
    live: LiveServer, modules: Path
) -> None:
    client = await NodeClient.start(modules, live.url, FR_AUTHORS)
    try:
        await client.connected()
        await live.active(1)
        zola = await create_author(live, "Zola", "FR")
        await create_author(live, "Frame", "NZ")  # filtered out
        await live.data(
            'mutation ($id: Int!) { updateAuthor(id: $id, set: {country: "NZ"}) { id } }',
            {"id": zola},
        )
        got = changes(await client.next_payloads(2))
        assert [c["op"] for c in got] == ["INSERT", "UPDATE"]
        assert got[0]["after"] == {"name": "Zola", "country": "FR"}
        assert got[0]["before"] is None
        # the update moved the row out of the filter: its before image matched
        assert got[1]["after"] == {"name": "Zola", "country": "NZ"}
        assert got[1]["before"] == {"name": "Zola"}
        assert got[1]["changedFields"] == ["country"]
        assert int(got[0]["id"]) < int(got[1]["id"])
        selected = {"op", "id", "cursor", "changedFields", "after", "before"}
        assert all(set(c) == selected for c in got)
        await client.quiet(0.5)
    finally:
        await client.kill()


async def test_reconnecting_with_the_last_cursor_loses_no_committed_change(
    live: LiveServer, modules: Path
) -> None:
    first = await NodeClient.start(modules, live.url, FR_AUTHORS)
    try:
        await first.connected()
        await live.active(1)
        await create_author(live, "Hugo", "FR")
        await create_author(live, "Sand", "FR")
        got = changes(await first.next_payloads(2))
    finally:
        await first.kill()
    await live.active(0)
    # committed while no client listens
    for name in ("Balzac", "Dumas", "Verne"):
        await create_author(live, name, "FR")
    await create_author(live, "Mansfield", "NZ")
    second = await NodeClient.start(modules, live.url, FR_AUTHORS, {"after": got[-1]["cursor"]})
    try:
        await second.connected()
        resumed = changes(await second.next_payloads(3))
        assert [c["after"]["name"] for c in resumed] == ["Balzac", "Dumas", "Verne"]
        await create_author(live, "Camus", "FR")
        (last,) = changes(await second.next_payloads(1))
        assert last["after"]["name"] == "Camus"
        await second.quiet(0.5)
    finally:
        await second.kill()
    ids = [int(c["id"]) for c in [*got, *resumed, last]]
    assert ids == sorted(set(ids))


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_a_change_committed_late_with_a_smaller_id_is_delivered_after_a_reconnect(
    dialect: Dialect, request: pytest.FixtureRequest, modules: Path
) -> None:
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    async with live_server(dialect, url, subscriptions={"gap_timeout_s": 1}) as live:
        first = await NodeClient.start(modules, live.url, FR_AUTHORS)
        writer = ChinookDb(dialect, url)
        try:
            await first.connected()
            await live.active(1)
            # A transaction takes a change id, and stays open while a later one commits.
            await asyncio.to_thread(writer.query, "BEGIN")
            image = {"id": 99, "name": "Late", "email": "l@x.org", "country": "FR", "bio": None}
            await asyncio.to_thread(
                writer.query,
                "INSERT INTO quiver_change_log (entity, entity_key, operation, before_image,"
                " after_image, changed_fields, transaction_id)"
                " VALUES ('Author', %s, 'insert', NULL, %s, %s, 'late')",
                (orjson.dumps({"id": 99}).decode(), orjson.dumps(image).decode(), '["name"]'),
            )
            await create_author(live, "Early", "FR")
            (early,) = changes(await first.next_payloads(1))
            assert early["after"]["name"] == "Early"
        finally:
            await first.kill()
        try:
            # in time: within gap_timeout_s of its id being skipped
            await asyncio.to_thread(writer.query, "COMMIT")
            # the client comes back after the gap's time is over: it still gets the change
            await asyncio.sleep(1.5)
            second = await NodeClient.start(
                modules, live.url, FR_AUTHORS, {"after": early["cursor"]}
            )
            try:
                (late,) = changes(await second.next_payloads(1))
                assert late["after"] == {"name": "Late", "country": "FR"}
                assert int(late["id"]) < int(early["id"])
                await second.quiet(0.5)
            finally:
                await second.kill()
        finally:
            writer.close()


@pytest_asyncio.fixture
async def shop(fresh_sqlite: str) -> AsyncIterator[LiveServer]:
    async with live_server(
        "sqlite", fresh_sqlite, graphql={"max_depth": 4, "max_cost": 500}
    ) as server:
        yield server


async def test_image_selections_take_nested_relations_and_operations_filter(
    shop: LiveServer, modules: Path
) -> None:
    author = await create_author(shop, "Tolkien", "GB")
    client = await NodeClient.start(
        modules,
        shop.url,
        "subscription { bookChanged(operations: [DELETE]) {"
        " op __typename before { title author { name } } } }",
    )
    try:
        await client.connected()
        await shop.active(1)
        created = await shop.data(
            "mutation ($i: BookCreateInput!) { createBook(input: $i) { id } }",
            {"i": {"title": "The Hobbit", "authorId": author, "pages": 310}},
        )
        await shop.data(
            "mutation ($id: Int!) { deleteBook(id: $id) { id } }",
            {"id": created["createBook"]["id"]},
        )
        (payload,) = await client.next_payloads(1)
        assert payload["data"]["bookChanged"] == {
            "op": "DELETE",
            "__typename": "BookChange",
            "before": {"title": "The Hobbit", "author": {"name": "Tolkien"}},
        }
        await client.quiet(0.5)
    finally:
        await client.kill()


@pytest.mark.parametrize(
    ("document", "code", "needle"),
    [
        (
            "subscription { authorChanged { op nope } }",
            "GRAPHQL_VALIDATION_FAILED",
            "Cannot query field 'nope'",
        ),
        (
            "subscription { authorChanged(where: {nope: {eq: 1}}) { op } }",
            "GRAPHQL_VALIDATION_FAILED",
            "nope",
        ),
        (
            "subscription { authorChanged(where: {name: {eq: 7}}) { op } }",
            "GRAPHQL_VALIDATION_FAILED",
            "String cannot represent a non string value",
        ),
        (
            'subscription { authorChanged(after: "not-a-cursor") { op } }',
            "BAD_USER_INPUT",
            "not a cursor of a change event",
        ),
        (
            "subscription { authorChanged { after { books { author { books { title } } } } } }",
            "DEPTH_LIMIT_EXCEEDED",
            "depth",
        ),
        (
            "subscription { authorChanged { after { books(limit: 1000) { title } } } }",
            "COST_LIMIT_EXCEEDED",
            "cost",
        ),
        (
            "subscription { authorChanged(where: {name: {eq: null}}) { op } }",
            "BAD_USER_INPUT",
            "isNull",
        ),
        (
            "subscription { authorChanged { op } bookChanged { op } }",
            "GRAPHQL_VALIDATION_FAILED",
            "only one top level field",
        ),
    ],
)
async def test_a_bad_subscription_is_answered_with_an_error_message(
    shop: LiveServer, modules: Path, document: str, code: str, needle: str
) -> None:
    client = await NodeClient.start(modules, shop.url, document)
    try:
        event = await client.event()
        if event["event"] == "connected":
            event = await client.event()
        assert event["event"] == "error", event
        (error,) = event["errors"][:1]
        assert error["extensions"]["code"] == code, event
        assert needle.lower() in error["message"].lower(), event
    finally:
        await client.kill()


async def test_a_query_over_the_socket_answers_next_then_complete(
    shop: LiveServer, modules: Path
) -> None:
    await create_author(shop, "Austen", "GB")
    client = await NodeClient.start(modules, shop.url, "{ authors { name } }")
    try:
        (payload,) = await client.next_payloads(1)
        assert payload == {"data": {"authors": [{"name": "Austen"}]}}
        assert (await client.event())["event"] == "complete"
    finally:
        await client.kill()


async def test_a_subscription_over_http_is_refused_with_the_way_to_subscribe(
    shop: LiveServer,
) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{shop.http}/graphql", json={"query": "subscription { authorChanged { op } }"}
        )
    (error,) = answer.json()["errors"]
    assert error["extensions"]["code"] == "OPERATION_NOT_SUPPORTED"
    assert "graphql-transport-ws" in error["message"]


async def test_disconnecting_ends_the_subscription(shop: LiveServer, modules: Path) -> None:
    clients = [
        await NodeClient.start(modules, shop.url, "subscription { authorChanged { op } }")
        for _ in range(3)
    ]
    try:
        await shop.active(3)
        await clients[0].kill()
        await shop.active(2)
    finally:
        for c in clients:
            await c.kill()
    await shop.active(0)
    engine = shop.app.engine
    assert engine is not None
    assert not engine.change_signal.watching  # the last one stopped the head watcher


async def test_api_keys_are_asked_in_connection_init(fresh_sqlite: str, modules: Path) -> None:
    key = "k" * 24
    async with live_server(
        "sqlite", fresh_sqlite, auth={"api_keys": [{"name": "tester", "key": key}]}
    ) as live:
        live.headers = {"Authorization": f"Bearer {key}"}
        query = "subscription { authorChanged { op after { name } } }"
        refused = await NodeClient.start(modules, live.url, query)
        try:
            event = await refused.event()
            assert event == {"event": "closed", "code": 4403, "reason": event["reason"]}
            assert "no credentials" in event["reason"]
        finally:
            await refused.kill()
        allowed = await NodeClient.start(
            modules, live.url, query, connection_params={"Authorization": f"Bearer {key}"}
        )
        try:
            await allowed.connected()
            await live.active(1)
            await create_author(live, "Woolf", "GB")
            (payload,) = await allowed.next_payloads(1)
            assert payload["data"]["authorChanged"] == {"op": "INSERT", "after": {"name": "Woolf"}}
        finally:
            await allowed.kill()


async def test_postgresql_notify_wakes_subscriptions_for_changes_of_other_processes(
    fresh_postgresql: str, modules: Path
) -> None:
    # polls only once a minute: a prompt delivery is the NOTIFY's doing
    async with live_server(
        "postgresql", fresh_postgresql, subscriptions={"poll_interval_ms": 60_000}
    ) as live:
        client = await NodeClient.start(modules, live.url, FR_AUTHORS)
        other = await GraphQLEngine.open(
            await reflect_database(fresh_postgresql),
            QuiverSettings.model_validate({"database": {"url": fresh_postgresql}}),
        )
        try:
            await client.connected()
            await live.active(1)
            await asyncio.sleep(0.3)  # the subscription now waits out its poll interval
            outcome = await other.execute(
                other.prepare(
                    'mutation { createAuthor(input: {name: "Proust", email: "p@x.org",'
                    ' country: "FR"}) { id } }'
                ),
                None,
            )
            assert outcome.kind == "data", outcome.body
            (payload,) = await client.next_payloads(1, timeout=10)
            assert payload["data"]["authorChanged"]["after"]["name"] == "Proust"
        finally:
            await other.close()
            await client.kill()


GADGET_FIELDS = "id price madeAt released active meta data big score"


async def test_images_render_every_scalar_as_a_query_does(live: LiveServer, modules: Path) -> None:
    fields = GADGET_FIELDS + ("" if live.db.dialect == "sqlite" else " kind")
    client = await NodeClient.start(
        modules,
        live.url,
        "subscription { gadgetChanged(where: {active: {eq: false}})"
        f" {{ after {{ {fields} }} }} }}",
    )
    try:
        await client.connected()
        await live.active(1)
        values: dict[str, Any] = {
            "price": "12.50",
            "madeAt": "2024-05-06T07:08:09Z",
            "released": "2024-05-06",
            "active": False,
            "meta": {"a": [1, 2], "b": "x"},
            "data": "AAEC/w==",
            "big": "9007199254740993",
            "score": 1.5,
        }
        if live.db.dialect != "sqlite":
            values["kind"] = "big"
        for active in (True, False):
            await live.data(
                "mutation ($i: GadgetCreateInput!) { createGadget(input: $i) { id } }",
                {"i": {**values, "active": active}},
            )
        (payload,) = await client.next_payloads(1)
        after = payload["data"]["gadgetChanged"]["after"]
        queried = await live.data(f"{{ gadget(id: {after['id']}) {{ {fields} }} }}")
        assert after == queried["gadget"]
        await client.quiet(0.5)
    finally:
        await client.kill()


# Filters whose matches the subscription and the list query must agree on.
AGREEING_FILTERS = [
    '{name: {eq: "zola"}}',
    '{name: {like: "Z%"}}',
    '{name: {ilike: "%OL%"}}',
    "{bio: {isNull: true}}",
    '{country: {in: ["FR", "GB"]}, not: {name: {startsWith: "H"}}}',
    '{or: [{country: {eq: "NZ"}}, {email: {endsWith: "@b.org"}}]}',
]


async def test_where_matches_exactly_what_the_list_query_matches(
    live: LiveServer, modules: Path
) -> None:
    authors = [
        ("Zola", "FR", "z@a.org", None),
        ("zola", "GB", "z2@b.org", "bio"),
        ("Hugo", "FR", "h@a.org", "x"),
        ("Frame", "NZ", "f@a.org", None),
        ("Hulme", "GB", "u@a.org", None),
    ]
    clients = []
    try:
        for where in AGREEING_FILTERS:
            query = f"subscription {{ authorChanged(where: {where}) {{ after {{ name email }} }} }}"
            clients.append(await NodeClient.start(modules, live.url, query))
        await live.active(len(AGREEING_FILTERS))
        ids = []
        for name, country, email, bio in authors:
            data = await live.data(
                "mutation ($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }",
                {"i": {"name": name, "country": country, "email": email, "bio": bio}},
            )
            ids.append(data["createAuthor"]["id"])
        for where, client in zip(AGREEING_FILTERS, clients, strict=True):
            listed = await live.data(f"{{ authors(where: {where}) {{ email }} }}")
            assert len(listed["authors"]) < len(ids), where
            expected = sorted(a["email"] for a in listed["authors"])
            assert expected, where
            got = []
            for _ in expected:
                (payload,) = await client.next_payloads(1)
                got.append(payload["data"]["authorChanged"]["after"]["email"])
            assert sorted(got) == expected, where
            await client.quiet(0.2)
    finally:
        for c in clients:
            await c.kill()


async def test_relation_filters_read_the_related_rows_as_they_are_when_delivered(
    live: LiveServer, modules: Path
) -> None:
    hugo = await create_author(live, "Hugo", "FR")
    await create_author(live, "Zola", "FR")
    await live.data(
        "mutation ($i: BookCreateInput!) { createBook(input: $i) { id } }",
        {"i": {"title": "Les Misérables", "authorId": hugo, "pages": 1900}},
    )
    client = await NodeClient.start(
        modules,
        live.url,
        "subscription { authorChanged(where: {books: {some: {pages: {gt: 100}}}})"
        " { op after { name books { title } } } }",
    )
    try:
        await client.connected()
        await live.active(1)
        await live.data('mutation { updateAuthors(where: {}, set: {bio: "b"}) { id } }')
        (payload,) = await client.next_payloads(1)
        assert payload["data"]["authorChanged"] == {
            "op": "UPDATE",
            "after": {"name": "Hugo", "books": [{"title": "Les Misérables"}]},
        }
        await client.quiet(0.5)
    finally:
        await client.kill()


async def test_changes_logged_by_triggers_are_delivered_like_mutations(
    live: LiveServer, modules: Path
) -> None:
    engine = live.app.engine
    assert engine is not None
    await install_triggers(
        engine.database, [engine.catalog.entities["Gadget"]], "quiver_change_log"
    )
    fields = "id price released active meta big score"
    client = await NodeClient.start(
        modules,
        live.url,
        'subscription { gadgetChanged(where: {price: {gt: "10"}})'
        f" {{ op after {{ {fields} }} before {{ price }} }} }}",
    )
    try:
        await client.connected()
        await live.active(1)
        true = "1" if live.db.dialect != "postgresql" else "true"
        await live.sql(
            "INSERT INTO gadgets (price, released, active, meta, big, score) VALUES"
            f""" (12.5, '2024-05-06', {true}, '{{"a": 1}}', 9007199254740993, 0.25),"""
            f" (3, '2024-05-07', {true}, NULL, 1, 1)"
        )
        await live.sql("UPDATE gadgets SET price = 11 WHERE price = 12.5")
        inserted, updated = await client.next_payloads(2)
        row = inserted["data"]["gadgetChanged"]
        queried = await live.data(f"{{ gadget(id: {row['after']['id']}) {{ {fields} }} }}")
        assert row["op"] == "INSERT"
        assert row["after"] == {**queried["gadget"], "price": row["after"]["price"]}
        assert float(row["after"]["price"]) == 12.5
        change = updated["data"]["gadgetChanged"]
        assert change["op"] == "UPDATE"
        assert float(change["before"]["price"]) == 12.5
        assert change["after"] == queried["gadget"]
        await client.quiet(0.5)
    finally:
        await client.kill()


async def test_variables_and_fragments_shape_the_subscription(
    live: LiveServer, modules: Path
) -> None:
    client = await NodeClient.start(
        modules,
        live.url,
        "subscription Watch($w: AuthorWhere, $ops: [ChangeOperation!]) {"
        " authorChanged(where: $w, operations: $ops) { kind: op ...Row } }"
        " fragment Row on AuthorChange { after { ...Names } }"
        " fragment Names on Author { name n2: name }",
        {"w": {"email": {"endsWith": "@keep.org"}}, "ops": ["INSERT"]},
    )
    try:
        await client.connected()
        await live.active(1)
        await live.data(
            'mutation { a: createAuthor(input: {name: "Keep", email: "k@keep.org"}) { id }'
            ' b: createAuthor(input: {name: "Drop", email: "d@drop.org"}) { id } }'
        )
        await live.data('mutation { updateAuthors(where: {}, set: {bio: "b"}) { id } }')
        (payload,) = await client.next_payloads(1)
        assert payload["data"]["authorChanged"] == {
            "kind": "INSERT",
            "after": {"name": "Keep", "n2": "Keep"},
        }
        await client.quiet(0.5)
    finally:
        await client.kill()


async def test_an_image_the_database_cannot_read_ends_the_subscription_with_an_error(
    fresh_postgresql: str, modules: Path
) -> None:
    async with live_server("postgresql", fresh_postgresql) as live:
        client = await NodeClient.start(modules, live.url, FR_AUTHORS)
        try:
            await client.connected()
            await live.active(1)
            await live.sql(
                "INSERT INTO quiver_change_log (entity, entity_key, operation, after_image,"
                " changed_fields, transaction_id) VALUES ('Author', '{}', 'insert',"
                """ '{"id": "not a number", "name": "X", "country": "FR"}', '[]', 'bad')"""
            )
            event = await client.event()
            assert event["event"] == "error", event
            (error,) = event["errors"]
            assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
            assert "could not read the Author changes" in error["message"]
            assert "not a number" not in error["message"]  # the details stay in the log
            await live.active(0)
        finally:
            await client.kill()
