"""PostgreSQL runs the cheap statements of one text that wait while another of it runs as one
statement: each request still gets its own answer, its own error, its own time limit, and one
that goes away leaves the others answered."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import asyncpg
import pytest

from quiver.sql.database import (
    DatabaseError,
    StatementTimeoutError,
    _Postgres,
    open_database,
)
from quiver.sql.dialects import dialect_for
from quiver.sql.fragment import Slot, compile_split, ident, param, sql

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Sleeps $1 seconds and answers $2.
SLEEP = "SELECT to_json((pg_sleep($1::float8) IS NULL)::int * 0 + $2::int)"


def _pieces(text: str) -> list[str]:
    """``text`` cut at its placeholders (these texts hold no ``$`` elsewhere)."""
    return re.split(r"\$\d+", text)


def _coalesced_forms(database: Any, text: str) -> set[int]:
    """How many requests the coalesced statements of ``text`` ran together, so far."""
    group = database._coalesced.get(text)
    return set(group.statements) if group is not None else set()


async def test_waiting_statements_run_as_one_and_each_gets_its_own_answer(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, pool_max=4, coalesce_max=4)
    text = "SELECT to_json(ARRAY[$1::int * 2, $2::int])"
    pieces = ["SELECT to_json(ARRAY[", "::int * 2, ", "::int])"]
    try:
        answers = await asyncio.gather(
            *(database.fetch_json(text, [i, -i], cheap=True, pieces=pieces) for i in range(11))
        )
        assert answers == [f"[{2 * i},{-i}]".encode() for i in range(11)]
        # asked in one turn of the event loop: the first ran with the three next, the seven
        # that waited meanwhile in statements of at most four
        assert _coalesced_forms(database, text) == {4, 3}
    finally:
        await database.close()


async def test_no_row_and_null_answer_none_as_alone(fresh_postgresql: str) -> None:
    database = await open_database(fresh_postgresql, coalesce_max=8)
    text = "SELECT to_json(x) FROM (VALUES (1, 'one'), (2, NULL)) AS v(k, x) WHERE k = $1"
    pieces = [text.split("$1")[0], ""]
    try:
        keys = [1, 2, 3, 1, 3, 2]
        alone = [await database.fetch_json(text, [k], cheap=True) for k in keys]
        assert alone == [b'"one"', None, None, b'"one"', None, None]
        together = await asyncio.gather(
            *(database.fetch_json(text, [k], cheap=True, pieces=pieces) for k in keys)
        )
        assert together == alone
        assert _coalesced_forms(database, text) == {6}
    finally:
        await database.close()


async def test_quoted_names_and_string_literals_keep_their_dollar_signs(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, coalesce_max=8)
    dialect = dialect_for("postgresql")
    frag = sql(
        "SELECT json_build_array('$1 ''$2''', ",
        param(Slot(path=("v",))),
        "::text, s.",
        ident("q$1"),
        ") FROM (SELECT 5 AS ",
        ident("q$1"),
        ") s",
    )
    text, slots, pieces = compile_split(frag, dialect)
    assert [len(slots), len(pieces)] == [1, 2]
    assert (pieces[0] + "$1" + pieces[1]) == text
    try:
        values = ["a", "$1", "'$2'", "b"]
        together = await asyncio.gather(
            *(database.fetch_json(text, [v], cheap=True, pieces=pieces) for v in values)
        )
        alone = [await database.fetch_json(text, [v], cheap=True) for v in values]
        assert together == alone
        assert together[1] == b'["$1 \'$2\'", "$1", 5]'
        assert _coalesced_forms(database, text) == {4}
    finally:
        await database.close()


async def test_a_value_one_request_cannot_use_fails_only_that_request(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, coalesce_max=8)
    assert isinstance(database, _Postgres)  # PostgreSQL's, which coalesces
    # the first waits on the server, the rest queue behind it and run as one (which fails)
    text = "SELECT to_json(($1::text)::int + (pg_sleep($2) IS NULL)::int * 0)"
    pieces = _pieces(text)
    try:
        results = await asyncio.gather(
            *(
                database.fetch_json(text, [v, 0.2 if i == 0 else 0.0], cheap=True, pieces=pieces)
                for i, v in enumerate(["1", "2", "x", "4", "5"])
            ),
            return_exceptions=True,
        )
        assert results[:2] == [b"1", b"2"]
        assert results[3:] == [b"4", b"5"]
        assert isinstance(results[2], DatabaseError)
        assert "invalid input syntax for type integer" in str(results[2])
        assert not database._coalesced[text].broken  # the next ones are coalesced again
    finally:
        await database.close()


async def test_a_value_the_driver_cannot_send_fails_only_that_request(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, coalesce_max=8)
    text = "SELECT to_json($1::int + (pg_sleep($2) IS NULL)::int * 0)"
    pieces = _pieces(text)
    try:
        results = await asyncio.gather(
            *(
                database.fetch_json(text, [v, 0.2 if i == 0 else 0.0], cheap=True, pieces=pieces)
                for i, v in enumerate([1, 2, 2**40, 4])
            ),
            return_exceptions=True,
        )
        assert [results[0], results[1], results[3]] == [b"1", b"2", b"4"]
        with pytest.raises(DatabaseError) as alone:
            await database.fetch_json(text, [2**40, 0.0], cheap=True)
        assert type(results[2]) is type(alone.value)
        assert str(results[2]) == str(alone.value)
    finally:
        await database.close()


async def test_each_statement_of_a_coalesced_one_keeps_its_time_limit(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, statement_timeout_ms=600, coalesce_max=8)
    pieces = _pieces(SLEEP)
    try:
        started = time.monotonic()
        # together they would run past 600 ms; alone only the 5 s one does
        results = await asyncio.gather(
            *(
                database.fetch_json(SLEEP, [s, i], cheap=True, pieces=pieces)
                for i, s in enumerate([0.2, 0.25, 0.25, 5.0, 0.25])
            ),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        assert [results[i] for i in (0, 1, 2, 4)] == [b"0", b"1", b"2", b"4"]
        assert isinstance(results[3], StatementTimeoutError)
        # the slow one failed within its own limit (the client's deadline: 0.76 s), not after
        # a coalesced statement's limit and then its own
        assert elapsed < 1.2
    finally:
        await database.close()


async def test_a_slow_statement_does_not_hold_back_the_others_of_its_text(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, coalesce_max=8)
    pieces = _pieces(SLEEP)
    try:
        slow = asyncio.ensure_future(
            database.fetch_json(SLEEP, [2.0, 0], cheap=True, pieces=pieces)
        )
        await asyncio.sleep(0.1)  # the slow one runs alone
        started = time.monotonic()
        quick = await asyncio.gather(
            *(database.fetch_json(SLEEP, [0.0, i], cheap=True, pieces=pieces) for i in (1, 2, 3))
        )
        waited = time.monotonic() - started
        assert quick == [b"1", b"2", b"3"]
        assert waited < 1.0, waited  # they did not wait for the slow one to return
        assert await slow == b"0"
    finally:
        await database.close()


async def test_a_request_that_goes_away_leaves_the_others_answered(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, coalesce_max=8)
    pieces = _pieces(SLEEP)
    try:
        tasks = [
            asyncio.ensure_future(
                database.fetch_json(SLEEP, [0.3 if i == 0 else 0.1, i], cheap=True, pieces=pieces)
            )
            for i in range(6)
        ]
        await asyncio.sleep(0.1)  # the first runs, the rest wait for it
        tasks[0].cancel()  # the one running
        tasks[2].cancel()  # one waiting
        done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        assert [done[i] for i in (1, 3, 4, 5)] == [b"1", b"3", b"4", b"5"]
        assert all(isinstance(done[i], asyncio.CancelledError) for i in (0, 2))
        # and the database goes on answering, alone and together
        again = await asyncio.gather(
            *(database.fetch_json(SLEEP, [0.0, i], cheap=True, pieces=pieces) for i in range(3))
        )
        assert again == [b"0", b"1", b"2"]
    finally:
        await asyncio.wait_for(database.close(), 10)


async def test_expensive_statements_and_a_pool_without_coalescing_run_alone(
    fresh_postgresql: str,
) -> None:
    text = "SELECT to_json($1::int)"
    pieces = ["SELECT to_json(", "::int)"]
    for coalesce_max, cheap in ((8, False), (1, True)):
        database = await open_database(fresh_postgresql, coalesce_max=coalesce_max)
        try:
            answers = await asyncio.gather(
                *(database.fetch_json(text, [i], cheap=cheap, pieces=pieces) for i in range(5))
            )
            assert answers == [str(i).encode() for i in range(5)]
            assert _coalesced_forms(database, text) == set()
        finally:
            await database.close()


async def test_a_statement_postgresql_cannot_coalesce_runs_alone_from_then_on(
    fresh_postgresql: str,
) -> None:
    admin = await asyncpg.connect(fresh_postgresql)
    await admin.execute("CREATE TABLE scratch (id int)")
    await admin.close()
    database = await open_database(fresh_postgresql, coalesce_max=8)
    assert isinstance(database, _Postgres)  # PostgreSQL's, which coalesces
    # a data-modifying WITH must be the statement's own: PostgreSQL refuses it in a subquery
    text = (
        "WITH gone AS (DELETE FROM scratch WHERE false RETURNING id)"
        " SELECT to_json($1::int + (pg_sleep($2) IS NULL)::int * 0)"
    )
    try:
        for sleep in (0.2, 0.0):
            answers = await asyncio.gather(
                *(
                    database.fetch_json(text, [n, sleep], cheap=True, pieces=_pieces(text))
                    for n in (1, 2, 3)
                )
            )
            assert answers == [b"1", b"2", b"3"]
            assert database._coalesced[text].broken
    finally:
        await database.close()


async def test_a_request_asked_alone_runs_alone(fresh_postgresql: str) -> None:
    database = await open_database(fresh_postgresql, coalesce_max=8)
    text = "SELECT to_json($1::int + 1)"
    try:
        for i in range(3):
            answer = await database.fetch_json(text, [i], cheap=True, pieces=_pieces(text))
            assert answer == str(i + 1).encode()
        assert _coalesced_forms(database, text) == set()
    finally:
        await database.close()


async def test_statements_with_many_values_are_coalesced_only_as_many_as_one_statement_takes(
    fresh_postgresql: str,
) -> None:
    """A statement takes at most 32,767 values: requests of 5,000 values each run six at a
    time, and every one is answered."""
    database = await open_database(fresh_postgresql, coalesce_max=8)
    n = 5000
    text = "SELECT to_json((ARRAY[" + ", ".join(f"${i + 1}::int" for i in range(n)) + "])[1])"
    pieces = _pieces(text)
    try:
        answers = await asyncio.gather(
            *(
                database.fetch_json(text, [k] + [0] * (n - 1), cheap=True, pieces=pieces)
                for k in range(10)
            )
        )
        assert answers == [str(k).encode() for k in range(10)]
        forms = _coalesced_forms(database, text)
        assert forms and max(forms) <= 32767 // n, forms
    finally:
        await database.close()
