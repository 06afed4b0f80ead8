"""The Arrow Flight server: tickets in, Arrow streams out (see docs/flight.md).

RPCs: ListFlights (every exportable table with its schema, then each entity's change
events), GetFlightInfo and GetSchema (the schema of a ticket or a ``[table]`` path without
running it), DoGet (export, GraphQL and observer_events tickets), DoPut (bulk load into a
table in one transaction; only with ``flight.writable``), DoAction / ListActions
(``list-tables``, ``cancel``). Every call passes the authentication hook of
:mod:`quiver.auth` through :class:`AuthMiddlewareFactory`; a client may trade Basic
credentials (any name, the key as password) for a Bearer token in the handshake.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import functools
import inspect
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight

from graphql import GraphQLSchema
from quiver.auth import ANONYMOUS, AuthenticationError, Authenticator, Principal, authenticator_for
from quiver.auth.permissions import AccessDeniedError, grants_for
from quiver.config.settings import QuiverSettings
from quiver.flight import flight_sql
from quiver.flight.arrow_types import arrow_schema, conform_batch
from quiver.flight.events import EventScanner, EventsPlan, plan_events, stream_events
from quiver.flight.export import ExportPlan, find_entity, plan_export, stream_export
from quiver.flight.graphql_arrow import ColumnarQuery, GraphQLArrow
from quiver.flight.load import load_table
from quiver.flight.partitions import partition_export
from quiver.flight.pool import ConnectionPool, flight_dialect
from quiver.flight.tickets import (
    EventsTicket,
    ExportTicket,
    GraphQLTicket,
    Ticket,
    TicketError,
    parse_ticket,
)
from quiver.graphql.access import Access
from quiver.graphql.typesystem import build_graphql_schema
from quiver.runtime.errors import ConfigError, ErrorDetail, QuiverError, RetryableError
from quiver.runtime.listen import bind_problem
from quiver.schema.catalog import Catalog, build_catalog
from quiver.schema.ir import Schema
from quiver.sql.database import StatementTimeoutError
from quiver.sql.dialects import dialect_for
from quiver.sql.url import parse_database_url

__all__ = ["AuthMiddlewareFactory", "FlightHandle", "QuiverFlightServer", "start_flight_server"]

log = logging.getLogger("quiver.flight")

#: The start time of the events flights ListFlights lists (every change kept).
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Plans kept (one per distinct export or columnar GraphQL ticket).
_PLAN_CACHE_SIZE = 256


@dataclass(frozen=True)
class _View:
    """What one role sees: its catalog and GraphQL schema, and its row filters (None: all)."""

    catalog: Catalog
    graphql_schema: GraphQLSchema
    access: Access | None


class _AuthMiddleware(flight.ServerMiddleware):  # type: ignore[misc]
    def __init__(self, principal: Principal, answer_bearer: bool) -> None:
        self.principal = principal
        self._answer_bearer = answer_bearer

    def sending_headers(self) -> dict[str, str]:
        if self._answer_bearer and self.principal.token:
            return {"authorization": f"Bearer {self.principal.token}"}
        return {}


class _Handshake(flight.ServerAuthHandler):  # type: ignore[misc]
    """Answers the Handshake RPC; the credentials it carries were checked by the middleware,
    which sends the Bearer token back."""

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        return None

    def is_valid(self, token: bytes) -> bytes:
        return b""


class AuthMiddlewareFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Runs the shared authentication hook on every call's ``authorization`` header."""

    def __init__(self, auth: Authenticator) -> None:
        super().__init__()
        self.auth = auth

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> _AuthMiddleware:
        values = headers.get("authorization") or headers.get("Authorization") or []
        header = values[0] if values else None
        try:
            principal = self.auth.authenticate(header)
        except AuthenticationError as err:
            raise flight.FlightUnauthenticatedError(_text(err)) from None
        except Exception as exc:
            # An authenticator that fails otherwise (a plugged-in one): raised here, its error
            # would reach the client as UNKNOWN with the server's traceback.
            raise _translated(exc, "authentication") from None
        basic = bool(header and header.lower().startswith("basic "))
        return _AuthMiddleware(principal, answer_bearer=basic)


#: The start of a database URL: where a database error happened, as the server's log says it.
_DATABASE_URL = re.compile(r"(postgresql|mysql|sqlite)://", re.IGNORECASE)


def _public(details: list[ErrorDetail]) -> list[ErrorDetail]:
    """``details`` as a client may read them: a database error names the database's URL (its
    host, user and name, or the SQLite file's path) as where it happened, which is for the
    server's operator, not for a client; the client reads "database"."""
    return [
        dataclasses.replace(d, where="database") if _DATABASE_URL.match(d.where) else d
        for d in details
    ]


def _text(err: QuiverError) -> str:
    return "; ".join(d.render() for d in _public(err.details)) or str(err)


def _client_error(err: QuiverError) -> Exception:
    """The Flight error a client sees for a Quiver error: its message, where, and fix (and the
    same as JSON in ``extra_info``), never a traceback nor the database's address (which the
    server's log has)."""
    if any(_DATABASE_URL.match(d.where) for d in err.details):
        log.warning("a call failed in the database: %s", err)
    code = "INVALID_TICKET" if isinstance(err, TicketError | ConfigError) else err.code
    if isinstance(err, RetryableError):
        code = "UNAVAILABLE"
    if isinstance(err, AccessDeniedError):
        code = "PERMISSION_DENIED"
    info = orjson.dumps(
        {
            "code": code,
            "errors": [
                {"message": d.message, "where": d.where, "fix": d.fix} for d in _public(err.details)
            ],
        }
    )
    error: Exception
    if isinstance(err, RetryableError):
        error = flight.FlightUnavailableError(f"{code}: {_text(err)}", info)
    elif isinstance(err, StatementTimeoutError):
        error = flight.FlightTimedOutError(f"{code}: {_text(err)}", info)
    elif isinstance(err, AccessDeniedError):
        error = flight.FlightUnauthorizedError(f"{code}: {_text(err)}", info)
    else:
        error = flight.FlightServerError(f"{code}: {_text(err)}", info)
    return error


def _translated(exc: Exception, name: str) -> Exception:
    """The Flight error a client sees for a failure of the call ``name``: a Quiver error's
    own, a Flight error as it is, anything else INTERNAL with a short message and a reference
    to the server's log, which has the error and its traceback (its text may name the server's
    files, its database or the SQL it ran: none of it is the client's to read)."""
    if isinstance(exc, QuiverError):
        return _client_error(exc)
    if isinstance(exc, flight.FlightError):
        passed: Exception = exc
        return passed
    reference = secrets.token_hex(4)
    log.error("unexpected failure in %s (reference %s)", name, reference, exc_info=exc)
    message = f"{name} failed on the server (reference {reference})"
    fix = "retry; if it fails again, give the reference to the server's operator: its log says why"
    info = orjson.dumps(
        {"code": "INTERNAL", "errors": [{"message": message, "where": name, "fix": fix}]}
    )
    internal: Exception = flight.FlightInternalError(f"INTERNAL: {message} ({fix})", info)
    return internal


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """An RPC whose unexpected failures reach the client as one line, never a traceback (the
    traceback goes to the log)."""

    def translated(exc: Exception) -> Exception:
        return _translated(exc, method.__name__)

    def iterate(items: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from items
        except Exception as exc:
            raise translated(exc) from None

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = method(*args, **kwargs)
        except Exception as exc:
            raise translated(exc) from None
        return iterate(result) if inspect.isgenerator(result) else result

    return call


def _read_only(command: str) -> Exception:
    """The refusal of a Flight SQL update or bulk ingestion: ``PERMISSION_DENIED`` (whatever
    the key), saying what to use instead."""
    return _client_error(
        AccessDeniedError.one(
            f"Flight SQL is read-only here: {command} is not served",
            "Flight SQL",
            "send SELECT queries; load rows with DoPut of a path descriptor ['<Type>'] (with "
            "flight.writable: true), write through GraphQL mutations",
        )
    )


def _invalid(message: str, where: str, fix: str) -> Exception:
    return _client_error(TicketError.one(message, where, fix))


class QuiverFlightServer(flight.FlightServerBase):  # type: ignore[misc]
    """Serves one catalog's tables and queries from one database."""

    def __init__(
        self,
        schema: Schema,
        settings: QuiverSettings,
        *,
        auth: Authenticator | None = None,
        graphql: GraphQLArrow | None = None,
    ) -> None:
        fs = settings.flight
        scheme = "grpc+tls" if fs.tls_cert else "grpc+tcp"
        location = f"{scheme}://{fs.host}:{fs.port}"
        tls: dict[str, Any] = {}
        if fs.tls_cert:
            tls["tls_certificates"] = [
                (_read(fs.tls_cert, "tls_cert"), _read(fs.tls_key, "tls_key"))
            ]
            if fs.tls_client_ca:
                tls["verify_client"] = True
                tls["root_certificates"] = _read(fs.tls_client_ca, "tls_client_ca")
        self.auth = auth or authenticator_for(settings.auth)
        # What calls read is set before the server starts listening (in super().__init__).
        self.settings = settings
        self.schema = schema
        self.catalog = build_catalog(schema)
        self.graphql_schema = build_graphql_schema(self.catalog)
        url = parse_database_url(settings.database.url)
        self.dialect = flight_dialect(dialect_for(url.dialect))
        self.batch_rows = fs.batch_rows
        self._graphql = graphql
        self._lock = threading.Lock()
        #: ticket -> the stop signals of the streams of it now running (the cancel action)
        #: The stops of the running streams, by the caller that runs them and their ticket.
        self._running: dict[tuple[Principal, bytes], set[threading.Event]] = {}
        self._closing = False  # shutdown() has stopped the running streams
        self._full = _View(self.catalog, self.graphql_schema, None)
        #: (role, claims) -> what a principal with them sees
        self._views: dict[Any, _View] = {}
        super().__init__(
            location,
            auth_handler=_Handshake(),
            middleware={"auth": AuthMiddlewareFactory(self.auth)},
            **tls,
        )
        self.location = (
            f"{scheme}://{'localhost' if fs.host in ('0.0.0.0', '::') else fs.host}:{self.port}"
        )
        self.pool = ConnectionPool(
            url,
            fs.pool_size,
            max_open=fs.max_connections,
            wait_s=fs.connection_timeout_ms / 1000,
        )
        #: (view, ticket as canonical JSON) -> its plan, the most recently used last
        self._plans: OrderedDict[tuple[int, bytes], ExportPlan | ColumnarQuery] = OrderedDict()

    # ----- permissions -----
    def _principal(self, context: Any) -> Principal:
        middleware = context.get_middleware("auth") if context is not None else None
        return middleware.principal if middleware is not None else ANONYMOUS

    def _view(self, context: Any) -> _View:
        """What the caller may see: the whole catalog, or its role's part of it."""
        principal = self._principal(context)
        key = principal.access_key
        with self._lock:
            view = self._views.get(key)
        if view is not None:
            return view
        grants = grants_for(self.settings.auth, principal.role, dict(principal.claims))
        if grants is None:
            view = self._full
        else:
            access = Access(grants, self.catalog, self.graphql_schema, self.dialect)
            catalog = build_catalog(grants.restrict(self.schema))
            view = _View(catalog, build_graphql_schema(catalog), access)
        with self._lock:
            # The view kept is the one every caller gets (plans are cached by its identity).
            return self._views.setdefault(key, view)

    # ----- tickets -----
    def _ticket(self, raw: bytes) -> Ticket:
        try:
            return parse_ticket(raw)
        except TicketError as err:
            raise _client_error(err) from None

    def _descriptor_ticket(self, descriptor: flight.FlightDescriptor) -> Ticket:
        if descriptor.descriptor_type == flight.DescriptorType.PATH:
            parts = [p.decode() if isinstance(p, bytes) else p for p in descriptor.path]
            if len(parts) != 1:
                raise _invalid(
                    "a path descriptor names one table",
                    "descriptor",
                    "send ['Track'], or a command descriptor holding a ticket",
                )
            return ExportTicket(parts[0])
        return self._ticket(descriptor.command)

    def _plan(self, ticket: ExportTicket, view: _View) -> ExportPlan:
        """The plan of ``ticket`` for ``view``, made once per distinct ticket and view (neither
        the catalog nor a role's grants change while the server runs); tickets that fail are
        not kept."""
        key = (id(view), ticket.to_json())
        with self._lock:
            known = self._plans.get(key)
            if isinstance(known, ExportPlan):
                self._plans.move_to_end(key)
                return known
        try:
            restrict = view.access.rows if view.access is not None else None
            plan = plan_export(view.catalog, view.graphql_schema, self.dialect, ticket, restrict)
        except QuiverError as err:
            raise _client_error(err) from None
        self._keep(key, plan)
        return plan

    def _columnar(self, ticket: GraphQLTicket, context: Any) -> ColumnarQuery | None:
        """A GraphQL ticket read as an export when its query allows (see
        :meth:`GraphQLArrow.columnar`), once per distinct ticket; None: the engine answers,
        as it does every ticket of a caller whose role has permissions."""
        view = self._view(context)
        if self._graphql is None or view.access is not None:
            return None
        key = (id(view), b"graphql " + ticket.to_json())
        with self._lock:
            known = self._plans.get(key)
            if isinstance(known, ColumnarQuery):
                self._plans.move_to_end(key)
                return known
        try:
            columnar = self._graphql.columnar(ticket, self._principal(context))
        except QuiverError as err:
            raise _client_error(err) from None
        if columnar is not None:
            self._keep(key, columnar)
        return columnar

    def _keep(self, key: tuple[int, bytes], plan: ExportPlan | ColumnarQuery) -> None:
        with self._lock:
            self._plans[key] = plan
            if len(self._plans) > _PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)

    def _events_plan(self, ticket: EventsTicket, view: _View) -> EventsPlan:
        if view.access is not None:
            # Change events carry whole rows (every column, before and after): a role whose
            # reads are filtered cannot be served them safely.
            raise _client_error(
                AccessDeniedError.one(
                    f"the role {view.access.grants.role!r} may not read change events",
                    "ticket observer_events",
                    "subscribe over GraphQL (WebSocket), which applies the role's permissions,"
                    " or use a key without a role",
                )
            )
        try:
            return plan_events(view.catalog, ticket)
        except QuiverError as err:
            raise _client_error(err) from None

    def _schema_of(self, ticket: Ticket, context: Any) -> pa.Schema:
        view = self._view(context)
        if isinstance(ticket, ExportTicket):
            return self._plan(ticket, view).schema
        if isinstance(ticket, EventsTicket):
            return self._events_plan(ticket, view).schema
        return self._graphql_answer(ticket, context, schema_only=True).schema

    def _graphql_answer(
        self, ticket: GraphQLTicket, context: Any, *, schema_only: bool = False
    ) -> Any:
        if self._graphql is None:
            raise _invalid(
                "GraphQL tickets are not served by this server",
                "ticket",
                "send an export ticket such as export:Track::name, or query the HTTP endpoint"
                " /graphql",
            )
        principal = self._principal(context)
        try:
            if schema_only:
                return flight.SchemaResult(self._graphql.schema(ticket, principal))
            return self._graphql.reader(ticket, principal)
        except QuiverError as err:
            raise _client_error(err) from None

    # ----- Flight SQL -----
    def _sql_command(self, raw: bytes) -> flight_sql.SqlCommand | None:
        try:
            return flight_sql.parse_command(raw)
        except QuiverError as err:
            raise _client_error(err) from None

    def _sql_export(self, query: str | None) -> ExportTicket:
        try:
            return flight_sql.sql_to_ticket(query or "")
        except QuiverError as err:
            raise _client_error(err) from None

    def _sql_result(self, command: flight_sql.SqlCommand, context: Any) -> pa.Table:
        """The answer of a catalog command (GetTables, GetSqlInfo, ...)."""
        from quiver import __version__

        name = command.name
        if name == "CommandGetCatalogs":
            return flight_sql.catalogs()
        if name == "CommandGetDbSchemas":
            return flight_sql.db_schemas(command)
        if name == "CommandGetTables":
            return flight_sql.tables(self._view(context).catalog, command)
        if name == "CommandGetTableTypes":
            return flight_sql.table_types()
        if name == "CommandGetSqlInfo":
            return flight_sql.sql_info(command, __version__)
        if name in ("CommandStatementUpdate", "CommandPreparedStatementUpdate"):
            raise _read_only(name)
        raise _invalid(
            f"the Flight SQL command {name} is not served",
            "Flight SQL",
            "statement queries, GetCatalogs, GetDbSchemas, GetTables, GetTableTypes and "
            "GetSqlInfo are",
        )

    def _prepared(self, handle: bytes, *, schema_only: bool = False) -> Ticket:
        """The ticket a prepared statement's handle runs (values bound), or only its schema."""
        try:
            if schema_only:
                ticket, _ = flight_sql.prepared_statement(handle)
                return flight_sql.statement_schema_ticket(ticket)
            return flight_sql.executed_ticket(handle)
        except QuiverError as err:
            raise _client_error(err) from None

    def _bind(
        self,
        command: flight_sql.SqlCommand,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
        context: Any,
    ) -> None:
        """DoPut of a prepared statement's parameters: answers the handle with them bound
        (checked against the filter now, so a bad value fails here)."""
        if command.name != "CommandPreparedStatementQuery":
            raise _read_only(command.name)
        try:
            handle, ticket = flight_sql.bind(command.raw(1), reader.read_all())
        except QuiverError as err:
            raise _client_error(err) from None
        ticket = self._database_values(ticket, context)
        if isinstance(ticket, ExportTicket):
            self._plan(ticket, self._view(context))
        writer.write(pa.py_buffer(flight_sql.put_prepared_result(handle)))

    def _database_values(self, ticket: Ticket, context: Any) -> Ticket:
        """A Flight SQL statement's ticket with its names and values as the export filter
        takes them (:func:`flight_sql.database_values`); a condition it cannot take is
        refused."""
        try:
            return flight_sql.database_values(ticket, self._view(context).catalog)
        except QuiverError as err:
            raise _client_error(err) from None

    def _sql_info(
        self,
        descriptor: flight.FlightDescriptor,
        command: flight_sql.SqlCommand,
        context: Any,
        *,
        schema_only: bool = False,
    ) -> flight.FlightInfo:
        if command.name in ("CommandStatementQuery", "CommandPreparedStatementQuery"):
            if command.name == "CommandStatementQuery":
                ticket: Ticket = self._sql_export(command.text(1))
                # A ? of a statement that is not prepared has no value to take: refused.
                ticket = self._prepared(ticket.to_json(), schema_only=schema_only)
            else:
                ticket = self._prepared(command.raw(1), schema_only=schema_only)
            ticket = self._database_values(ticket, context)
            schema = self._schema_of(ticket, context)
            # GetSchema answers from the catalog alone: splitting an export into partitions
            # reads the database (its key's bounds), which only GetFlightInfo needs.
            endpoints = (
                []
                if schema_only
                else [
                    flight.FlightEndpoint(flight_sql.statement_ticket(part.to_json()), [])
                    for part in self._partitions(ticket, context)
                ]
            )
        else:
            schema = self._sql_result(command, context).schema
            endpoints = [flight.FlightEndpoint(descriptor.command, [])]
        return flight.FlightInfo(schema, descriptor, endpoints, -1, -1)

    def _info(
        self, descriptor: flight.FlightDescriptor, ticket: Ticket, context: Any
    ) -> flight.FlightInfo:
        schema = self._schema_of(ticket, context)
        endpoints = [
            flight.FlightEndpoint(part.to_json(), [self.location])
            for part in self._partitions(ticket, context)
        ]
        return flight.FlightInfo(schema, descriptor, endpoints, -1, -1)

    def _partitions(self, ticket: Ticket, context: Any) -> list[Ticket]:
        """The tickets of ``ticket``'s endpoints: an export split into up to its
        ``partitions`` (or ``flight.partitions``, at most ``flight.max_partitions``) disjoint
        key ranges; any other ticket as it is."""
        if not isinstance(ticket, ExportTicket):
            return [ticket]
        fs = self.settings.flight
        count = min(
            fs.partitions if ticket.partitions is None else ticket.partitions, fs.max_partitions
        )
        view = self._view(context)
        restrict = view.access.rows if view.access is not None else None
        try:
            parts = partition_export(
                view.catalog,
                view.graphql_schema,
                self.dialect,
                self.pool,
                ticket,
                count,
                restrict,
            )
        except QuiverError as err:
            raise _client_error(err) from None
        return list(parts)

    # ----- RPCs -----
    @_guarded
    def list_flights(self, context: Any, criteria: bytes) -> Iterator[flight.FlightInfo]:
        """Every exportable table (a path descriptor), then every GraphQL query this server has
        run (a command descriptor holding its ``graphql:<hash>`` ticket). A caller whose role
        is restricted sees only the tables and fields it may read, no events flights, and only
        the queries that run for it."""
        view = self._view(context)
        principal = self._principal(context)
        for entity in view.catalog.entities.values():
            ticket = ExportTicket(entity.name)
            descriptor = flight.FlightDescriptor.for_path(entity.name)
            endpoint = flight.FlightEndpoint(ticket.to_json(), [self.location])
            yield flight.FlightInfo(arrow_schema(entity.fields), descriptor, [endpoint], -1, -1)
        for entity in view.catalog.entities.values() if view.access is None else ():
            events = EventsTicket(entity.name, _EPOCH)
            descriptor = flight.FlightDescriptor.for_command(events.to_json())
            endpoint = flight.FlightEndpoint(events.to_json(), [self.location])
            schema = plan_events(self.catalog, events).schema
            yield flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)
        if self._graphql is None:
            return
        for digest, query in self._graphql.persisted.items():
            persisted = f"graphql:{digest}".encode()
            try:
                schema = self._graphql.schema(GraphQLTicket(query), principal)
            except QuiverError:
                continue
            descriptor = flight.FlightDescriptor.for_command(persisted)
            endpoint = flight.FlightEndpoint(persisted, [self.location])
            yield flight.FlightInfo(schema, descriptor, [endpoint], -1, -1)

    @_guarded
    def get_flight_info(
        self, context: Any, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        if descriptor.descriptor_type == flight.DescriptorType.CMD:
            command = self._sql_command(descriptor.command)
            if command is not None:
                return self._sql_info(descriptor, command, context)
        return self._info(descriptor, self._descriptor_ticket(descriptor), context)

    @_guarded
    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        if descriptor.descriptor_type == flight.DescriptorType.CMD:
            command = self._sql_command(descriptor.command)
            if command is not None:
                info = self._sql_info(descriptor, command, context, schema_only=True)
                return flight.SchemaResult(info.schema)
        return flight.SchemaResult(self._schema_of(self._descriptor_ticket(descriptor), context))

    @_guarded
    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.FlightDataStream:
        raw = ticket.ticket
        command = self._sql_command(raw)
        if command is not None:
            if command.name != "TicketStatementQuery":
                return flight.RecordBatchStream(self._sql_result(command, context))
            raw = flight_sql.ticket_statement(command)
        parsed = self._ticket(raw)
        if isinstance(parsed, EventsTicket):
            return self._events(context, ticket.ticket, parsed)
        started = time.perf_counter()
        schema: pa.Schema | None = None
        if isinstance(parsed, GraphQLTicket):
            columnar = self._columnar(parsed, context)
            if columnar is None:
                return flight.RecordBatchStream(self._graphql_answer(parsed, context))
            plan, schema = columnar.plan, columnar.schema
        else:
            plan = self._plan(parsed, self._view(context))
        planned = time.perf_counter()
        reader = stream_export(plan, self.pool, self.batch_rows)
        try:
            first = reader.read_next_batch()
        except StopIteration:
            empty = pa.RecordBatchReader.from_batches(schema or plan.schema, [])
            return flight.RecordBatchStream(empty)
        except QuiverError as err:
            raise _client_error(err) from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "rows of %s: planned in %.2f ms, first batch (%d rows) read %.2f ms later",
                plan.entity.name,
                (planned - started) * 1000,
                first.num_rows,
                (time.perf_counter() - planned) * 1000,
            )
        running = (self._principal(context), ticket.ticket)
        return self._cancellable(running, first, reader, schema)

    def _events(self, context: Any, raw: bytes, ticket: EventsTicket) -> flight.GeneratorStream:
        """The change events of the ticket; a following stream ends when the client cancels
        the call (or a ``cancel`` action names its ticket)."""
        plan = self._events_plan(ticket, self._view(context))
        fs = self.settings.flight
        scanner = EventScanner(
            self.pool, self.dialect, self.settings.mutations.change_log_table, fs.events_window
        )
        try:
            scanner.start(ticket.since)
        except QuiverError as err:
            raise _client_error(err) from None
        stop = threading.Event()
        running = (self._principal(context), raw)
        with self._lock:
            if self._closing:
                stop.set()
            self._running.setdefault(running, set()).add(stop)

        def stopped() -> bool:
            return stop.is_set() or bool(context.is_cancelled())

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from stream_events(
                    plan, scanner, self.batch_rows, fs.events_poll_interval, stopped
                )
            except Exception as exc:
                # Raised from a generator stream, any other error would reach the client as
                # UNKNOWN with the server's traceback.
                raise _translated(exc, "do_get") from None
            finally:
                self._forget(running, stop)
            if self._closing and ticket.follow:
                raise flight.FlightUnavailableError(
                    "the server is shutting down: follow again from the last event's time"
                )

        return flight.GeneratorStream(plan.schema, batches())

    def _forget(self, running: tuple[Principal, bytes], stop: threading.Event) -> None:
        with self._lock:
            streams = self._running.get(running, set())
            streams.discard(stop)
            if not streams:
                self._running.pop(running, None)

    def _cancellable(
        self,
        running: tuple[Principal, bytes],
        first: pa.RecordBatch,
        rest: pa.RecordBatchReader,
        schema: pa.Schema | None = None,
    ) -> flight.GeneratorStream:
        """The stream with its first batch read ahead (a query that cannot start fails the call
        with its own error, not a broken stream), ended by a ``cancel`` action for its ticket
        from its caller (``running``: the caller and the ticket);
        with ``schema`` every batch is made to it (a GraphQL selection's types). A failure
        after the first batch (a stored value with no Arrow form) ends the stream with its own
        error: a Flight error raised by a generator stream reaches the client as it is, while
        one from a record batch reader would carry the server's traceback."""
        stop = threading.Event()
        with self._lock:
            self._running.setdefault(running, set()).add(stop)

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield first if schema is None else conform_batch(first, schema)
                for batch in rest:
                    if stop.is_set():
                        raise flight.FlightCancelledError("CANCELLED: the stream was cancelled")
                    yield batch if schema is None else conform_batch(batch, schema)
            except Exception as exc:
                raise _translated(exc, "do_get") from None
            finally:
                rest.close()
                self._forget(running, stop)

        return flight.GeneratorStream(schema or first.schema, batches())

    @_guarded
    def do_put(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        if descriptor.descriptor_type == flight.DescriptorType.CMD:
            command = self._sql_command(descriptor.command)
            if command is not None:
                self._bind(command, reader, writer, context)
                return
        if not self.settings.flight.writable:
            raise _client_error(
                AccessDeniedError.one(
                    "this server is read-only",
                    "DoPut",
                    "set flight.writable: true in quiver.yaml to accept bulk loads",
                )
            )
        view = self._view(context)
        if view.access is not None:
            raise _client_error(
                AccessDeniedError.one(
                    f"the role {view.access.grants.role!r} may not bulk load tables",
                    "DoPut",
                    "write through GraphQL mutations, which apply the role's permissions,"
                    " or use a key without a role",
                )
            )
        ticket = self._descriptor_ticket(descriptor)
        if not isinstance(ticket, ExportTicket):
            raise _invalid(
                "DoPut loads a table, not a query", "descriptor", "send a path such as ['Track']"
            )
        try:
            entity = find_entity(self.catalog, ticket.table)
            rows = load_table(entity, self.pool, reader.to_reader(), context.is_cancelled)
        except QuiverError as err:
            raise _client_error(err) from None
        writer.write(pa.py_buffer(orjson.dumps({"rows": rows})))

    def do_exchange(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        # Refused with a Flight error: pyarrow's own refusal (NotImplementedError) reaches the
        # client with no message and the server's Python traceback.
        raise _invalid(
            "DoExchange is not served",
            "DoExchange",
            "read a ticket with DoGet (GetFlightInfo gives its endpoints); load rows with DoPut",
        )

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [
            ("list-tables", "The exportable tables, their columns and Arrow types, as JSON."),
            ("cancel", "End the running streams of the ticket given as the body."),
            ("CreatePreparedStatement", "Flight SQL: prepare a SELECT (with ? parameters)."),
            ("ClosePreparedStatement", "Flight SQL: forget a prepared statement."),
        ]

    @_guarded
    def do_action(self, context: Any, action: flight.Action) -> Iterator[bytes]:
        if action.type == "CreatePreparedStatement":
            command = self._sql_command(action.body.to_pybytes())
            if command is None:
                raise _invalid(
                    "the action body is not a Flight SQL request",
                    "action CreatePreparedStatement",
                    "send an ActionCreatePreparedStatementRequest packed in a"
                    " google.protobuf.Any, as Flight SQL clients do",
                )
            ticket = self._sql_export(command.text(1))
            # The handle keeps the values as the SQL wrote them (they are read when it runs);
            # a condition the filter cannot take is refused now, before values are bound.
            ticket = flight_sql.column_names(ticket, self._view(context).catalog)
            self._database_values(ticket, context)
            unbound = flight_sql.statement_schema_ticket(ticket)
            schema = self._schema_of(self._database_values(unbound, context), context)
            try:
                parameters = flight_sql.parameter_schema(ticket, self._view(context).catalog)
            except QuiverError as err:
                raise _client_error(err) from None
            yield flight_sql.prepared_result(ticket.to_json(), schema, parameters)
            return
        if action.type == "ClosePreparedStatement":
            return
        if action.type == "cancel":
            # A caller ends its own streams only: another key's are not its to stop.
            running = (self._principal(context), action.body.to_pybytes())
            with self._lock:
                stops = list(self._running.get(running, ()))
            for stop in stops:
                stop.set()
            yield orjson.dumps({"cancelled": len(stops)})
            return
        if action.type in flight_sql.UNSERVED_ACTIONS:
            raise _invalid(
                f"the Flight SQL action {action.type} is not served",
                f"action {action.type}",
                flight_sql.UNSERVED_ACTIONS[action.type],
            )
        if action.type != "list-tables":
            raise _invalid(
                f"unknown action {action.type!r}", "action", "ListActions lists the actions"
            )
        tables = [
            {
                "name": e.name,
                "table": e.source,
                "columns": [
                    {"name": f.name, "column": f.column, "type": str(t.type)}
                    for f, t in zip(e.fields, arrow_schema(e.fields), strict=True)
                ],
            }
            for e in self._view(context).catalog.entities.values()
        ]
        yield orjson.dumps(tables)

    def shutdown(self) -> None:
        # Following change-event streams never end on their own, and Flight's shutdown waits
        # for every call: stop them first (their clients see the stream end UNAVAILABLE).
        with self._lock:
            self._closing = True
            stops = [stop for group in self._running.values() for stop in group]
        for stop in stops:
            stop.set()
        super().shutdown()
        self.pool.close()


def _read(path: str | None, key: str) -> bytes:
    if not path:
        raise ConfigError.one(
            f"flight.{key} is missing", f"flight.{key}", "give tls_cert and tls_key together"
        )
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError.one(
            f"cannot read {path}: {exc.strerror or exc}", f"flight.{key}", "give a PEM file"
        ) from None


def _check_port(host: str, port: int) -> None:
    """A clear error when the Flight endpoint cannot be listened on (gRPC itself only says it
    did not start): the system's reason and its fix, from the check every listener shares."""
    problem = bind_problem(host, port)
    if problem is None:
        return
    on_port = problem.code in (errno.EADDRINUSE, errno.EACCES)
    raise ConfigError.one(
        f"cannot listen on {host}:{port}: {problem.reason}",
        "flight.port" if on_port else "flight.host",
        f"{problem.fix} (flight.port / flight.host in quiver.yaml, QUIVER_FLIGHT_PORT, or --set "
        "flight.port=N)",
    )


class FlightHandle:
    """A Flight server serving in a thread of its own; :meth:`stop` ends it."""

    def __init__(self, server: QuiverFlightServer, on_stop: Callable[[], None] | None = None):
        self.server = server
        self._on_stop = on_stop
        self._thread = threading.Thread(target=server.serve, name="quiver-flight", daemon=True)
        self._thread.start()

    @property
    def location(self) -> str:
        return self.server.location

    def stop(self) -> None:
        self.server.shutdown()
        self._thread.join(timeout=10)
        if self._on_stop is not None:
            self._on_stop()


def start_flight_server(schema: Schema, settings: QuiverSettings) -> FlightHandle:
    """Start the Flight server of ``settings.flight`` beside whatever else runs."""
    _check_port(settings.flight.host, settings.flight.port)
    bridge = GraphQLArrow.start(schema, settings)
    try:
        server = QuiverFlightServer(schema, settings, graphql=bridge)
    except pa.ArrowException as exc:
        bridge.stop()
        fs = settings.flight
        raise ConfigError.one(
            f"the Flight server could not listen on {fs.host}:{fs.port}: {exc}",
            "flight",
            "check flight.host, flight.port and the TLS files",
        ) from None
    except Exception:
        bridge.stop()
        raise
    threading.Thread(target=server.pool.warm, name="quiver-flight-warm", daemon=True).start()
    log.info("Arrow Flight listening on %s", server.location)
    return FlightHandle(server, bridge.stop)
