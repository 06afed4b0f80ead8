"""What a client reads when a call fails: a precise Flight status, a message that says what
is wrong and how to fix it, and never a traceback, a server path or the database's address."""

from __future__ import annotations

import orjson
import pyarrow.flight as flight
import pytest

from tests.conftest import DIALECTS
from tests.flight.conftest import reflect, start
from tests.flight.test_load import TABLE, Db


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_database_error_names_the_database_without_its_address(
    request: pytest.FixtureRequest, dialect: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A table dropped after the server started: the database's error used to name its URL
    (host, user and database name, or the SQLite file's path) as where it happened."""
    db = Db(dialect, request.getfixturevalue(f"fresh_{dialect}"))
    db.run(TABLE[dialect])
    handle = start(db.url, reflect(db.url))
    db.run("DROP TABLE reading")
    client = flight.FlightClient(handle.location)
    try:
        with pytest.raises(flight.FlightError) as caught:
            client.do_get(flight.Ticket(b"export:Reading::")).read_all()
    finally:
        client.close()
        handle.stop()
    message = str(caught.value)
    info = orjson.loads(caught.value.extra_info)
    assert "database: database error while starting an export" in message, message
    assert [e["where"] for e in info["errors"]] == ["database"]
    # The server's operator still reads which database failed.
    logged = [r.getMessage() for r in caplog.records if r.name == "quiver.flight"]
    assert any("database error while starting an export" in m and "://" in m for m in logged)
    for said in (message, caught.value.extra_info.decode()):
        assert "://" not in said and "Traceback" not in said, said
        assert dialect != "sqlite" or db.url.split("///")[-1] not in said, said
