"""Settings models for ``quiver.yaml``. Unknown keys are rejected everywhere.

Loading (files, ``${ENV}`` / ``${file:path}`` substitution, CLI overrides) lives in
``quiver.config.loader``; these models are what every surface receives.
"""

from __future__ import annotations

import functools
import re
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quiver.runtime.delivery import RetryPolicy

__all__ = [
    "ApiKey",
    "AuthSettings",
    "CorsSettings",
    "DatabaseSettings",
    "DeletePermission",
    "DispatcherSettings",
    "EntityPermissions",
    "FlightSettings",
    "GraphQLSettings",
    "InsertPermission",
    "LogSettings",
    "ObserverSettings",
    "QuiverSettings",
    "SelectPermission",
    "ServerSettings",
    "SubscriptionSettings",
    "TableNames",
    "UpdatePermission",
]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _empty_or_null_text_is_null(cls, data: Any) -> Any:
        """``""`` or ``"null"`` under a setting that takes null and no text is null: what
        ``default_list_limit: ${LIST_LIMIT:-}`` (or ``:-null``) means when the variable is
        unset, as ``null`` written in the file does."""
        if isinstance(data, dict):
            for name in _nullable_without_text(cls):
                if data.get(name) in ("", "null"):
                    data = {**data, name: None}
        return data


@functools.cache
def _nullable_without_text(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` that take None and no string."""
    names = []
    for name, info in model.model_fields.items():
        allowed = typing.get_args(info.annotation)
        if type(None) in allowed and str not in allowed:
            names.append(info.alias or name)
    return tuple(names)


class DatabaseSettings(_Settings):
    url: str = Field(default="", description="Database URL: postgresql://, mysql:// or sqlite:///.")
    pool_min: int = Field(default=1, ge=0, description="Connections opened at start.")
    pool_max: int = Field(default=10, ge=1, description="Largest number of pooled connections.")
    statement_timeout_ms: int = Field(
        default=30_000, ge=0, description="Per-statement timeout in milliseconds; 0 disables it."
    )
    pool_timeout_ms: int = Field(
        default=5_000,
        ge=0,
        description="Longest wait for a free connection, in milliseconds; a query that waits "
        "longer is answered 503 DATABASE_BUSY with Retry-After.",
    )
    pool_reserved: int | None = Field(
        default=None,
        ge=0,
        description="Connections kept for cheap queries (estimated cost at most "
        "graphql.cheap_cost), so slow queries cannot take the whole pool; null = a fifth of "
        "pool_max, rounded down. Must be below pool_max.",
    )
    slow_statement_ms: int = Field(
        default=1_000,
        ge=1,
        description="Longest a query estimated cheap (graphql.cheap_cost) may hold one of the "
        "connections kept by pool_reserved, in milliseconds: past it, it gives the connection "
        "up and starts again as expensive. A query whose statement ran longer than this runs "
        "as expensive for the next minute.",
    )
    coalesce: bool = Field(
        default=True,
        description="PostgreSQL: run the cheap queries of one worker process that wait on the "
        "same statement while it runs (same text, other values) as one statement, and hand "
        "each its own answer; false = one statement per query.",
    )
    coalesce_max: int = Field(
        default=8,
        ge=2,
        description="Most queries one coalesced statement runs (database.coalesce); more "
        "waiting start another statement at once.",
    )
    schemas: list[str] = Field(
        default_factory=list,
        description="Database schemas to reflect (PostgreSQL); empty means the default schema.",
    )

    @model_validator(mode="after")
    def _reserved_below_pool_max(self) -> DatabaseSettings:
        if self.pool_reserved is not None and self.pool_reserved >= self.pool_max:
            raise ValueError(
                f"pool_reserved ({self.pool_reserved}) must be below pool_max ({self.pool_max}):"
                " lower pool_reserved or raise pool_max"
            )
        return self

    @property
    def reserved_connections(self) -> int:
        """Connections kept for cheap queries (``pool_reserved``, or a fifth of the pool)."""
        return self.pool_max // 5 if self.pool_reserved is None else self.pool_reserved


# Paths the HTTP server answers itself, beside graphql.path.
_OTHER_ENDPOINTS = {"/healthz": "liveness", "/readyz": "readiness", "/metrics": "metrics"}


class GraphQLSettings(_Settings):
    path: str = Field(
        default="/graphql",
        description="HTTP path of the GraphQL endpoint: starts with /, without ? or #, and is"
        " none of /healthz, /readyz and /metrics.",
    )
    graphiql: bool = Field(
        default=True, description="Serve the GraphiQL page on GET with text/html."
    )
    introspection: bool = Field(default=True, description="Allow __schema and __type queries.")
    max_depth: int = Field(default=15, ge=1, description="Deepest selection nesting allowed.")
    max_cost: int = Field(
        default=50_000, ge=1, description="Largest estimated cost (fields x list sizes) allowed."
    )
    max_aliases: int = Field(default=30, ge=1, description="Most aliases allowed in one document.")
    max_tokens: int = Field(
        default=15_000,
        ge=1,
        description="Most tokens (names, punctuation, values) one document may have; a longer "
        "document is refused before it is read further.",
    )
    max_request_bytes: int = Field(default=1_000_000, ge=1, description="Largest request body.")
    body_timeout_ms: int = Field(
        default=30_000,
        ge=1,
        description="Longest time a request's body may take to arrive, in milliseconds; past it "
        "(checked every quarter of this time, every second at most) the request is answered 408 "
        "and its connection closed.",
    )
    max_batch: int = Field(default=10, ge=1, description="Most operations in one batched request.")
    persisted_queries: bool = Field(
        default=True, description="Accept Apollo automatic persisted queries (sha256 hashes)."
    )
    default_list_limit: int | None = Field(
        default=None, ge=1, description="Limit applied to list fields that give none; null = none."
    )
    cursor_secret: str | None = Field(
        default=None,
        description="Key that signs connection cursors (HMAC-SHA256). Unset: a random key drawn "
        "when the server starts (shared by its workers), so cursors end with it; set it (e.g. "
        "from ${CURSOR_SECRET} or QUIVER_GRAPHQL_CURSOR_SECRET) when cursors must survive a "
        "restart or pass between servers.",
    )
    cheap_cost: int = Field(
        default=200,
        ge=0,
        description="Queries whose estimated cost is at most this are cheap: they may use the "
        "connections kept by database.pool_reserved.",
    )
    document_cache_mb: int = Field(
        default=128,
        ge=1,
        description="Memory (estimated, in MiB) that the parsed documents kept for reuse, with "
        "their plans, may hold in each server process (and role); past it the oldest are "
        "dropped, and read again when next sent.",
    )

    @field_validator("path")
    @classmethod
    def _path_requests_can_reach(cls, path: str) -> str:
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError(
                "not a path requests can ask for: write it as it follows the host in a URL, "
                "starting with / and without ? or # (/graphql, /api/graphql)"
            )
        if path in _OTHER_ENDPOINTS:
            raise ValueError(
                f"the path of the server's own {_OTHER_ENDPOINTS[path]} endpoint; serve GraphQL "
                "at another path (/graphql)"
            )
        return path


class FunctionMutationSettings(_Settings):
    name: str = Field(
        pattern=r"^[_A-Za-z][_A-Za-z0-9]*$", description="GraphQL name of the mutation."
    )
    function: str = Field(
        pattern=r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$",
        description="PostgreSQL function it calls (optionally schema-qualified); it returns"
        " status, message, entity_key and errors.",
    )
    entity: str | None = Field(
        default=None, description="Entity whose row entity_key names, served as entity."
    )
    description: str | None = Field(default=None, description="Description of the mutation.")


class MutationSettings(_Settings):
    enabled: bool = Field(
        default=True,
        description="Serve create, update and delete mutations for tables with a primary key.",
    )
    change_log: bool = Field(
        default=True,
        description="Record every row a mutation writes in the change-log table, in the"
        " mutation's own transaction.",
    )
    max_rows: int = Field(
        default=1000,
        ge=1,
        description="Most rows one mutation field may write (a batch's inputs, the rows an"
        " update or delete where matches); past it nothing is written.",
    )
    functions: list[FunctionMutationSettings] = Field(
        default_factory=list,
        description="Mutations that call a PostgreSQL function, in the mutation's transaction.",
    )
    change_log_table: str = Field(
        default="quiver_change_log",
        min_length=1,
        max_length=60,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the change-log table; Quiver creates it when it is missing.",
    )


class SubscriptionSettings(_Settings):
    enabled: bool = Field(
        default=True,
        description="Serve GraphQL subscriptions (`<entity>Changed`) over WebSocket with the"
        " graphql-transport-ws protocol, on the GraphQL path, fed from the change log.",
    )
    poll_interval_ms: int = Field(
        default=200,
        ge=10,
        description="How often each subscription reads the change log for new rows.",
    )
    batch_rows: int = Field(
        default=500, ge=1, description="Most change-log rows one read of a subscription takes."
    )
    gap_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a subscription waits for a change id it skipped (a transaction"
        " still open, or rolled back) before it gives it up; a transaction that commits later"
        " than this after writing its change rows is not delivered.",
    )
    max_per_connection: int = Field(
        default=100, ge=1, description="Most subscriptions one WebSocket may run at once."
    )
    connection_init_timeout_ms: int = Field(
        default=3000,
        ge=1,
        description="How long a new WebSocket may wait before sending connection_init.",
    )
    max_message_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest message a WebSocket client may send; a larger one closes the socket"
        " with 1009 (Message too big) before it is read further.",
    )
    send_timeout_ms: int = Field(
        default=30_000,
        ge=100,
        description="Longest time one message to a WebSocket client may wait for the client to"
        " read; past it (a client that stopped reading) the socket is closed with 1008 and its"
        " subscriptions end, so a slow client never makes the server buffer without bound.",
    )


class ObserverSettings(_Settings):
    name: str = Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
        max_length=120,
        description="Name of the observer, unique; part of every idempotency key.",
    )
    entity: str = Field(description="Entity whose changes the observer watches (`Order`).")
    on: list[Literal["insert", "update", "delete"]] = Field(
        default=["insert", "update", "delete"],
        min_length=1,
        description="Operations that trigger it.",
    )
    when: str | None = Field(
        default=None,
        description="Condition over the changed row (`total > 100 && changed(status)`);"
        " see docs/observers.md. Empty: every change.",
    )
    actions: list[dict[str, Any]] = Field(
        min_length=1,
        description="What to do with each matching change: `{type: webhook, url: ...}`,"
        " `{type: log}`, ...; see docs/observers.md for every action and its keys.",
    )


class DispatcherSettings(_Settings):
    in_process: bool = Field(
        default=False,
        description="Also dispatch inside `quiver serve` (one dispatcher per server), besides"
        " `quiver observers run`.",
    )
    poll_interval: float = Field(
        default=0.5, gt=0, description="Seconds between scans of the change log when idle."
    )
    batch_size: int = Field(default=500, ge=1, description="Most change rows read by one scan.")
    lookback: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="Seconds back from now a scan looks for change rows not yet dispatched.",
    )
    concurrency: int = Field(default=8, ge=1, description="Most actions delivered at once.")
    ordered: bool = Field(
        default=False,
        description="Dispatch one event at a time, in change order (receivers see each"
        " entity's changes in order), instead of up to `concurrency` at once.",
    )
    ledger_table: str = Field(
        default="quiver_observer_ledger",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=60,
        description="Table recording what each observer's actions delivered.",
    )
    dead_letter_table: str = Field(
        default="quiver_observer_dead_letters",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=60,
        description="Table of deliveries that failed for good.",
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="Retries of a failed action before the DLQ."
    )
    metrics_namespace: str = Field(
        default="quiver",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=60,
        description="First word of the dispatcher's Prometheus metric names"
        " (`<namespace>_observer_events_processed_total`, ...).",
    )


# An origin as a browser sends it in the Origin header: scheme, host and optional port.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(\[[0-9a-f:.]+\]|[a-z0-9._~%-]+)(:[0-9]{1,5})?")


class CorsSettings(_Settings):
    allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins that browsers may call the API from (e.g. https://app.example.com); "
        "['*'] allows any; empty turns CORS off.",
    )
    allow_origin_regex: str | None = Field(
        default=None, description="A regular expression that allowed origins match in full."
    )
    allow_credentials: bool = Field(
        default=False, description="Let browsers send cookies and Authorization headers."
    )
    allow_headers: list[str] = Field(
        default_factory=lambda: ["content-type", "authorization", "x-request-id"],
        description="Request headers a browser may send besides the CORS-safelisted ones.",
    )
    max_age: int = Field(
        default=600, ge=0, description="Seconds a browser may cache a preflight answer."
    )

    @field_validator("allow_origins")
    @classmethod
    def _origins_as_browsers_send_them(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin as browsers send it: write scheme://host or "
                    "scheme://host:port in lower case, without a path or a trailing slash "
                    "(https://app.example.com), or '*' for any origin"
                )
        return origins

    @field_validator("allow_origin_regex")
    @classmethod
    def _regex_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _credentials_need_named_origins(self) -> CorsSettings:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError(
                "allow_credentials with allow_origins ['*'] would let every web site make "
                "requests with its visitors' credentials: list the origins that may, or set "
                "allow_credentials to false"
            )
        return self


class ServerSettings(_Settings):
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port.")
    workers: int = Field(default=1, ge=1, description="Server processes sharing the port.")
    shutdown_timeout_ms: int = Field(
        default=10_000,
        ge=0,
        description="On SIGTERM or Ctrl-C, how long requests in flight may take to finish, in"
        " milliseconds; those still running then are answered 503 SHUTTING_DOWN (with"
        " Retry-After) and the server exits.",
    )


class FlightSettings(_Settings):
    enabled: bool = Field(
        default=True, description="Start the Arrow Flight server beside HTTP in quiver serve."
    )
    host: str = Field(default="127.0.0.1", description="Address the Flight server binds.")
    port: int = Field(default=8815, ge=0, le=65535, description="Flight (gRPC) port.")
    batch_rows: int = Field(
        default=65_536, ge=1, description="Most rows in one Arrow record batch of a stream."
    )
    pool_size: int = Field(
        default=4, ge=1, description="Database connections kept open for Flight streams."
    )
    max_connections: int = Field(
        default=16,
        ge=1,
        description="Most database connections Flight streams use at once (at least"
        " pool_size); a stream that finds them all in use waits connection_timeout_ms, then"
        " is refused UNAVAILABLE.",
    )
    connection_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        description="Longest wait of a Flight stream for a database connection, in milliseconds.",
    )
    writable: bool = Field(
        default=False, description="Accept DoPut bulk loads into tables (read-only when false)."
    )
    partitions: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Endpoints GetFlightInfo gives an export (and a Flight SQL query) whose ticket"
        " asks for none: each reads a disjoint range of the table's integer key, for clients"
        " that read endpoints in parallel. 1: one stream.",
    )
    max_partitions: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Most endpoints GetFlightInfo gives one export, whatever its ticket asks.",
    )
    events_poll_interval: float = Field(
        default=0.2,
        gt=0,
        description="Seconds between scans of the change log while an observer_events stream"
        " follows new changes.",
    )
    events_window: float = Field(
        default=300.0,
        gt=0,
        description="Seconds an observer_events stream keeps looking for change rows that"
        " commit after rows with higher ids (MariaDB, SQLite; PostgreSQL waits for the"
        " transactions themselves), and how far before its start time it looks.",
    )
    tls_cert: str | None = Field(
        default=None, description="PEM certificate file: serve Flight over TLS (grpc+tls)."
    )
    tls_key: str | None = Field(default=None, description="PEM private key of tls_cert.")
    tls_client_ca: str | None = Field(
        default=None,
        description="PEM CA file: require client certificates signed by it (mutual TLS).",
    )

    @model_validator(mode="after")
    def _pool_within_max_connections(self) -> FlightSettings:
        if self.max_connections < self.pool_size:
            raise ValueError(
                f"max_connections ({self.max_connections}) must be at least pool_size"
                f" ({self.pool_size}): raise max_connections or lower pool_size"
            )
        return self

    @model_validator(mode="after")
    def _partitions_within_max(self) -> FlightSettings:
        if self.partitions > self.max_partitions:
            raise ValueError(
                f"partitions ({self.partitions}) must be at most max_partitions"
                f" ({self.max_partitions}): lower partitions or raise max_partitions"
            )
        return self


ClaimValue = str | int | float | bool


class ApiKey(_Settings):
    name: str = Field(description="Who holds the key: shown in logs, never the key itself.")
    key: str = Field(min_length=16, description="The secret; use ${env:VAR} or ${file:path}.")
    role: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$",
        description="Role whose auth.permissions apply to the key; none: the key may read and "
        "write everything (an administrator key). See docs/permissions.md.",
    )
    claims: dict[str, ClaimValue] = Field(
        default_factory=dict,
        description='Values permission filters read as "$claims.<name>" (tenant_id: 7).',
    )


class SelectPermission(_Settings):
    filter: dict[str, Any] = Field(
        default_factory=dict,
        description="Rows the role may read: a GraphQL where filter of the entity (field "
        'names, operators, relations, and/or/not); values may be "$claims.<name>". '
        "Empty: every row.",
    )
    columns: list[str] | Literal["*"] = Field(
        default="*",
        description="Fields the role may read (GraphQL names; they must include the primary "
        'key), or "*" for all.',
    )


class InsertPermission(_Settings):
    check: dict[str, Any] = Field(
        default_factory=dict,
        description="A where filter every created row must satisfy (values may be "
        '"$claims.<name>"); a row outside it refuses the mutation. Empty: any row.',
    )
    columns: list[str] | Literal["*"] = Field(
        default="*", description='Fields the role may give when creating rows, or "*".'
    )


class UpdatePermission(_Settings):
    filter: dict[str, Any] = Field(
        default_factory=dict,
        description="Rows the role may update (a where filter, as select.filter).",
    )
    columns: list[str] | Literal["*"] = Field(
        default="*", description='Fields the role may set, or "*".'
    )


class DeletePermission(_Settings):
    filter: dict[str, Any] = Field(
        default_factory=dict,
        description="Rows the role may delete (a where filter, as select.filter).",
    )


class EntityPermissions(_Settings):
    select: SelectPermission | None = Field(
        default=None, description="What the role reads; none: the entity is hidden from it."
    )
    insert: InsertPermission | None = Field(
        default=None, description="Whether and what the role may create; none: it may not."
    )
    update: UpdatePermission | None = Field(
        default=None, description="Whether and what the role may update; none: it may not."
    )
    delete: DeletePermission | None = Field(
        default=None, description="Whether and what the role may delete; none: it may not."
    )


class AuthSettings(_Settings):
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description="Static API keys accepted as 'Authorization: Bearer <key>' by HTTP and "
        "Flight; empty leaves both open.",
    )
    permissions: dict[str, dict[str, EntityPermissions]] | None = Field(
        default=None,
        description="Per role, per entity (GraphQL type name): the rows and fields the role "
        "may select, insert, update and delete, enforced by GraphQL over HTTP and WebSocket "
        "and by Flight. An entity a role does not list is hidden from it. Unset: every key "
        "may do everything. See docs/permissions.md.",
    )


class LogSettings(_Settings):
    format: Literal["text", "json"] = Field(
        default="text", description="text for people, json for one object per line."
    )
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe level written."
    )
    access: bool = Field(
        default=False,
        description="Write one line per HTTP request (method, path, status, milliseconds).",
    )


class TableNames(_Settings):
    """GraphQL names for one reflected table or view, replacing the derived ones."""

    type: str | None = Field(
        default=None, description="The GraphQL type name (e.g. Movie for the table movies)."
    )
    plural: str | None = Field(
        default=None,
        description="The list root field; the connection and aggregate root fields follow it "
        "(films: filmsConnection, filmsAggregate).",
    )
    by_key: str | None = Field(
        default=None, description="The root field that reads one row by its primary key."
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="Column name -> GraphQL field name."
    )
    relations: dict[str, str] = Field(
        default_factory=dict,
        description="Relation name as derived (customersBySupportRepId) -> GraphQL name "
        "(supportedCustomers); a list relation's Aggregate field follows it.",
    )


class QuiverSettings(_Settings):
    """The whole ``quiver.yaml``."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    graphql: GraphQLSettings = Field(default_factory=GraphQLSettings)
    mutations: MutationSettings = Field(default_factory=MutationSettings)
    subscriptions: SubscriptionSettings = Field(default_factory=SubscriptionSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    flight: FlightSettings = Field(default_factory=FlightSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    observers: list[ObserverSettings] = Field(
        default_factory=list,
        description="Actions run on committed changes; see docs/observers.md.",
    )
    dispatcher: DispatcherSettings = Field(
        default_factory=DispatcherSettings,
        description="How `quiver observers run` reads the change log and delivers.",
    )
    names: dict[str, TableNames] = Field(
        default_factory=dict,
        description="GraphQL names of reflected tables, by table name (schema.table on "
        "PostgreSQL when the name alone is ambiguous); see docs/reflection.md.",
    )
    schema_file: str | None = Field(
        default=None,
        description="Compiled schema.json to serve instead of reflecting the database.",
    )
