"""Multi-tenancy of the receivers: which tenant each row belongs to, per-tenant rate limits,
and per-tenant metrics.

The OTLP receivers (HTTP, gRPC and OTAP) resolve the tenant of every row of a request, in this
order:

1. **the API key or bearer token**, when it is bound to a tenant (``{key: ..., tenant: acme}``
   in ``auth``). The key always wins: a header or resource attribute naming another tenant is
   refused (403 / PERMISSION_DENIED) with ``on_conflict: refuse`` (the default), or ignored
   with ``on_conflict: key``;
2. **the sources**, in the order ``sources`` lists them: ``header`` (the HTTP header or gRPC
   metadata ``header``, ``X-Scope-OrgID`` by default, as Loki, Mimir and Tempo read it: one
   tenant for the request) and ``resource_attribute`` (``tenant.id`` of each row's resource:
   one request may carry several tenants);
3. **the default** tenant, when one is set;
4. otherwise the request is refused: 401 / UNAUTHENTICATED.

A tenant id is 1 to 128 letters, digits, ``_``, ``.`` or ``-``, starting with a letter or a
digit (it names directories of partitioned sinks); another value is refused 400 /
INVALID_ARGUMENT. With ``tenants`` only the tenants listed are taken (403 / PERMISSION_DENIED
for others). The tenant becomes the ``tenant_id`` column of the telemetry layout.

The broker receivers ``mqtt`` and ``nats`` take the tenant from the topic or subject with the
patterns of :class:`TopicTenancyConfig` (``tenants/{tenant}/#``); ``kafka`` and ``amqp`` with
:class:`MessageTenancyConfig` also from a message header (``X-Scope-OrgID``) and, for Kafka
OTLP records, from each row's ``tenant.id`` resource attribute. A message naming none, with no
``default``, is a rejected row. The ``websocket`` receiver gives each connection a tenant
(:class:`ConnectionTenancyConfig`) by the rules of the OTLP receivers: the key's, then a
header or query parameter.

**Limits** are token buckets per tenant: ``requests_per_second`` and ``items_per_second``
(spans, data points and log records), each with a burst. A request over its tenant's limit is
answered 429 / RESOURCE_EXHAUSTED with ``Retry-After`` / RetryInfo saying when it would pass;
other tenants are not held back. A broker receiver cannot answer 429: its
:class:`TenantPacer` delays the batch of a tenant over its limit (the receiver stops fetching
meanwhile) and the messages are acknowledged later, never dropped. **Metrics** count items
and refused requests by tenant; at most ``max_metric_tenants`` tenants get a label of their
own, the others share ``_other``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry, Counter
from pydantic import Field, field_validator, model_validator

from quiver.ingest.access import AuthConfig, Caller
from quiver.ingest.intake import BackpressureError, Intake
from quiver.ingest.tenant_id import TENANT_HINT, TenantId, is_tenant_id
from quiver.pipeline.component import ComponentConfig

__all__ = [
    "TENANT_COLUMN",
    "ConnectionTenancyConfig",
    "MessageTenancyConfig",
    "Tenancy",
    "TenancyConfig",
    "TenantClaim",
    "TenantError",
    "TenantIntake",
    "TenantLimitError",
    "TenantLimits",
    "TenantMetrics",
    "TenantPacer",
    "TopicTenancy",
    "TopicTenancyConfig",
    "rows_by_tenant",
    "with_tenant_column",
]

TenantSource = Literal["header", "resource_attribute"]
_SOURCES: tuple[TenantSource, ...] = ("header", "resource_attribute")

#: The column of the telemetry layout holding each row's tenant.
TENANT_COLUMN = "tenant_id"

_OTHER = "_other"  # the metrics label of tenants past the cap (never a valid tenant id)
_NONE = "_none"  # the metrics label of a request refused before its tenant was known
_GRPC_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
_REASONS = {400: "invalid", 401: "unauthenticated", 403: "forbidden"}  # metrics labels
_MAX_BUCKETS = 10_000  # tenants whose buckets are kept; full (idle) ones are dropped past it


class TenantError(Exception):
    """A request refused for its tenant: ``status`` is the HTTP status (400, 401 or 403),
    ``grpc_code`` the matching gRPC status code name."""

    def __init__(self, status: int, message: str, tenant: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.tenant = tenant

    @property
    def grpc_code(self) -> str:
        return _GRPC_CODES[self.status]

    @property
    def reason(self) -> str:
        return _REASONS[self.status]


class TenantLimitError(BackpressureError):
    """A tenant is over its rate limit: retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float, tenant: str) -> None:
        super().__init__(message, retry_after)
        self.tenant = tenant


# ---------------------------------------------------------------------------- configs


class TenantLimits(ComponentConfig):
    """Token buckets of one tenant: a rate, and a burst taken at once after a quiet time."""

    requests_per_second: float | None = Field(
        None, gt=0, description="Export requests (OTAP: batches) per second."
    )
    request_burst: int | None = Field(
        None, ge=1, description="Requests taken at once; default: one second's worth (at least 1)."
    )
    items_per_second: float | None = Field(
        None, gt=0, description="Spans, data points and log records per second."
    )
    item_burst: int | None = Field(
        None,
        ge=1,
        description="Items taken at once; default: one second's worth. A request larger than "
        "the burst passes when the bucket is full, and the tenant then waits it off.",
    )

    @model_validator(mode="after")
    def _rates(self) -> TenantLimits:
        if self.requests_per_second is None and self.items_per_second is None:
            raise ValueError(
                "a limit needs requests_per_second, items_per_second or both, e.g. "
                "{items_per_second: 10000}"
            )
        if self.request_burst is not None and self.requests_per_second is None:
            raise ValueError("request_burst needs requests_per_second")
        if self.item_burst is not None and self.items_per_second is None:
            raise ValueError("item_burst needs items_per_second")
        return self


class TenancyConfig(ComponentConfig):
    """Resolve a tenant for every row (see docs/ingest.md, Multi-tenancy)."""

    sources: list[TenantSource] = Field(
        default_factory=lambda: list(_SOURCES),
        description="Where to read the tenant when the API key is not bound to one, first "
        "match wins: header (one per request), resource_attribute (per resource).",
    )
    header: str = Field(
        "x-scope-orgid", min_length=1, description="HTTP header / gRPC metadata of the tenant."
    )
    resource_attribute: str = Field(
        "tenant.id", min_length=1, description="Resource attribute of the tenant."
    )
    default: TenantId | None = Field(
        None,
        description="Tenant of rows no source names. Without it such a request is refused "
        "(401 / UNAUTHENTICATED).",
    )
    tenants: list[TenantId] | None = Field(
        None,
        min_length=1,
        description="The only tenants taken (403 / PERMISSION_DENIED for others); default: any.",
    )
    on_conflict: Literal["refuse", "key"] = Field(
        "refuse",
        description="When a key bound to a tenant sends a header or resource attribute naming "
        "another: refuse (403 / PERMISSION_DENIED) or key (the key's tenant is used).",
    )
    limits: TenantLimits | None = Field(None, description="Rate limits of every tenant.")
    overrides: dict[TenantId, TenantLimits] = Field(
        default_factory=dict, description="Rate limits of the tenants named, instead of `limits`."
    )
    max_metric_tenants: int = Field(
        100,
        ge=1,
        description="Tenants with a metrics label of their own; the others share `_other`.",
    )

    @field_validator("sources")
    @classmethod
    def _distinct(cls, sources: list[str]) -> list[str]:
        repeated = sorted({s for s in sources if sources.count(s) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} is listed twice")
        return sources

    @field_validator("header")
    @classmethod
    def _lower(cls, header: str) -> str:
        return header.lower()

    @model_validator(mode="after")
    def _known_tenants(self) -> TenancyConfig:
        _check_default(self.default, self.tenants)
        _check_overrides(self.overrides, self.tenants)
        return self

    def check_auth(self, auth: AuthConfig | None) -> None:
        """ValueError when keys are bound to tenant ids that are invalid or not allowed."""
        if auth is None:
            return
        for tenant in sorted(auth.tenants()):
            if self.tenants is not None and tenant not in self.tenants:
                raise ValueError(f"a key of auth is bound to {tenant!r}, not one of tenants")


class TopicTenancyConfig(ComponentConfig):
    """Take the tenant of each message from its topic or subject."""

    patterns: list[str] = Field(
        min_length=1,
        description="Topic (subject) patterns with one {tenant} level, e.g. tenants/{tenant}/# "
        "(MQTT) or tenants.{tenant}.> (NATS); the first match wins.",
    )
    default: TenantId | None = Field(
        None,
        description="Tenant of messages no pattern matches; without it they are rejected rows.",
    )
    tenants: list[TenantId] | None = Field(
        None,
        min_length=1,
        description="The only tenants taken (messages of others are rejected rows).",
    )

    limits: TenantLimits | None = Field(
        None,
        description="Rate limits of every tenant (requests: messages). A broker cannot be "
        "answered 429: the messages of a tenant over its limit are delayed, not dropped.",
    )
    overrides: dict[TenantId, TenantLimits] = Field(
        default_factory=dict, description="Rate limits of the tenants named, instead of `limits`."
    )

    @model_validator(mode="after")
    def _known_tenants(self) -> TopicTenancyConfig:
        _check_default(self.default, self.tenants)
        _check_overrides(self.overrides, self.tenants)
        return self


MessageTenantSource = Literal["topic", "header", "resource_attribute"]
_MESSAGE_SOURCES: tuple[MessageTenantSource, ...] = ("topic", "header")


class MessageTenancyConfig(TopicTenancyConfig):
    """Take the tenant of each message from its topic (routing key), a header of the message,
    or (OTLP payloads) the ``tenant.id`` resource attribute."""

    patterns: list[str] = Field(
        default_factory=list,
        description="Topic (Kafka) or routing key (AMQP) patterns with one {tenant} part, e.g. "
        "tenants.{tenant}.spans; the first match wins.",
    )
    sources: list[MessageTenantSource] = Field(
        default_factory=lambda: list(_MESSAGE_SOURCES),
        description="Where to read the tenant, first match wins: topic (the patterns), header "
        "(a message header), resource_attribute (OTLP payloads: per resource).",
    )
    header: str = Field(
        "X-Scope-OrgID", min_length=1, description="Message header of the tenant (any case)."
    )
    resource_attribute: str = Field(
        "tenant.id", min_length=1, description="Resource attribute of the tenant (OTLP formats)."
    )

    @field_validator("sources")
    @classmethod
    def _distinct(cls, sources: list[str]) -> list[str]:
        repeated = sorted({s for s in sources if sources.count(s) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} is listed twice")
        if not sources:
            raise ValueError("sources needs at least one of topic, header, resource_attribute")
        return sources

    @model_validator(mode="after")
    def _patterns_for_topic(self) -> MessageTenancyConfig:
        if self.patterns and "topic" not in self.sources:
            raise ValueError("patterns are read only with `topic` in sources")
        if self.sources == ["topic"] and not self.patterns:
            raise ValueError(
                "sources [topic] needs patterns, e.g. {patterns: [tenants.{tenant}.spans]}"
            )
        return self


ConnectionTenantSource = Literal["header", "query"]
_CONNECTION_SOURCES: tuple[ConnectionTenantSource, ...] = ("header", "query")


class ConnectionTenancyConfig(ComponentConfig):
    """The tenant of each connection: its API key's, a header, or a query parameter."""

    sources: list[ConnectionTenantSource] = Field(
        default_factory=lambda: list(_CONNECTION_SOURCES),
        description="Where to read the tenant when the API key is not bound to one, first "
        "match wins: header, query (a query parameter of the connection URL).",
    )
    header: str = Field(
        "X-Scope-OrgID", min_length=1, description="Handshake header of the tenant (any case)."
    )
    query_parameter: str = Field(
        "tenant", min_length=1, description="Query parameter of the tenant."
    )
    default: TenantId | None = Field(
        None,
        description="Tenant of connections naming none; without it they are refused (401).",
    )
    tenants: list[TenantId] | None = Field(
        None, min_length=1, description="The only tenants taken (403 for others); default: any."
    )
    on_conflict: Literal["refuse", "key"] = Field(
        "refuse",
        description="When a key bound to a tenant names another in the header or query: "
        "refuse (403) or key (the key's tenant is used).",
    )
    limits: TenantLimits | None = Field(
        None,
        description="Rate limits of every tenant (requests: messages); a tenant over its limit "
        "is delayed: its messages are acknowledged later.",
    )
    overrides: dict[TenantId, TenantLimits] = Field(
        default_factory=dict, description="Rate limits of the tenants named, instead of `limits`."
    )

    @field_validator("sources")
    @classmethod
    def _distinct(cls, sources: list[str]) -> list[str]:
        repeated = sorted({s for s in sources if sources.count(s) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} is listed twice")
        return sources

    @model_validator(mode="after")
    def _known_tenants(self) -> ConnectionTenancyConfig:
        _check_default(self.default, self.tenants)
        _check_overrides(self.overrides, self.tenants)
        return self


def _check_default(default: str | None, tenants: list[str] | None) -> None:
    if default is not None and tenants is not None and default not in tenants:
        raise ValueError(f"default {default!r} is not one of tenants")


def _check_overrides(overrides: Mapping[str, object], tenants: list[str] | None) -> None:
    unknown = sorted(set(overrides) - set(tenants or overrides))
    if unknown:
        raise ValueError(f"overrides name tenants not in tenants: {', '.join(unknown)}")


# ---------------------------------------------------------------------------- limits


class _Bucket:
    """A token bucket of ``rate`` tokens a second holding at most ``burst``."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = now

    def wait(self, cost: int, now: float) -> float:
        """Seconds until ``cost`` tokens can be taken (0: now); a cost over the burst needs a
        full bucket."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        need = min(float(cost), self.burst)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, cost: int) -> None:
        self.tokens -= cost

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.last) * self.rate >= self.burst


class _TenantLimiter:
    """The buckets of every tenant seen, made from ``limits`` or the tenant's override."""

    def __init__(self, limits: TenantLimits | None, overrides: Mapping[str, TenantLimits]) -> None:
        self.limits = limits
        self.overrides = overrides
        self._buckets: dict[str, tuple[_Bucket | None, _Bucket | None]] = {}

    @property
    def active(self) -> bool:
        return self.limits is not None or bool(self.overrides)

    def _of(self, tenant: str, now: float) -> tuple[_Bucket | None, _Bucket | None]:
        buckets = self._buckets.get(tenant)
        if buckets is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets = {t: b for t, b in self._buckets.items() if not _idle(b, now)}
            limits = self.overrides.get(tenant, self.limits)
            buckets = (None, None) if limits is None else _buckets_of(limits, now)
            self._buckets[tenant] = buckets
        return buckets

    def admit(self, items: Mapping[str, int]) -> None:
        """Take one request and its items from each tenant's buckets; TenantLimitError (and
        nothing taken) when one of them is over its limit."""
        now = time.monotonic()
        taking = []
        for tenant, count in items.items():
            requests, item_bucket = self._of(tenant, now)
            for bucket, cost, what in ((requests, 1, "requests"), (item_bucket, count, "items")):
                if bucket is None:
                    continue
                wait = bucket.wait(cost, now)
                if wait > 0:
                    raise TenantLimitError(
                        f"tenant {tenant!r} is over its limit of {bucket.rate:g} {what} per "
                        f"second; retry in {wait:.2f}s",
                        wait,
                        tenant,
                    )
                taking.append((bucket, cost))
        for bucket, cost in taking:
            bucket.take(cost)

    def reserve(self, messages: Mapping[str, int], items: Mapping[str, int]) -> tuple[float, str]:
        """Take ``messages`` and ``items`` (by tenant) from the tenants' buckets and return
        ``(0, "")``; or take nothing and return the seconds until they could all be taken,
        with the tenant that waits longest."""
        now = time.monotonic()
        longest, waiting = 0.0, ""
        taking = []
        for tenant in sorted({*messages, *items}):
            requests, item_bucket = self._of(tenant, now)
            for bucket, cost in (
                (requests, messages.get(tenant, 0)),
                (item_bucket, items.get(tenant, 0)),
            ):
                if bucket is None or cost <= 0:
                    continue
                wait = bucket.wait(cost, now)
                if wait > longest:
                    longest, waiting = wait, tenant
                taking.append((bucket, cost))
        if longest > 0:
            return longest, waiting
        for bucket, cost in taking:
            bucket.take(cost)
        return 0.0, ""


def _buckets_of(limits: TenantLimits, now: float) -> tuple[_Bucket | None, _Bucket | None]:
    def one(rate: float | None, burst: int | None) -> _Bucket | None:
        if rate is None:
            return None
        return _Bucket(rate, burst or max(1, math.ceil(rate)), now)

    return (
        one(limits.requests_per_second, limits.request_burst),
        one(limits.items_per_second, limits.item_burst),
    )


def _idle(buckets: tuple[_Bucket | None, _Bucket | None], now: float) -> bool:
    return all(b is None or b.full(now) for b in buckets)


# ---------------------------------------------------------------------------- metrics


class TenantMetrics:
    """Items taken and requests refused, by tenant, in a registry of their own; past
    ``max_tenants`` distinct tenants, the label is ``_other``."""

    def __init__(self, max_tenants: int) -> None:
        self.max_tenants = max_tenants
        self.registry = CollectorRegistry(auto_describe=True)
        self.items = Counter(
            "quiver_ingest_tenant_items",
            "Spans, data points and log records taken, by tenant and signal.",
            ["tenant", "signal"],
            registry=self.registry,
        )
        self.refused = Counter(
            "quiver_ingest_tenant_refused_requests",
            "Requests refused, by tenant and reason (unauthenticated, forbidden, invalid, "
            "rate_limited).",
            ["tenant", "reason"],
            registry=self.registry,
        )
        self._labelled: set[str] = set()

    def label(self, tenant: str | None) -> str:
        """The label value of ``tenant``: itself while the cap allows, ``_other`` past it."""
        if tenant is None:
            return _NONE
        if tenant in self._labelled:
            return tenant
        if len(self._labelled) < self.max_tenants:
            self._labelled.add(tenant)
            return tenant
        return _OTHER

    def taken(self, items: Mapping[str, int], signal: str) -> None:
        for tenant, count in items.items():
            self.items.labels(self.label(tenant), signal).inc(count)

    def refusal(self, tenant: str | None, reason: str) -> None:
        self.refused.labels(self.label(tenant), reason).inc()

    def value(self, name: str, **labels: str) -> float:
        """The current value of a sample (0 when absent), for tests and status pages."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


# ---------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class TenantClaim:
    """What a request says of its tenant before its rows are read: the tenant its key is
    bound to, and the header's."""

    key: str | None
    header: str | None


class Tenancy:
    """The tenancy of one receiver: resolution, limits and metrics (see the module's doc)."""

    def __init__(self, cfg: TenancyConfig) -> None:
        self.cfg = cfg
        self.metrics = TenantMetrics(cfg.max_metric_tenants)
        self._limiter = _TenantLimiter(cfg.limits, cfg.overrides)
        self._allowed = None if cfg.tenants is None else frozenset(cfg.tenants)
        self._per_row = "resource_attribute" in cfg.sources

    def claim(self, caller: Caller, headers: Mapping[str, str]) -> TenantClaim:
        """The request-level claim of a request with ``headers`` (lowercase names) sent by
        ``caller``; TenantError when it is refused before its rows are read."""
        try:
            header = headers.get(self.cfg.header) if "header" in self.cfg.sources else None
            if header is not None:
                header = header.strip()
                if not is_tenant_id(header):
                    raise TenantError(
                        400,
                        f"the {self.cfg.header} header {header[:200]!r} is not a tenant id: "
                        f"{TENANT_HINT}",
                    )
            claim = TenantClaim(caller.tenant, header or None)
            if claim.key is not None:
                self._check_conflict(claim.key, [claim.header])
            elif claim.header is None and not self._per_row and self.cfg.default is None:
                raise self._missing()
        except TenantError as exc:
            self.metrics.refusal(exc.tenant or caller.tenant, exc.reason)
            raise
        return claim

    def assign(self, batch: pa.RecordBatch, claim: TenantClaim) -> pa.RecordBatch:
        """``batch`` with the tenant of each row in :data:`TENANT_COLUMN`; TenantError when a
        row has none, an invalid one or one not allowed."""
        try:
            return self._assign(batch, claim)
        except TenantError as exc:
            self.metrics.refusal(exc.tenant or claim.key or claim.header, exc.reason)
            raise

    def admit(self, batch: pa.RecordBatch) -> dict[str, int]:
        """Rows by tenant of an assigned ``batch``, taken from the tenants' buckets;
        TenantLimitError when one is over its limit."""
        items = _counts(batch.column(TENANT_COLUMN))
        if self._limiter.active:
            try:
                self._limiter.admit(items)
            except TenantLimitError as exc:
                self.metrics.refusal(exc.tenant, "rate_limited")
                raise
        return items

    def taken(self, items: Mapping[str, int], signal: str) -> None:
        """Count ``items`` (rows by tenant) of ``signal`` as taken."""
        self.metrics.taken(items, signal)

    def _assign(self, batch: pa.RecordBatch, claim: TenantClaim) -> pa.RecordBatch:
        rows = batch.num_rows
        if claim.key is not None:  # the key's tenant; a resource attribute may only repeat it
            if self._per_row and self.cfg.on_conflict == "refuse":
                claims = pc.unique(self._resource_tenants(batch)).to_pylist()
                self._check_conflict(claim.key, claims)
            return _with_tenants(batch, pa.array([claim.key] * rows, pa.string()))
        resource = self._resource_tenants(batch) if self._per_row else None
        layers: list[pa.Array | pa.Scalar] = []
        for source in self.cfg.sources:
            if source == "header" and claim.header is not None:
                layers.append(pa.scalar(claim.header, pa.string()))
            elif source == "resource_attribute" and resource is not None:
                layers.append(resource)
        if self.cfg.default is not None:
            layers.append(pa.scalar(self.cfg.default, pa.string()))
        if not layers:
            raise self._missing()
        tenants = layers[0] if len(layers) == 1 else pc.coalesce(*layers)
        if isinstance(tenants, pa.Scalar):
            tenants = pa.array([tenants.as_py()] * rows, pa.string())
        if tenants.null_count:
            raise self._missing()
        distinct = pc.unique(tenants).to_pylist()
        for tenant in distinct:
            if not is_tenant_id(tenant):
                raise TenantError(
                    400,
                    f"the resource attribute {self.cfg.resource_attribute} "
                    f"{tenant[:200]!r} is not a tenant id: {TENANT_HINT}",
                )
            self._check_allowed(tenant)
        return _with_tenants(batch, tenants)

    def _resource_tenants(self, batch: pa.RecordBatch) -> pa.Array:
        attributes = batch.column("resource_attributes")
        found = pc.map_lookup(attributes, pa.scalar(self.cfg.resource_attribute), "first")
        return pc.utf8_trim_whitespace(found)

    def _check_conflict(self, key: str, claims: list[str | None]) -> None:
        others = sorted({c for c in claims if c is not None and c != key})
        if others and self.cfg.on_conflict == "refuse":
            raise TenantError(
                403,
                f"this API key belongs to tenant {key!r} and cannot send as {others[0]!r}: "
                f"drop the {self.cfg.header} header / {self.cfg.resource_attribute} attribute "
                "or use that tenant's key",
                key,
            )
        self._check_allowed(key)

    def _check_allowed(self, tenant: str) -> None:
        if self._allowed is not None and tenant not in self._allowed:
            raise TenantError(
                403,
                f"tenant {tenant!r} is not taken by this receiver (tenancy.tenants)",
                tenant,
            )

    def _missing(self) -> TenantError:
        where = []
        if "header" in self.cfg.sources:
            where.append(f"the {self.cfg.header} header")
        if self._per_row:
            where.append(f"the resource attribute {self.cfg.resource_attribute}")
        named = " or ".join(["an API key bound to a tenant", *where])
        return TenantError(401, f"no tenant: send {named}")


def with_tenant_column(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with a :data:`TENANT_COLUMN` (all null when it had none): a batch spooled
    before the layout had the column is handed on in the layout of today's."""
    if batch.schema.get_field_index(TENANT_COLUMN) >= 0:
        return batch
    return batch.append_column(
        pa.field(TENANT_COLUMN, pa.string()), pa.nulls(batch.num_rows, pa.string())
    )


def _with_tenants(batch: pa.RecordBatch, tenants: pa.Array) -> pa.RecordBatch:
    index = batch.schema.get_field_index(TENANT_COLUMN)
    field = pa.field(TENANT_COLUMN, pa.string())
    if index < 0:
        return batch.append_column(field, tenants)
    return batch.set_column(index, field, tenants)


def rows_by_tenant(batch: pa.RecordBatch) -> dict[str, int]:
    """The number of rows of each tenant of ``batch`` (by its :data:`TENANT_COLUMN`)."""
    index = batch.schema.get_field_index(TENANT_COLUMN)
    return {} if index < 0 else _counts(batch.column(index))


def _counts(tenants: pa.Array) -> dict[str, int]:
    if len(tenants) == 0:
        return {}
    counts = pc.value_counts(tenants)
    return {
        v: int(c)
        for v, c in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
        if v is not None
    }


# ---------------------------------------------------------------------------- brokers


class TenantPacer:
    """Per-tenant rate limits of a broker receiver, which cannot answer 429: :meth:`wait`
    says how long the messages of the tenants over their limit must wait."""

    def __init__(self, limits: TenantLimits | None, overrides: Mapping[str, TenantLimits]) -> None:
        self._limiter = _TenantLimiter(limits, overrides)

    @property
    def active(self) -> bool:
        return self._limiter.active

    def wait(self, messages: Mapping[str, int], items: Mapping[str, int]) -> tuple[float, str]:
        """``(0, "")`` once ``messages`` and ``items`` (by tenant) are taken from the tenants'
        buckets; else nothing is taken and the seconds to wait, with the tenant waited for."""
        return self._limiter.reserve(messages, items)


class TopicTenancy:
    """The tenant of a broker message from its topic (``separator`` between levels, ``one``
    matching one level, ``rest`` the levels left), or with :class:`MessageTenancyConfig` from
    a header of the message or the resource attribute of each row of an OTLP payload."""

    def __init__(self, cfg: TopicTenancyConfig, separator: str, one: str, rest: str) -> None:
        self.cfg = cfg
        self._allowed = None if cfg.tenants is None else frozenset(cfg.tenants)
        self._patterns = [topic_pattern(p, separator, one, rest) for p in cfg.patterns]
        self._sources: list[str] = ["topic"]
        self._header: str | None = None
        self._resource: str | None = None
        if isinstance(cfg, MessageTenancyConfig):
            self._sources = list(cfg.sources)
            self._header = cfg.header.lower() if "header" in cfg.sources else None
            self._resource = cfg.resource_attribute
        self.pacer = TenantPacer(cfg.limits, cfg.overrides)

    @property
    def per_row(self) -> bool:
        """Whether rows of one message may belong to several tenants (resource_attribute)."""
        return "resource_attribute" in self._sources

    def tenant(
        self, topic: str, headers: Mapping[str, str] | None = None
    ) -> tuple[str | None, str | None]:
        """``(tenant, None)``, or ``(None, why the message is refused)``; ``headers`` by
        lowercase name."""
        for source in self._sources:
            tenant, origin = self._from(source, topic, headers)
            if tenant is not None:
                return self._check(tenant, origin)
        if self.cfg.default is None:
            return None, self._missing(topic)
        return self._check(self.cfg.default, "")

    def rows(
        self, batch: pa.RecordBatch, topic: str, headers: Mapping[str, str] | None = None
    ) -> tuple[pa.RecordBatch | None, str | None]:
        """``batch`` (rows of the telemetry layout) with the tenant of each row in
        :data:`TENANT_COLUMN`, or ``(None, why the message is refused)``."""
        layers: list[pa.Array | pa.Scalar] = []
        for source in self._sources:
            if source == "resource_attribute":
                attributes = batch.column("resource_attributes")
                found = pc.map_lookup(attributes, pa.scalar(self._resource), "first")
                layers.append(pc.utf8_trim_whitespace(found))
                continue
            tenant, origin = self._from(source, topic, headers)
            if tenant is not None:
                checked, refusal = self._check(tenant, origin)
                if refusal is not None:
                    return None, refusal
                layers.append(pa.scalar(checked, pa.string()))
        if self.cfg.default is not None:
            layers.append(pa.scalar(self.cfg.default, pa.string()))
        if not layers:
            return None, self._missing(topic)
        tenants = layers[0] if len(layers) == 1 else pc.coalesce(*layers)
        if isinstance(tenants, pa.Scalar):
            tenants = pa.array([tenants.as_py()] * batch.num_rows, pa.string())
        if tenants.null_count:
            return None, self._missing(topic)
        for tenant in pc.unique(tenants).to_pylist():
            _, refusal = self._check(tenant, f"from the resource attribute {self._resource}")
            if refusal is not None:
                return None, refusal
        return _with_tenants(batch, tenants), None

    def _from(
        self, source: str, topic: str, headers: Mapping[str, str] | None
    ) -> tuple[str | None, str]:
        if source == "topic":
            for pattern in self._patterns:
                m = pattern.match(topic)
                if m:
                    return m.group(1), f"from {topic!r}"
        elif source == "header" and headers and self._header is not None:
            value = (headers.get(self._header) or "").strip()
            if value:
                return value, f"from the {self._header} header"
        return None, ""

    def _check(self, tenant: str, origin: str) -> tuple[str | None, str | None]:
        if not is_tenant_id(tenant):
            where = f" ({origin})" if origin else ""
            return None, f"{tenant[:200]!r}{where} is not a tenant id: {TENANT_HINT}"
        if self._allowed is not None and tenant not in self._allowed:
            return None, f"tenant {tenant!r} is not taken by this receiver (tenancy.tenants)"
        return tenant, None

    def _missing(self, topic: str) -> str:
        named = []
        if "topic" in self._sources:
            if self.cfg.patterns:
                named.append(f"{topic!r} matches none of {', '.join(self.cfg.patterns)}")
            else:
                named.append("no topic pattern")
        if self._header is not None:
            named.append(f"no {self._header} header")
        if self.per_row:
            named.append(f"a resource without the attribute {self._resource}")
        return "no tenant: " + ", ".join(named)


def topic_pattern(pattern: str, separator: str, one: str, rest: str) -> re.Pattern[str]:
    """``pattern`` (levels split by ``separator``, exactly one of them ``{tenant}``) as a
    regular expression whose group 1 is the tenant; ValueError if malformed."""
    levels = pattern.split(separator)
    if levels.count("{tenant}") != 1:
        raise ValueError(
            f"{pattern!r} needs exactly one {{tenant}} level, e.g. "
            f"tenants{separator}{{tenant}}{separator}{rest}"
        )
    sep = re.escape(separator)
    parts = []
    for i, level in enumerate(levels):
        if level == "{tenant}":
            parts.append(f"([^{sep}]+)")
        elif level == one:
            parts.append(f"[^{sep}]+")
        elif level == rest:
            if i != len(levels) - 1:
                raise ValueError(f"{pattern!r}: {rest} may only be the last level")
            parts.append(".+")
        elif "{" in level or "}" in level:
            raise ValueError(f"{pattern!r}: level {level!r} is neither {{tenant}} nor a name")
        else:
            parts.append(re.escape(level))
    return re.compile("^" + sep.join(parts) + "$")


class TenantIntake:
    """The :class:`~quiver.ingest.intake.Intake` of one request (or OTAP stream) of a receiver
    with tenancy: each batch gets its tenant column and passes its tenants' limits before the
    intake takes it; TenantError / TenantLimitError otherwise."""

    def __init__(self, intake: Intake, tenancy: Tenancy, claim: TenantClaim, signal: str) -> None:
        self.intake = intake
        self.tenancy = tenancy
        self.claim = claim
        self.signal = signal

    @property
    def rejected_items(self) -> int:
        return self.intake.rejected_items

    @rejected_items.setter
    def rejected_items(self, value: int) -> None:
        self.intake.rejected_items = value

    async def accept(self, batch: pa.RecordBatch) -> None:
        batch = self.tenancy.assign(batch, self.claim)
        items = self.tenancy.admit(batch)
        await self.intake.accept(batch)
        self.tenancy.taken(items, self.signal)
