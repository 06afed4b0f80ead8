"""Change events of every column type (the type-matrix table, ``tests/graphql/type_matrix.py``)
reach an observer's webhook as GraphQL serves the same rows, and conditions compare a field of
each type by its value, whatever its spelling."""

from __future__ import annotations

import asyncio
import decimal
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.observers.condition import parse_condition
from quiver.observers.dispatcher import Dispatcher
from quiver.observers.service import open_dispatcher
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, Dialect
from tests.graphql import type_matrix as tm
from tests.graphql.conftest import Runner
from tests.observers.conftest import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: A JSON field's numbers past a double and past 64 bits: served as the database keeps them.
BIG_NUMBERS = '{"big": 123456789012345678901234567890, "huge": 1e400, "fine": 1.5}'
JSON_FIELD = {"postgresql": "jb", "mysql": "j", "sqlite": "j"}


class Cells:
    def __init__(
        self, runner: Runner, url: str, dialect: Dialect, schemas: list[str] | None, table: str
    ) -> None:
        self.table = table
        self.runner = runner
        self.url = url
        self.dialect = dialect
        self.schemas = schemas

    async def served(self) -> dict[Any, dict[str, Any]]:
        names = list(tm.field_types(self.runner.engine.graphql_schema, "Cell"))
        engine = self.runner.engine
        query = f"{{ cells(orderBy: {{id: ASC}}) {{ {' '.join(names)} }} }}"
        outcome = await engine.execute(engine.prepare(query), None)
        body = _exact(outcome.body)
        assert outcome.kind == "data", body
        return {row["id"]: row for row in body["data"]["cells"]}

    async def served_text(self, pattern: bytes) -> list[bytes]:
        """The spellings of ``pattern``'s group in the body GraphQL serves for the rows."""
        engine = self.runner.engine
        query = f"{{ cells {{ id {JSON_FIELD[self.dialect]} }} }}"
        outcome = await engine.execute(engine.prepare(query), None)
        return [m.group(1) for m in re.finditer(pattern, outcome.body)]

    async def dispatcher(self, observers: list[dict[str, Any]], attempts: int = 1) -> Dispatcher:
        retry = {"max_attempts": attempts, "initial_delay": 0.01, "max_delay": 0.02}
        settings = QuiverSettings.model_validate(
            {
                "database": {"url": self.url, "pool_max": 2, "schemas": self.schemas or []},
                "observers": observers,
                "dispatcher": {"retry": retry},
            }
        )
        return await open_dispatcher(settings)

    async def update_every_row(self, observers: list[dict[str, Any]]) -> None:
        """One mutation changes every row; ``observers`` then deliver every event it logged."""
        dispatcher = await self.dispatcher(observers)
        try:
            await self.runner.data('mutation { updateCells(where: {}, set: {t: "x"}) { id } }')
            while await dispatcher.run_once():
                pass
        finally:
            await dispatcher.close()


@pytest_asyncio.fixture(params=DIALECTS, loop_scope="session")
async def cells(request: pytest.FixtureRequest, tmp_path_factory: Any) -> AsyncIterator[Cells]:
    dialect: Dialect = request.param
    with tm.matrix_database(dialect, tmp_path_factory) as m:
        reflected = await reflect_database(m.url, schemas=m.schemas)
        settings = QuiverSettings.model_validate({"database": {"url": m.url, "pool_max": 2}})
        engine = await GraphQLEngine.open(reflected, settings)
        try:
            yield Cells(Runner(engine, m.db), m.url, dialect, m.schemas, m.table)
        finally:
            await engine.close()


def _exact(text: str | bytes) -> Any:
    """JSON with every number as an exact decimal (no float rounding on either side)."""
    return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


def _differences(image: dict[str, Any], row: dict[str, Any], what: str) -> list[str]:
    return [
        f"{what} {name}: delivered {image.get(name)!r}, served {value!r}"
        for name, value in row.items()
        if image.get(name) != value or type(image.get(name)) is not type(value)
    ]


async def test_every_type_reaches_the_webhook_as_graphql_serves_it(
    cells: Cells, receiver: Receiver
) -> None:
    hook = {"type": "webhook", "url": receiver.url, "timeout": 5}
    dispatcher = await cells.dispatcher(
        [{"name": "all", "entity": "Cell", "on": ["update", "delete"], "actions": [hook]}]
    )
    json_field = JSON_FIELD[cells.dialect]
    cells.runner.db.query(f"UPDATE {cells.table} SET {json_field} = '{BIG_NUMBERS}' WHERE id = 1")
    if cells.dialect == "postgresql":  # a double jsonb would write as 10000000000000000
        cells.runner.db.query(f"UPDATE {cells.table} SET f8 = 1e16 WHERE id = 5")
    served_huge = await cells.served_text(rb'"huge": ?([0-9eE+.-]+)')
    try:
        before = await cells.served()
        # Fails (INTERNAL_SERVER_ERROR) when the change log cannot hold a served value.
        await cells.runner.data('mutation { updateCells(where: {}, set: {t: "x"}) { id } }')
        after = await cells.served()
        await cells.runner.data("mutation { deleteCells(where: {}) { id } }")
        while await dispatcher.run_once():
            pass
    finally:
        await dispatcher.close()
    events = [_exact(r.body) for r in receiver.received]
    assert len(events) == 2 * len(before), [e["operation"] for e in events]
    problems: list[str] = []
    for event in events:
        old, new = event["before"], event["after"]
        key = old["id"]
        if event["operation"] == "update":
            assert event["changed_fields"] == ["t"], event
            problems += _differences(old, before[key], f"update before {key}")
            problems += _differences(new, after[key], f"update after {key}")
        else:
            assert new is None
            problems += _differences(old, after[key], f"delete before {key}")
    assert not problems, "\n".join(problems)
    big = next(e for e in events if e["before"]["id"] == 1)["before"][json_field]
    assert big["big"] == decimal.Decimal("123456789012345678901234567890")
    assert big["huge"] == decimal.Decimal("1e400")
    # A Float stays a JSON float (PostgreSQL's change log is json: jsonb has no floats).
    floats = [json.loads(r.body)["before"] for r in receiver.received]
    f8 = [image.get("f8", 0.5) for image in floats]
    assert all(isinstance(v, float) or v is None or v in tm.NON_FINITE for v in f8), f8
    # Spelt as served, too (PostgreSQL's jsonb serves the digits, the others 1e400).
    huge = served_huge[0]
    assert any(huge in r.body for r in receiver.received), huge


#: One field of each comparable type per dialect, and a value of row 1 spelt otherwise than
#: GraphQL serves it (another offset, a space for the T, upper case, another exponent).
_SPELLED: dict[str, list[tuple[str, str]]] = {
    "postgresql": [
        ("n", "'1.0E+100'"),
        ("i8", "'9223372036854775807'"),
        ("f8", "1.7976931348623157e308"),
        ("b", "true"),
        ("d", "'2024-02-29'"),
        ("ts", "'2024-01-02 03:04:05.678000'"),
        ("tstz", "'2024-01-02T05:04:05+02:00'"),
        ("u", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"),
    ],
    "mysql": [
        ("decWide", "99999999999999999999999999999999999.999999999999999999999999999999"),
        ("biu", "18446744073709551615"),
        ("bo", "true"),
        ("d", "'2024-02-29'"),
        ("dtm6", "'2024-01-02 03:04:05.678901Z'"),
        ("u", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"),
    ],
    "sqlite": [
        ("dec", "'12.340'"),
        ("bi", "9223372036854775807"),
        ("bo", "true"),
        ("d", "'2024-02-29'"),
        ("ts", "'2024-01-02 03:04:05.678+00:00'"),
        ("u", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"),
    ],
}


async def test_a_condition_compares_a_field_of_each_type_by_its_value(
    cells: Cells, receiver: Receiver
) -> None:
    hook = {"type": "webhook", "url": receiver.url, "timeout": 5}
    observers = []
    for name, literal in _SPELLED[cells.dialect]:
        for op, when in (("eq", f"{name} == {literal}"), ("ne", f"{name} != {literal}")):
            observers.append(
                {
                    "name": f"{name}-{op}",
                    "entity": "Cell",
                    "on": ["update"],
                    "when": f"id == 1 && {when}",
                    "actions": [{**hook, "name": "hook"}],
                }
            )
    await cells.update_every_row(observers)
    fired = sorted(_exact(r.body)["observer"] for r in receiver.received)
    assert fired == sorted(f"{name}-eq" for name, _ in _SPELLED[cells.dialect])


async def test_a_condition_on_a_not_a_number_is_false_and_delivers_the_rest(
    cells: Cells, receiver: Receiver
) -> None:
    if cells.dialect != "postgresql":
        pytest.skip("only PostgreSQL's numeric holds NaN")
    hook = {"type": "webhook", "url": receiver.url, "timeout": 5}
    observers = [
        {"name": name, "entity": "Cell", "on": ["update"], "when": when, "actions": [hook]}
        for name, when in (
            ("above", "n > 5"),  # NaN is not ordered: false, never an exception
            ("nan", "n == 'NaN' && before.n == after.n"),
        )
    ]
    await cells.update_every_row(observers)
    fired = sorted(
        (_exact(r.body)["observer"], int(_exact(r.body)["key"]["id"])) for r in receiver.received
    )
    # row 1: n = 1e100; row 2: a tiny negative; row 3: NaN
    assert fired == [("above", 1), ("nan", 3)]


@pytest.mark.asyncio
async def test_signalling_nan_text_is_text_not_an_error() -> None:
    from quiver.observers.condition import Images, evaluate, typed_condition

    condition = typed_condition(
        parse_condition("n > 5 || n == 'sNaN' || label == 5"), {"n": "number"}
    )
    images = Images(None, {"n": "sNaN", "label": "sNaN"}, frozenset())
    assert evaluate(condition, images)  # 'sNaN' == 'sNaN' as text; no InvalidOperation


async def test_every_type_survives_the_job_queue_to_the_worker(cells: Cells) -> None:
    from quiver.observers.jobqueue import SqlJobQueue
    from quiver.observers.jobs import JobSpec, JobWorker
    from quiver.sql.changelog import json_text

    json_field = JSON_FIELD[cells.dialect]
    cells.runner.db.query(f"UPDATE {cells.table} SET {json_field} = '{BIG_NUMBERS}' WHERE id = 1")
    action = {"type": "job", "name": "enqueue", "job": "audit"}
    templated = {
        "type": "job",
        "name": "templated",
        "job": "pick",
        "payload": f'{{"id": {{{{ after.id | json }}}}, "j": {{{{ after.{json_field} | json }}}}}}',
    }
    # MariaDB may answer the two actions' concurrent enqueues with a deadlock, which is retried
    d = await cells.dispatcher(
        [{"name": "audit", "entity": "Cell", "on": ["update"], "actions": [action, templated]}],
        attempts=5,
    )
    ran: list[dict[str, Any]] = []
    picked: list[dict[str, Any]] = []

    async def audit(payload: dict[str, Any]) -> None:
        ran.append(payload)

    async def pick(payload: dict[str, Any]) -> None:
        picked.append(payload)

    try:
        await cells.runner.data('mutation { updateCells(where: {}, set: {t: "x"}) { id } }')
        served = await cells.served()
        while await d.run_once():
            pass
        functions = {
            "audit": JobSpec("audit", audit, "test"),
            "pick": JobSpec("pick", pick, "test"),
        }
        worker = JobWorker(SqlJobQueue(d.store.db), d.store, functions, d.settings.retry)
        # A claim may pass over a job another transaction holds for a moment (MariaDB's
        # SKIP LOCKED): claim again until every job ran, within a bound.
        end = time.monotonic() + 60
        while len(ran) + len(picked) < 2 * len(served) and time.monotonic() < end:
            if not await worker.run_once() and not await d.run_once():
                await asyncio.sleep(0.05)
        dead = await d.store.dead_letters()
        jobs = await SqlJobQueue(d.store.db).jobs(None, 10)
    finally:
        await d.close()
    assert not dead, dead
    assert len(ran) == len(served), [(j.event_id, j.status, j.last_error) for j in jobs]
    problems: list[str] = []
    for payload in ran:
        after = _exact(json_text(payload["after"]))
        problems += _differences(after, served[after["id"]], f"job after {after['id']}")
    assert not problems, "\n".join(problems)
    assert isinstance(
        next(p for p in ran if p["after"]["id"] == 1)["after"][json_field]["big"], decimal.Decimal
    )
    # A payload template's JSON keeps them too (the template renders, the worker reads).
    one = next(p for p in picked if p["id"] == 1)
    assert one["j"]["big"] == decimal.Decimal("123456789012345678901234567890")
    assert one["j"]["huge"] == decimal.Decimal("1e400")


async def test_dlq_show_prints_a_dead_letter_with_big_numbers(
    cells: Cells, receiver: Receiver, tmp_path: Any
) -> None:
    if cells.dialect != "sqlite":
        pytest.skip("the command is the same on every dialect")
    import yaml

    from tests.observers.test_commands import quiver

    cells.runner.db.query(f"UPDATE {cells.table} SET j = '{BIG_NUMBERS}' WHERE id = 1")
    receiver.statuses = [400]  # refused: dead-lettered at once
    hook = {"type": "webhook", "name": "crm", "url": receiver.url, "timeout": 5}
    observer = {"name": "one", "entity": "Cell", "on": ["update"], "actions": [hook]}
    cfg = tmp_path / "quiver.yaml"
    cfg.write_text(yaml.safe_dump({"database": {"url": cells.url}, "observers": [observer]}))
    await cells.runner.data('mutation { updateCell(id: 1, set: {t: "x"}) { id } }')
    code, _, err = await quiver("observers", "run", "--once", "-c", str(cfg))
    assert code == 0, err
    code, out, err = await quiver("dlq", "show", "1", "-c", str(cfg))
    assert code == 0 and "Traceback" not in err, err
    shown = _exact(out)
    assert shown["payload"]["after"]["j"] == _exact(BIG_NUMBERS)


async def test_a_created_row_of_every_type_reaches_the_webhook_as_served(
    cells: Cells, receiver: Receiver
) -> None:
    from graphql import GraphQLInputObjectType
    from tests.graphql.test_mutations_type_matrix import (
        _NOT_WRITABLE_AS_SERVED,
        _non_finite,
        _plain,
    )

    hook = {"type": "webhook", "url": receiver.url, "timeout": 5}
    dispatcher = await cells.dispatcher(
        [{"name": "new", "entity": "Cell", "on": ["insert"], "actions": [hook]}]
    )
    try:
        first = (await cells.served())[decimal.Decimal(1)]
        create = cells.runner.engine.graphql_schema.get_type("CellCreateInput")
        assert isinstance(create, GraphQLInputObjectType)
        inputs = {
            name: _plain(first[name])
            for name in create.fields
            if name in first
            and not _non_finite(first[name])
            and name not in _NOT_WRITABLE_AS_SERVED[cells.dialect]
        }
        inputs["id"] = 1000
        kind, body = await cells.runner.raw(
            "mutation($i: CellCreateInput!) { createCell(input: $i) { id } }", {"i": inputs}
        )
        assert kind == "data", body
        served = (await cells.served())[decimal.Decimal(1000)]
        while await dispatcher.run_once():
            pass
    finally:
        await dispatcher.close()
    [got] = [_exact(r.body) for r in receiver.received]
    assert got["operation"] == "insert" and got["before"] is None
    assert set(got["changed_fields"]) == {n for n, v in got["after"].items() if v is not None}
    problems = _differences(got["after"], served, "insert after")
    assert not problems, "\n".join(problems)


async def test_ordering_a_field_without_order_is_refused_when_checked(cells: Cells) -> None:
    from quiver.observers.catalog import ObserverConfigError

    binary = {"postgresql": "bin", "mysql": "bl", "sqlite": "bl"}[cells.dialect]
    when = f"{JSON_FIELD[cells.dialect]} > 5 || {binary} <= 'AA==' || id == 1"
    hook = {"type": "log"}
    with pytest.raises(ObserverConfigError) as caught:
        await cells.dispatcher(
            [{"name": "o", "entity": "Cell", "on": ["update"], "when": when, "actions": [hook]}]
        )
    message = str(caught.value)
    assert f"Cell.{JSON_FIELD[cells.dialect]} has no order: > on it is never true" in message
    assert f"Cell.{binary} has no order: <= on it is never true" in message
    assert "observers[0] (o).when" in message and "compare it with == or !=" in message
    # Equality stays allowed.
    d = await cells.dispatcher(
        [
            {
                "name": "o",
                "entity": "Cell",
                "on": ["update"],
                "when": f"{binary} == 'AA=='",
                "actions": [hook],
            }
        ]
    )
    await d.close()


async def _null_rows(cells: Cells) -> tuple[set[int], set[int]]:
    """The rows whose ``j`` holds SQL NULL (the query's ``isNull``), and those holding the JSON
    value null (served as null too, but not selected by ``isNull``)."""
    served = await cells.served()
    data = await cells.runner.data("{ cells(where: {j: {isNull: true}}) { id } }")
    sql_null = {int(row["id"]) for row in data["cells"]}
    json_null = {int(k) for k, row in served.items() if row["j"] is None} - sql_null
    assert sql_null and json_null, (sql_null, json_null)
    return sql_null, json_null


async def test_a_json_null_is_null_in_the_event_document_and_sql_null_is_absent(
    cells: Cells, receiver: Receiver
) -> None:
    sql_null, json_null = await _null_rows(cells)
    hook = {"type": "webhook", "url": receiver.url, "timeout": 5}
    observers = [
        {"name": name, "entity": "Cell", "on": ["update"], "when": when, "actions": [hook]}
        for name, when in (("all", None), ("sql-null", "j == null"), ("a-value", "j != null"))
    ]
    await cells.update_every_row(observers)
    events = [_exact(r.body) for r in receiver.received]
    fired: dict[str, set[int]] = {"all": set(), "sql-null": set(), "a-value": set()}
    for event in events:
        fired[event["observer"]].add(int(event["key"]["id"]))
        if event["observer"] != "all":
            continue
        for image in (event["before"], event["after"]):
            if int(image["id"]) in sql_null:
                assert "j" not in image, image
            elif int(image["id"]) in json_null:
                assert "j" in image and image["j"] is None, image
            assert "__jsonNulls" not in image, image
    # conditions tell them apart as the query's isNull does
    assert fired["sql-null"] == sql_null
    assert fired["a-value"] == fired["all"] - sql_null
    assert json_null <= fired["a-value"]


async def test_writing_json_null_over_sql_null_and_back_is_a_change(
    cells: Cells, receiver: Receiver
) -> None:
    from quiver.observers.triggers import install_triggers

    sql_null, json_null = await _null_rows(cells)
    was_json, was_sql = min(json_null), min(sql_null)
    hook = {"type": "webhook", "url": receiver.url, "timeout": 5}
    observers = [{"name": "all", "entity": "Cell", "on": ["update"], "actions": [hook]}]
    engine = cells.runner.engine
    await install_triggers(engine.database, [engine.catalog.entities["Cell"]], "quiver_change_log")
    dispatcher = await cells.dispatcher(observers)
    try:
        # a mutation writes SQL NULL over the JSON null; plain SQL (a trigger logs it) writes
        # JSON null over SQL NULL
        await cells.runner.data(
            f"mutation {{ updateCell(id: {was_json}, set: {{j: null}}) {{ id }} }}"
        )
        cells.runner.db.query(f"UPDATE {cells.table} SET j = 'null' WHERE id = {was_sql}")
        while await dispatcher.run_once():
            pass
    finally:
        await dispatcher.close()
    events = {int(e["key"]["id"]): e for e in (_exact(r.body) for r in receiver.received)}
    assert sorted(events) == sorted([was_json, was_sql]), events
    assert events[was_json]["changed_fields"] == ["j"]
    assert events[was_json]["before"]["j"] is None and "j" not in events[was_json]["after"]
    assert events[was_sql]["changed_fields"] == ["j"]
    assert "j" not in events[was_sql]["before"] and events[was_sql]["after"]["j"] is None


async def test_an_image_logged_before_json_nulls_were_named_reads_its_nulls_as_sql_null(
    cells: Cells, receiver: Receiver
) -> None:
    hook = {"type": "webhook", "url": receiver.url, "timeout": 5}
    observers = [
        {"name": name, "entity": "Cell", "on": ["update"], "when": when, "actions": [hook]}
        for name, when in (("all", None), ("sql-null", "j == null"))
    ]
    dispatcher = await cells.dispatcher(observers)  # creates the change log
    try:
        # a row as earlier versions logged it: no __jsonNulls, whatever j held
        cells.runner.db.query(
            "INSERT INTO quiver_change_log (entity, entity_key, operation, before_image,"
            " after_image, changed_fields, transaction_id) VALUES ('Cell', '{\"id\": 2}',"
            ' \'update\', \'{"id": 2, "j": null, "t": "a"}\','
            ' \'{"id": 2, "j": null, "t": "b"}\', \'["t"]\', \'earlier\')'
        )
        while await dispatcher.run_once():
            pass
    finally:
        await dispatcher.close()
    events = {e["observer"]: e for e in (_exact(r.body) for r in receiver.received)}
    assert sorted(events) == ["all", "sql-null"]
    assert events["all"]["before"] == {"id": 2, "t": "a"}
    assert events["all"]["after"] == {"id": 2, "t": "b"}


async def test_a_row_inserted_with_a_json_null_was_given_that_field(
    cells: Cells, receiver: Receiver
) -> None:
    from quiver.observers.triggers import install_triggers

    hook = {"type": "webhook", "url": receiver.url, "timeout": 5}
    observers = [{"name": "new", "entity": "Cell", "on": ["insert"], "actions": [hook]}]
    engine = cells.runner.engine
    await install_triggers(engine.database, [engine.catalog.entities["Cell"]], "quiver_change_log")
    dispatcher = await cells.dispatcher(observers)
    try:
        cells.runner.db.query(f"INSERT INTO {cells.table} (id, j) VALUES (999, 'null')")
        while await dispatcher.run_once():
            pass
    finally:
        await dispatcher.close()
    [event] = [_exact(r.body) for r in receiver.received]
    assert "j" in event["changed_fields"] and "jb" not in event["changed_fields"], event
    assert "j" in event["after"] and event["after"]["j"] is None
