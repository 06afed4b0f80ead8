"""``quiver.flight.connect``: a pyarrow Flight client for a Quiver server, with the key and the
TLS files in one call, and a ``read`` that turns a ticket into a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight

__all__ = ["QuiverFlightClient", "connect"]


class QuiverFlightClient:
    """A Flight client whose calls carry the API key; ``client.flight`` is pyarrow's own."""

    def __init__(self, client: flight.FlightClient, headers: list[tuple[bytes, bytes]]) -> None:
        self.flight = client
        self.options = flight.FlightCallOptions(headers=headers)

    def reader(self, ticket: str | bytes | dict[str, Any]) -> flight.FlightStreamReader:
        """A stream of the ticket's batches (JSON dict, JSON text, or a compact form)."""
        return self.flight.do_get(flight.Ticket(_ticket_bytes(ticket)), self.options)

    def read(self, ticket: str | bytes | dict[str, Any]) -> pa.Table:
        """The ticket's whole result as one table."""
        return self.reader(ticket).read_all()

    def export(
        self, table: str, *, where: dict[str, Any] | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        body: dict[str, Any] = {"table": table}
        if where:
            body["where"] = where
        if columns:
            body["columns"] = columns
        return self.read({"export": body})

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> pa.Table:
        return self.read({"graphql": {"query": query, "variables": variables or {}}})

    def events(
        self, entity: str, since: str, *, follow: bool = False, images: str = "struct"
    ) -> flight.FlightStreamReader:
        """The change events of ``entity`` since the ISO time ``since``; with ``follow`` the
        stream goes on with new ones until ``reader.cancel()``."""
        body: dict[str, Any] = {"entity": entity, "since": since}
        if follow:
            body["follow"] = True
        if images != "struct":
            body["images"] = images
        return self.reader({"observer_events": body})

    def tables(self) -> list[flight.FlightInfo]:
        """The exportable tables (ListFlights' path descriptors)."""
        return [i for i in self.flight.list_flights(options=self.options) if i.descriptor.path]

    def close(self) -> None:
        self.flight.close()

    def __enter__(self) -> QuiverFlightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ticket_bytes(ticket: str | bytes | dict[str, Any]) -> bytes:
    if isinstance(ticket, dict):
        return orjson.dumps(ticket)
    return ticket.encode() if isinstance(ticket, str) else ticket


def connect(
    location: str = "grpc://127.0.0.1:8815",
    *,
    api_key: str | None = None,
    tls_root_certs: str | Path | None = None,
    cert_chain: str | Path | None = None,
    private_key: str | Path | None = None,
) -> QuiverFlightClient:
    """A client of the Quiver Flight server at ``location`` (``grpc+tls://`` for TLS).

    ``api_key`` is sent as ``Authorization: Bearer``; ``tls_root_certs`` trusts the server's
    CA; ``cert_chain`` and ``private_key`` present a client certificate (mutual TLS).
    """
    kwargs: dict[str, Any] = {}
    if tls_root_certs is not None:
        kwargs["tls_root_certs"] = Path(tls_root_certs).read_bytes()
    if cert_chain is not None:
        kwargs["cert_chain"] = Path(cert_chain).read_bytes()
    if private_key is not None:
        kwargs["private_key"] = Path(private_key).read_bytes()
    client = flight.FlightClient(location, **kwargs)
    headers = [(b"authorization", f"Bearer {api_key}".encode())] if api_key else []
    return QuiverFlightClient(client, headers)
