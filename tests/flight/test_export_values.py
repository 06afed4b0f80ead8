"""Filter values of every type meet their column's type before any SQL runs (all dialects)."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow.flight as flight
import pytest

from tests.flight.conftest import Served


def read(client: flight.FlightClient, ticket: str | dict[str, Any]) -> Any:
    raw = orjson.dumps(ticket) if isinstance(ticket, dict) else ticket.encode()
    return client.do_get(flight.Ticket(raw)).read_all()


#: PostgreSQL's numeric takes NaN (refused by the other databases' decimals)
NAN_PRICE = {"export": {"table": "Track", "where": {"unitPrice": {"gt": "NaN"}}}}
HOSTILE = [
    "export:Track:milliseconds>1 OR 1=1:trackId",
    "export:Track:milliseconds>1e999:trackId",
    "export:Track:unitPrice>0.99'); DROP TABLE track; --:trackId",
    "export:Invoice:invoiceDate>=2011-13-45T00:00:00Z:invoiceId",
    "export:Invoice:invoiceDate>=2011-01-01' OR '1'='1:invoiceId",
    "export:Invoice:invoiceDate>=yesterday:invoiceId",
    {"export": {"table": "Track", "where": {"trackId": {"in": [1, "2 OR 1=1"]}}}},
    {"export": {"table": "Track", "where": {"trackId": {"in": "1,2"}}}},
    NAN_PRICE,
    {"export": {"table": "Track", "where": {"name": {"eq": {"$ne": 1}}}}},
    {"export": {"table": "Track", "where": {"name": {"in": [["nested"]]}}}},
    {"export": {"table": "Invoice", "where": {"invoiceDate": {"gt": 20110101}}}},
    {"export": {"table": "Track", "where": {"unitPrice": {"gt": "abc"}}}},
    {"export": {"table": "Track", "where": {"unitPrice": {"gt": "0.99' OR '1'='1"}}}},
    {"export": {"table": "Track", "where": {"bytes": {"gt": "1 OR 1=1"}}}},
    {"export": {"table": "Track", "where": {"bytes": {"in": [1.5]}}}},
    {"export": {"table": "Invoice", "where": {"invoiceDate": {"in": ["2011-01-01", "x"]}}}},
]


@pytest.mark.parametrize("ticket", HOSTILE, ids=range(len(HOSTILE)))
def test_a_value_not_of_its_columns_type_is_a_clear_ticket_error(
    served: Served, ticket: str | dict[str, Any]
) -> None:
    client = served.client()
    try:
        if ticket == NAN_PRICE and served.db.dialect == "postgresql":
            # PostgreSQL's numeric holds NaN, greater than every number: nothing is greater
            assert read(client, ticket).num_rows == 0
            return
        with pytest.raises(flight.FlightServerError) as caught:
            read(client, ticket)
        message = str(caught.value)
        assert "INVALID_TICKET" in message, message
        assert "Traceback" not in message
        assert read(client, "export:Genre::name").num_rows > 0
    finally:
        client.close()


def test_a_nul_in_a_filter_value_is_refused_clearly(
    served: Served,
) -> None:
    client = served.client()
    try:
        ticket = {"export": {"table": "Genre", "where": {"name": {"eq": "Rock\x00"}}}}
        with pytest.raises(flight.FlightServerError, match="NUL character") as caught:
            read(client, ticket)
        assert "INVALID_TICKET" in str(caught.value)
        assert read(client, "export:Genre:name=Rock:name").num_rows == 1
    finally:
        client.close()


def test_a_lone_surrogate_escape_is_a_clear_ticket_error(served: Served) -> None:
    client = served.client()
    try:
        raw = b'{"export": {"table": "Genre", "where": {"name": {"eq": "\\ud800"}}}}'
        with pytest.raises(flight.FlightServerError) as caught:
            client.do_get(flight.Ticket(raw)).read_all()
        assert "INVALID_TICKET" in str(caught.value)
        assert "Traceback" not in str(caught.value)
    finally:
        client.close()


@pytest.mark.parametrize("value", ["\\'" * 12_000, "ü'𝄞\\\"" * 4_000, "Rock"])
def test_long_and_quote_heavy_values_compare_as_themselves(served: Served, value: str) -> None:
    client = served.client()
    try:
        ticket = {"export": {"table": "Genre", "where": {"name": {"in": [value, "Jazz"]}}}}
        names = sorted(read(client, ticket).column("name").to_pylist())
        assert names == sorted({"Jazz", value} & {"Jazz", "Rock"})
    finally:
        client.close()
