"""Settings models for ``quiver.yaml``. Unknown keys are rejected everywhere.

Loading (files, ``${ENV}`` / ``${file:path}`` substitution, CLI overrides) lives in
``quiver.config.loader``; these models are what every surface receives.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CorsSettings",
    "DatabaseSettings",
    "GraphQLSettings",
    "LogSettings",
    "QuiverSettings",
    "ServerSettings",
]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Settings):
    url: str = Field(default="", description="Database URL: postgresql://, mysql:// or sqlite:///.")
    pool_min: int = Field(default=1, ge=0, description="Connections opened at start.")
    pool_max: int = Field(default=10, ge=1, description="Largest number of pooled connections.")
    statement_timeout_ms: int = Field(
        default=30_000, ge=0, description="Per-statement timeout in milliseconds; 0 disables it."
    )
    schemas: list[str] = Field(
        default_factory=list,
        description="Database schemas to reflect (PostgreSQL); empty means the default schema.",
    )


class GraphQLSettings(_Settings):
    path: str = Field(default="/graphql", description="HTTP path of the GraphQL endpoint.")
    graphiql: bool = Field(
        default=True, description="Serve the GraphiQL page on GET with text/html."
    )
    introspection: bool = Field(default=True, description="Allow __schema and __type queries.")
    max_depth: int = Field(default=15, ge=1, description="Deepest selection nesting allowed.")
    max_cost: int = Field(
        default=50_000, ge=1, description="Largest estimated cost (fields x list sizes) allowed."
    )
    max_aliases: int = Field(default=30, ge=1, description="Most aliases allowed in one document.")
    max_request_bytes: int = Field(default=1_000_000, ge=1, description="Largest request body.")
    max_batch: int = Field(default=10, ge=1, description="Most operations in one batched request.")
    persisted_queries: bool = Field(
        default=True, description="Accept Apollo automatic persisted queries (sha256 hashes)."
    )
    default_list_limit: int | None = Field(
        default=None, ge=1, description="Limit applied to list fields that give none; null = none."
    )


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


class ServerSettings(_Settings):
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port.")
    workers: int = Field(default=1, ge=1, description="Server processes sharing the port.")


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


class QuiverSettings(_Settings):
    """The whole ``quiver.yaml``."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    graphql: GraphQLSettings = Field(default_factory=GraphQLSettings)
    mutations: MutationSettings = Field(default_factory=MutationSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    schema_file: str | None = Field(
        default=None,
        description="Compiled schema.json to serve instead of reflecting the database.",
    )
