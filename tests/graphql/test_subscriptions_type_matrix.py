"""Subscriptions deliver every column type exactly as a query serves it, to the reference client.

Over the type-matrix table (``tests/graphql/type_matrix.py``: a column of every type each
database offers, at the edges of its range), rows are updated, deleted and created through
mutations and through plain SQL logged by triggers; the ``after``/``before`` images a
``graphql-ws`` client receives must equal what the same client receives for a query of the row.
The ``where:`` filter of every comparable field is checked in
``test_subscriptions_where_matrix.py`` (a file of its own, run beside this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from graphql import GraphQLInputObjectType
from quiver.observers.triggers import install_triggers
from tests.conftest import DIALECTS, Dialect
from tests.graphql import type_matrix as tm
from tests.graphql.conftest import Runner
from tests.graphql.subscription_fixtures import LiveServer, serve_database
from tests.graphql.test_mutations_type_matrix import (
    _NOT_WRITABLE_AS_SERVED,
    _exact,
    _non_finite,
    _plain,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCRIPT = Path(__file__).with_name("watch_many.cjs")


class ManyClient:
    """One graphql-ws client running several operations on one socket."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def run(
        cls, modules: Path, url: str, operations: list[dict[str, Any]]
    ) -> AsyncIterator[ManyClient]:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            url,
            orjson.dumps(operations).decode(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_PATH": str(modules)},
            limit=2**24,
        )
        try:
            yield cls(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    async def event(self, timeout: float = 15) -> dict[str, Any]:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            pytest.fail(f"no event from the client within {timeout}s")
        if not line:
            err = await self.proc.stderr.read() if self.proc.stderr is not None else b""
            code = await self.proc.wait()
            pytest.fail(f"the client ended ({code}) after {self.seen}: {err.decode()[-2000:]}")
        event: dict[str, Any] = orjson.loads(line)
        self.seen.append(event)
        return event

    async def events(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """The next ``count`` events other than ``connected`` and ``complete``."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            event = await self.event(timeout)
            if event["event"] not in ("connected", "complete"):
                out.append(event)
        return out

    async def quiet(self, seconds: float) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(TimeoutError):
            line = await asyncio.wait_for(self.proc.stdout.readline(), seconds)
            event = orjson.loads(line)
            if event["event"] != "complete":
                pytest.fail(f"unexpected event: {line!r}")


def _names(live: LiveServer) -> list[str]:
    engine = live.app.engine
    assert engine is not None
    return list(tm.field_types(engine.graphql_schema, "Cell"))


async def _query(modules: Path, live: LiveServer, document: str) -> Any:
    """The data of a query, as the reference client receives it."""
    async with ManyClient.run(modules, live.url, [{"query": document}]) as client:
        (event,) = await client.events(1)
    assert event["event"] == "next" and "errors" not in event["payload"], event
    return event["payload"]["data"]


async def _rows(modules: Path, live: LiveServer, names: list[str]) -> dict[int, Any]:
    data = await _query(modules, live, f"{{ cells(orderBy: {{id: ASC}}) {{ {' '.join(names)} }} }}")
    return {row["id"]: row for row in data["cells"]}


def _differences(got: Any, served: Any, what: str) -> list[str]:
    if got is None or served is None:
        return [] if got == served else [f"{what}: got {got!r}, served {served!r}"]
    return [
        f"{what} {name}: subscription {got.get(name)!r}, query {value!r}"
        for name, value in served.items()
        if got.get(name) != value
    ]


def _table(live: LiveServer) -> str:
    engine = live.app.engine
    assert engine is not None
    schema = engine.catalog.entities["Cell"].db_schema
    return f"{schema}.cells" if schema else "cells"


async def _check_changes(
    modules: Path,
    live: LiveServer,
    update: Any,
    delete: Any,
    create: Any,
) -> list[str]:
    """Problems of the changes ``update``, ``delete`` and ``create`` make, as a client receives
    them, against what a query serves for the same rows."""
    names = _names(live)
    selection = " ".join(names)
    document = (
        f"subscription {{ cellChanged {{ op after {{ {selection} }} before {{ {selection} }} }} }}"
    )
    async with ManyClient.run(modules, live.url, [{"query": document}]) as client:
        await live.active(1)
        before = await _rows(modules, live, names)
        await update()
        after = await _rows(modules, live, names)
        await delete()
        events = await client.events(2 * len(before))
        problems: list[str] = []
        got = [e["payload"]["data"]["cellChanged"] for e in events]
        assert all(e["event"] == "next" for e in events), events
        updates = [c for c in got if c["op"] == "UPDATE"]
        deletes = [c for c in got if c["op"] == "DELETE"]
        assert len(updates) == len(deletes) == len(before), [c["op"] for c in got]
        for c in updates:
            key = c["before"]["id"]
            problems += _differences(c["before"], before[key], f"update before {key}")
            problems += _differences(c["after"], after[key], f"update after {key}")
        for c in deletes:
            key = c["before"]["id"]
            assert c["after"] is None
            problems += _differences(c["before"], after[key], f"delete before {key}")
        created = await create(after)
        events = await client.events(len(created))
        again = await _rows(modules, live, names)
        for e in events:
            c = e["payload"]["data"]["cellChanged"]
            assert c["op"] == "INSERT" and c["before"] is None, c
            key = c["after"]["id"]
            problems += _differences(c["after"], again[key], f"insert after {key}")
        await client.quiet(0.3)
    return problems


async def test_mutation_changes_of_every_type_reach_the_client_as_a_query_serves_them(
    live_matrix: LiveServer, modules: Path
) -> None:
    live = live_matrix
    engine = live.app.engine
    assert engine is not None

    first: dict[str, Any] = {}

    async def update() -> None:
        await live.data('mutation { updateCells(where: {}, set: {t: "changed"}) { id } }')
        kind, body = await Runner(engine, live.db).raw(
            f"{{ cell(id: 1) {{ {' '.join(_names(live))} }} }}"
        )
        assert kind == "data", body
        first.update(_exact(json.dumps(body["data"]["cell"])))

    async def delete() -> None:
        await live.data("mutation { deleteCells(where: {}) { id } }")

    async def create(after: dict[int, Any]) -> list[int]:
        create = engine.graphql_schema.get_type("CellCreateInput")
        assert isinstance(create, GraphQLInputObjectType)
        # A GraphQL Float input cannot carry a non-finite number (served as "NaN", "Infinity").
        inputs = {
            name: _plain(first[name])
            for name in create.fields
            if name in first
            and not _non_finite(first[name])
            and name not in _NOT_WRITABLE_AS_SERVED[live.db.dialect]
        }
        inputs["id"] = 1000
        await live.data(
            "mutation($i: CellCreateInput!) { createCell(input: $i) { id } }", {"i": inputs}
        )
        return [1000]

    problems = await _check_changes(modules, live, update, delete, create)
    assert not problems, "\n".join(problems)


#: Fields whose SQLite trigger image is not the served value (quiver.observers.triggers): a
#: BLOB is logged as hex text (and NULL as ''), a REAL through printf('%!.17g'), which may
#: change the last bit.
def _insert_statements(live: LiveServer) -> list[str]:
    """The matrix's own INSERT statements of its rows."""
    dialect = live.db.dialect
    if dialect == "postgresql":
        schema = _table(live).split(".")[0]
        return [r.format(s=schema) for r in tm.PG_ROWS]
    return tm.MYSQL_ROWS if dialect == "mysql" else tm.SQLITE_ROWS


async def test_plain_sql_changes_of_every_type_reach_the_client_as_a_query_serves_them(
    live_matrix: LiveServer, modules: Path
) -> None:
    live = live_matrix
    engine = live.app.engine
    assert engine is not None
    await install_triggers(engine.database, [engine.catalog.entities["Cell"]], "quiver_change_log")
    table = _table(live)

    async def update() -> None:
        await live.sql(f"UPDATE {table} SET t = 'changed'")

    async def delete() -> None:
        await live.sql(f"DELETE FROM {table}")

    async def create(after: dict[int, Any]) -> list[int]:
        for statement in _insert_statements(live):
            await live.sql(statement)
        return sorted(after)

    problems = await _check_changes(modules, live, update, delete, create)
    assert not problems, "\n".join(problems)


async def _is_null_deliveries(
    modules: Path, live: LiveServer, change: Any
) -> tuple[dict[bool, set[int]], dict[bool, set[int]]]:
    """The rows ``isNull: true`` and ``isNull: false`` on the JSON field ``j`` select in a
    query, and those the same filters deliver in a subscription when ``change()`` changes
    every row."""
    selected: dict[bool, set[int]] = {}
    for test in (True, False):
        data = await live.data(
            f"{{ cells(where: {{j: {{isNull: {str(test).lower()}}}}}) {{ id }} }}"
        )
        selected[test] = {row["id"] for row in data["cells"]}
    document = "subscription($w: CellWhere) { cellChanged(where: $w) { after { id } } }"
    operations = [
        {"query": document, "variables": {"w": {"j": {"isNull": test}}}} for test in (True, False)
    ]
    delivered: dict[bool, set[int]] = {True: set(), False: set()}
    async with ManyClient.run(modules, live.url, operations) as client:
        await live.active(2)
        count = await change()
        for event in await client.events(count):
            delivered[event["index"] == 0].add(
                event["payload"]["data"]["cellChanged"]["after"]["id"]
            )
        await client.quiet(0.5)
    return selected, delivered


async def test_is_null_on_a_json_field_of_rows_changed_by_plain_sql_selects_as_the_query(
    live_matrix: LiveServer, modules: Path
) -> None:
    live = live_matrix
    engine = live.app.engine
    assert engine is not None
    await install_triggers(engine.database, [engine.catalog.entities["Cell"]], "quiver_change_log")

    async def change() -> int:
        await live.sql(f"UPDATE {_table(live)} SET t = 'by plain SQL'")
        rows = len((await live.data("{ cells { id } }"))["cells"])
        return rows  # each row matches one of the two filters

    selected, delivered = await _is_null_deliveries(modules, live, change)
    assert selected[True] and selected[False], selected
    assert delivered == selected


async def test_an_image_logged_before_json_nulls_were_named_reads_its_nulls_as_sql_null(
    live_matrix: LiveServer, modules: Path
) -> None:
    live = live_matrix

    async def change() -> int:
        # as an earlier version logged the rows: a null JSON field, whatever it held
        for key in sorted((await live.data("{ cells { id } }"))["cells"], key=lambda r: r["id"]):
            image = orjson.dumps({"id": key["id"], "j": None}).decode()
            await live.sql(
                "INSERT INTO quiver_change_log (entity, entity_key, operation, before_image,"
                " after_image, changed_fields, transaction_id) VALUES ('Cell', ?, 'update', ?, ?,"
                " '[\"t\"]', 'earlier')",
                (orjson.dumps({"id": key["id"]}).decode(), image, image),
            )
        return len((await live.data("{ cells { id } }"))["cells"])

    selected, delivered = await _is_null_deliveries(modules, live, change)
    assert delivered == {True: selected[True] | selected[False], False: set()}


async def _running(live: LiveServer) -> int:
    import httpx

    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{live.http}/metrics")).text
    for line in body.splitlines():
        if line.startswith("quiver_graphql_subscriptions_active "):
            return int(float(line.split()[1]))
    return 0


async def test_a_filter_value_the_database_cannot_take_is_refused_at_subscribe(
    fresh_postgresql: str, tmp_path_factory: Any, modules: Path
) -> None:
    with tm.matrix_database("postgresql", tmp_path_factory) as m:
        async with serve_database(m.db, m.url, m.schemas) as live:
            # money compares as money: text it cannot read is the query's own refusal
            where = {"m": {"gt": "not money"}}
            document = "subscription($w: CellWhere) { cellChanged(where: $w) { op } }"
            operations: list[dict[str, Any]] = [
                {"query": document, "variables": {"w": where}},
                {"query": "subscription { cellChanged { op after { id } } }"},
            ]
            async with ManyClient.run(modules, live.url, operations) as client:
                # refused before any change is written, and the socket serves the other
                (event,) = await client.events(1)
                assert event["event"] == "error" and event["index"] == 0, event
                assert event["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", event
                await live.active(1)
                await live.data('mutation { updateCell(id: 2, set: {t: "x"}) { id } }')
                (event,) = await client.events(1)
                assert event["index"] == 1, event
                assert event["payload"]["data"]["cellChanged"] == {
                    "op": "UPDATE",
                    "after": {"id": 2},
                }


BIG_JSON = (
    '{"big": 123456789012345678901234567890.123456789, "i": 18446744073709551617,'
    ' "f": 1e400, "s": 0.1000000000000000055511151231257827}'
)


async def _big_json_changes(live: LiveServer, through: str) -> None:
    """Write JSON with big numbers into row 1, then change the row ``through`` a mutation or
    plain SQL logged by a trigger; read on a raw socket (a JavaScript client would round the
    numbers itself), the JSON must reach the subscriber with every digit, as a query serves
    it."""
    from websockets.asyncio.client import connect

    engine = live.app.engine
    assert engine is not None
    columns = ["j", "jb"] if live.db.dialect == "postgresql" else ["j"]
    table = _table(live)
    document = f"subscription {{ cellChanged {{ after {{ id {' '.join(columns)} }} }} }}"
    await live.sql(
        f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = 1",
        (BIG_JSON,) * len(columns),
    )
    async with connect(live.url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(orjson.dumps({"type": "connection_init"}).decode())
        await asyncio.wait_for(ws.recv(), 10)
        subscribe = {"type": "subscribe", "id": "1", "payload": {"query": document}}
        await ws.send(orjson.dumps(subscribe).decode())
        await live.active(1)
        if through == "mutation":
            await live.data('mutation { updateCell(id: 1, set: {t: "by a mutation"}) { id } }')
        else:
            await install_triggers(
                engine.database, [engine.catalog.entities["Cell"]], "quiver_change_log"
            )
            await live.sql(f"UPDATE {table} SET t = 'by plain SQL' WHERE id = 1")
        outcome = await engine.execute(
            engine.prepare(f"{{ cell(id: 1) {{ id {' '.join(columns)} }} }}"), None
        )
        served = _exact(outcome.body)["data"]["cell"]
        assert served["j"]["i"] == 18446744073709551617, served
        message = _exact(await asyncio.wait_for(ws.recv(), 15))
        assert message["type"] == "next", message
        assert message["payload"]["data"]["cellChanged"]["after"] == served


async def test_json_with_big_numbers_logged_by_triggers_is_delivered_exactly(
    live_matrix: LiveServer,
) -> None:
    await _big_json_changes(live_matrix, "trigger")


async def test_json_with_big_numbers_changed_by_mutations_is_delivered_exactly(
    live_matrix: LiveServer,
) -> None:
    await _big_json_changes(live_matrix, "mutation")


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_client_gone_mid_stream_leaks_nothing_and_others_get_every_change(
    dialect: Dialect, request: pytest.FixtureRequest, modules: Path
) -> None:
    from tests.graphql.subscription_fixtures import live_server

    url: str = request.getfixturevalue(f"fresh_{dialect}")
    async with live_server(dialect, url) as live:
        engine = live.app.engine
        assert engine is not None
        await live.data("{ authors { id } }")
        await asyncio.sleep(0.2)
        tasks = len(asyncio.all_tasks())
        document = "subscription { authorChanged { op after { name email books { title } } } }"
        count = 400
        authors = [{"name": f"A{i}", "email": f"a{i}@example.org"} for i in range(count)]
        async with (
            ManyClient.run(modules, live.url, [{"query": document}]) as gone,
            ManyClient.run(modules, live.url, [{"query": document}]) as staying,
        ):
            await live.active(2)
            await live.data(
                "mutation($i: [AuthorCreateInput!]!) { createAuthors(inputs: $i) { id } }",
                {"i": authors},
            )
            await gone.events(5)
            gone.proc.kill()  # while the server is still sending it the rest
            await live.active(1)
            events = await staying.events(count)
            names = [e["payload"]["data"]["authorChanged"]["after"]["name"] for e in events]
            assert names == [a["name"] for a in authors]
            # the server goes on serving: a new subscription and queries
            async with ManyClient.run(modules, live.url, [{"query": document}]) as late:
                await live.active(2)
                await live.data(
                    'mutation { createAuthor(input: {name: "Z", email: "z@x.org"}) { id } }'
                )
                (event,) = await late.events(1)
                assert event["payload"]["data"]["authorChanged"]["after"]["name"] == "Z"
                (event,) = await staying.events(1)
                assert event["payload"]["data"]["authorChanged"]["after"]["name"] == "Z"
        await live.active(0)
        assert not engine.change_signal.watching
        for _ in range(100):  # the sockets' tasks wind down
            if len(asyncio.all_tasks()) <= tasks:
                break
            await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) <= tasks, [t.get_coro() for t in asyncio.all_tasks()]
        data = await asyncio.gather(*(live.data("{ authors(limit: 1) { id } }") for _ in range(8)))
        assert all(d["authors"] for d in data)
