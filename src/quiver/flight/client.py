"""``quiver.flight.connect``: a pyarrow Flight client for a Quiver server, with the key and the
TLS files in one call, a ``read`` that turns a ticket into a table, and a ``read_parallel``
that reads every endpoint of a ticket's FlightInfo at once (a partitioned export)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
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

    def info(self, ticket: str | bytes | dict[str, Any]) -> flight.FlightInfo:
        """GetFlightInfo of the ticket: its schema and endpoints (several for an export asking
        for ``partitions``)."""
        descriptor = flight.FlightDescriptor.for_command(_ticket_bytes(ticket))
        return self.flight.get_flight_info(descriptor, self.options)

    def read_info(self, info: flight.FlightInfo, *, max_threads: int | None = None) -> pa.Table:
        """Every endpoint of ``info`` read at the same time, one thread each (at most
        ``max_threads``), as one table: the endpoints' rows one after the other, in endpoint
        order. Endpoints are read through this client's connection (a Quiver server's
        endpoints are all its own). A failing endpoint stops the others' streams and its
        error is raised."""
        endpoints = list(info.endpoints)
        if not endpoints:
            return info.schema.empty_table()
        if len(endpoints) == 1:
            return self.flight.do_get(endpoints[0].ticket, self.options).read_all()
        #: the first endpoint's failure: the other threads stop reading when it is set
        failures: list[BaseException] = []
        failed = threading.Event()

        def read(endpoint: flight.FlightEndpoint) -> pa.Table | None:
            try:
                reader = self.flight.do_get(endpoint.ticket, self.options)
                batches = []
                for chunk in reader:
                    if failed.is_set():
                        # Cancelled by the thread reading it: pyarrow turns a read that
                        # another thread cancels into an interrupt of the main thread.
                        reader.cancel()
                        return None
                    batches.append(chunk.data)
                return pa.Table.from_batches(batches, schema=reader.schema)
            except Exception as exc:
                if not failed.is_set():
                    failures.append(exc)
                    failed.set()
                return None

        threads = min(len(endpoints), max_threads or len(endpoints))
        with ThreadPoolExecutor(threads, thread_name_prefix="quiver-flight-read") as pool:
            tables = list(pool.map(read, endpoints))
        if failures:
            raise failures[0]
        return pa.concat_tables([t for t in tables if t is not None])

    def read_parallel(
        self, ticket: str | bytes | dict[str, Any], *, max_threads: int | None = None
    ) -> pa.Table:
        """The ticket's whole result as one table, its endpoints read in parallel (see
        :meth:`read_info`); rows are not in any order across endpoints."""
        return self.read_info(self.info(ticket), max_threads=max_threads)

    def export(
        self,
        table: str,
        *,
        where: dict[str, Any] | None = None,
        columns: list[str] | None = None,
        partitions: int | None = None,
    ) -> pa.Table:
        """A table's rows (those ``where`` keeps, its ``columns``); with ``partitions`` read
        as up to that many key ranges in parallel, in no order."""
        body: dict[str, Any] = {"table": table}
        if where:
            body["where"] = where
        if columns:
            body["columns"] = columns
        if partitions is not None:
            body["partitions"] = partitions
            return self.read_parallel({"export": body})
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
