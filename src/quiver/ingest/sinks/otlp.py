"""The ``otlp`` sink: forward telemetry rows to another collector over OTLP/gRPC or OTLP/HTTP.

Rows of the telemetry layout (from an ``otlp`` receiver, or a ``kafka``/``nats`` receiver
reading OTLP) are rebuilt into export requests (:mod:`quiver.ingest.otlp.rebuild`), at most
``rows_per_request`` items each, and sent as binary protobuf (or OTLP/JSON over HTTP with
``encoding: json``), gzip-compressed unless ``compression: none``. A write returns only
when the collector accepted every request of the batch, so the engine commits (and the
receiver upstream acknowledges its clients) only what the next collector holds.

Failures follow the OTLP specification:

* gRPC: ``UNAVAILABLE``, ``CANCELLED``, ``DEADLINE_EXCEEDED``, ``ABORTED``, ``OUT_OF_RANGE``
  and ``DATA_LOSS`` are retryable, and ``RESOURCE_EXHAUSTED`` when the server sent a
  ``RetryInfo``; every other code is permanent.
  A certificate that fails verification or a failed TLS handshake (reported as
  ``UNAVAILABLE``) is permanent: no retry mends it.
* HTTP: 429, 502, 503 and 504 are retryable; any other error status is permanent. Failures
  without an answer are sorted and worded as for every HTTP client of the product
  (:mod:`quiver.runtime.outbound_http`): timeouts, refused or dropped connections and a
  collector breaking HTTP mid-answer are retryable; a certificate that fails verification, a
  failed TLS handshake, a header HTTP cannot carry are permanent. A redirect is not followed.
* The server's hint (``RetryInfo.retry_delay``, ``Retry-After``) is the least wait before
  the engine's next attempt, five minutes at most (its retry policy and circuit breaker do
  the rest), and a retried write sends again only the requests not yet accepted.
* Answers are read up to a bound (gRPC: 4 MiB, the default of gRPC; HTTP: 1 MiB, of which
  an error's first 4 KiB are quoted) and within ``timeout_seconds``. A 200 whose body cannot
  be read (too long, never ending, not matching its Content-Encoding) still counts as
  accepted, as the collector said, with a warning.
* ``partial_success`` (items the server rejected for good) is logged and counted in
  ``rejected``; those items are not sent again, as the specification asks.

Rows with a tenant (the ``tenant_id`` column a receiver with tenancy fills) are sent in
requests of one tenant each, with the tenant in the ``tenant_header`` header (gRPC metadata),
``X-Scope-OrgID`` by default as Tempo, Mimir and Loki read it; ``tenant_header: null`` sends
the rows as they come, with no such header.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from quiver.ingest.receiver import TlsOptions
from quiver.ingest.tenancy import TENANT_COLUMN
from quiver.pipeline.component import ComponentConfig, RunContext, sink, without_line
from quiver.runtime.errors import (
    ConfigError,
    ErrorDetail,
    PermanentError,
    QuiverError,
    RetryableError,
)
from quiver.runtime.outbound_http import (
    BODY_START,
    DRAINED,
    MAX_RETRY_AFTER,
    HttpSettings,
    body_start,
    read_body,
    request_error,
    status_error,
    url_problem,
)

__all__ = ["OtlpSink", "OtlpSinkConfig"]

_GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_REJECTED_FIELD = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}
_DETAILS_KEY = "grpc-status-details-bin"
#: The sink's options, as the hints of its failures name them; the statuses OTLP/HTTP retries.
OTLP_HTTP = HttpSettings(
    peer="the collector",
    url="endpoint",
    timeout="timeout_seconds",
    header_values="`headers` and the tenant header",
    credentials="`headers` (e.g. an authorization header)",
    trust="trust its issuing CA with `tls.ca_file`",
    method=None,
    pace=None,
    smaller="lower `rows_per_request`",
    request="the data is not sent again; check `endpoint`, its path and `headers`",
    retried=frozenset({429, 502, 503, 504}),
    why_not="OTLP/HTTP retries only 429, 502, 503 and 504 (the OTLP specification)",
)


class OtlpSinkConfig(ComponentConfig):
    """Forward telemetry rows to an OTLP collector."""

    endpoint: str = Field(
        description="gRPC: host:port (127.0.0.1:4317). HTTP: the base URL "
        "(http://127.0.0.1:4318); /v1/traces, /v1/metrics and /v1/logs are added.",
    )
    protocol: Literal["grpc", "http"] = Field("grpc", description="OTLP/gRPC or OTLP/HTTP.")
    compression: Literal["gzip", "none"] = Field("gzip", description="Request compression.")
    encoding: Literal["protobuf", "json"] = Field(
        "protobuf",
        description="HTTP: request body encoding, binary protobuf or OTLP/JSON (gRPC is "
        "always protobuf).",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers (gRPC metadata) of every request, e.g. an authorization.",
    )
    tenant_header: str | None = Field(
        "X-Scope-OrgID",
        min_length=1,
        description="Header (gRPC metadata) carrying the tenant of each request: requests hold "
        "rows of one tenant (the tenant_id column); null: no header, tenants mixed.",
    )
    rows_per_request: int = Field(
        8_192, ge=1, description="Spans, data points or log records in one request, at most."
    )
    timeout_seconds: float = Field(10.0, gt=0, description="Time allowed for one request.")
    tls: TlsOptions | None = Field(
        None, description="TLS settings (gRPC: TLS is off without them; HTTP: https:// URLs)."
    )

    @field_validator("endpoint")
    @classmethod
    def _an_address(cls, endpoint: str) -> str:
        if "://" in endpoint:
            problem = url_problem(endpoint)
            if problem is not None:
                raise ValueError(problem)
        return endpoint

    @model_validator(mode="after")
    def _fits_the_protocol(self) -> OtlpSinkConfig:
        if self.protocol == "http":
            problem = url_problem(self.endpoint)
        else:
            problem = _grpc_target_problem(self.endpoint)
        if problem is not None:
            raise ValueError(f"`endpoint`: {problem}")
        return self


def _grpc_target_problem(endpoint: str) -> str | None:
    """What is wrong with a gRPC ``endpoint`` (host:port, or http(s)://host:port)."""
    target = endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in target:
        return f"{endpoint!r} is not host:port (e.g. 127.0.0.1:4317)"
    return None


@sink("otlp", config=OtlpSinkConfig)
class OtlpSink:
    """Telemetry rows forwarded to another collector over OTLP/gRPC or OTLP/HTTP."""

    def __init__(self, cfg: OtlpSinkConfig) -> None:
        self.cfg = cfg
        self.where = f"sink otlp {cfg.protocol} {cfg.endpoint}"
        self._channel: Any = None
        self._client: Any = None
        self._base_dir = "."
        self._log: Any = None
        self._progress: tuple[int, set[int]] = (0, set())  # (batch id, accepted requests)
        self.sent = 0  # items accepted by the collector
        self.rejected = 0  # items it refused for good (partial_success)

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        if "signal" not in schema.names:
            raise ConfigError.one(
                "the rows have no `signal` column: the otlp sink forwards rows of the "
                "telemetry layout",
                self.where,
                "read them with an otlp receiver (or kafka/nats with an otlp format)",
            )
        self._base_dir = ctx.base_dir
        self._log = ctx.log
        self._connect()

    def _tls_wanted(self) -> bool:
        return self.cfg.tls is not None or self.cfg.endpoint.startswith("https://")

    def _connect(self) -> None:
        cfg = self.cfg
        if cfg.protocol == "grpc":
            import grpc
            import grpc.aio

            target = cfg.endpoint.removeprefix("http://").removeprefix("https://")
            if self._tls_wanted():
                credentials = grpc.ssl_channel_credentials(*self._pem_files())
                self._channel = grpc.aio.secure_channel(target, credentials)
            else:
                self._channel = grpc.aio.insecure_channel(target)
            return
        import httpx

        verify: Any = True
        if cfg.tls is not None:
            verify = cfg.tls.context(self._base_dir)
        self._client = httpx.AsyncClient(timeout=cfg.timeout_seconds, verify=verify)

    def _pem_files(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        from quiver.pipeline.paths import resolve_path

        def read(name: str | None) -> bytes | None:
            if not name:
                return None
            path = resolve_path(name, self._base_dir)
            try:
                with open(path, "rb") as fh:
                    return fh.read()
            except OSError as exc:
                raise ConfigError.one(
                    f"cannot read the TLS file {path}: {exc}", self.where, "check the path"
                ) from exc

        tls = self.cfg.tls
        if tls is None:
            return None, None, None
        return read(tls.ca_file), read(tls.key_file), read(tls.cert_file)

    async def write(self, batch: pa.RecordBatch) -> None:
        """Export every request of the batch; return once the collector accepted them all."""
        from quiver.ingest.otlp.rebuild import RebuildError, rebuild_requests, signal_rows

        batch_id = id(batch)
        if self._progress[0] != batch_id:
            self._progress = (batch_id, set())
        accepted = self._progress[1]
        try:
            requests = []
            step = self.cfg.rows_per_request
            for tenant, part in self._by_tenant(without_line(batch)):
                for signal, rows in signal_rows(part).items():
                    for o in range(0, len(rows), step):
                        chunk = rows[o : o + step]
                        requests.append((tenant, signal, len(chunk), chunk))
            built = [
                (tenant, signal, count, rebuild_requests(signal, rows))
                for tenant, signal, count, rows in requests
            ]
        except RebuildError as exc:
            raise PermanentError.one(
                str(exc), self.where, "send rows of the telemetry layout to the otlp sink"
            ) from exc
        if self._channel is None and self._client is None:
            self._connect()  # after a failure: the engine retries the write
        for index, (tenant, signal, count, request) in enumerate(built):
            if index in accepted:
                continue
            extra = {} if tenant is None else {self.cfg.tenant_header or "": tenant}
            if self.cfg.protocol == "grpc":
                response = await self._export_grpc(signal, request.SerializeToString(), extra)
            else:
                response = await self._export_http(signal, request, extra)
            accepted.add(index)
            rejected = getattr(response.partial_success, _REJECTED_FIELD[signal], 0)
            self.rejected += rejected
            self.sent += count - rejected
            if rejected or response.partial_success.error_message:
                self._warn(
                    f"the collector rejected {rejected} of {count} {signal} items: "
                    f"{response.partial_success.error_message or 'no reason given'}"
                )
        self._progress = (0, set())  # done: a later batch may reuse this one's id

    def _by_tenant(self, batch: pa.RecordBatch) -> list[tuple[str | None, pa.RecordBatch]]:
        """The rows of each tenant of ``batch`` (in order), rows without one under None; the
        whole batch under None without ``tenant_header`` or a tenant column."""
        index = batch.schema.get_field_index(TENANT_COLUMN)
        if self.cfg.tenant_header is None or index < 0:
            return [(None, batch)]
        tenants = batch.column(index).to_pylist()
        rows: dict[str | None, list[int]] = {}
        for i, tenant in enumerate(tenants):
            rows.setdefault(tenant, []).append(i)
        if len(rows) == 1:
            return [(tenants[0] if tenants else None, batch)]
        return [(t, batch.take(pa.array(r, pa.int64()))) for t, r in rows.items()]

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        """The configured headers with ``extra`` (the tenant's) in place of any of the same
        name, whatever its case."""
        names = {k.lower() for k in extra}
        return {k: v for k, v in self.cfg.headers.items() if k.lower() not in names} | extra

    def _warn(self, text: str) -> None:
        if self._log is not None:
            self._log(f"{self.where}: {text}", "warning")

    # ----------------------------------------------------------------- gRPC

    async def _export_grpc(self, signal: str, body: bytes, extra: dict[str, str]) -> Any:
        import grpc

        from quiver.ingest.otlp.decode import RESPONSE_TYPES

        call = self._channel.unary_unary(
            _GRPC_METHODS[signal],
            request_serializer=None,
            response_deserializer=RESPONSE_TYPES[signal].FromString,  # type: ignore[index]
        )
        try:
            return await call(
                body,
                timeout=self.cfg.timeout_seconds,
                metadata=tuple((k.lower(), v) for k, v in {**self.cfg.headers, **extra}.items())
                or None,
                compression=grpc.Compression.Gzip
                if self.cfg.compression == "gzip"
                else grpc.Compression.NoCompression,
            )
        except grpc.aio.AioRpcError as exc:
            error = _grpc_error(exc, self.where)
            if isinstance(error, RetryableError):
                await self._close()
            raise error from exc

    # ----------------------------------------------------------------- HTTP

    async def _export_http(self, signal: str, request: Any, extra: dict[str, str]) -> Any:
        import httpx

        from quiver.ingest.otlp.rebuild import request_json

        json = self.cfg.encoding == "json"
        body = request_json(request) if json else request.SerializeToString()
        content_type = "application/json" if json else "application/x-protobuf"
        headers = {"Content-Type": content_type, **self._headers(extra)}
        if self.cfg.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        url = self.cfg.endpoint.rstrip("/") + f"/v1/{signal}"
        deadline = asyncio.get_running_loop().time() + self.cfg.timeout_seconds
        timed_out = False
        try:
            request = self._client.build_request("POST", url, content=body, headers=headers)
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._client.send(request, stream=True)
            except TimeoutError:
                timed_out = True
            if timed_out:  # raised outside the handler: no TLS state in its context
                raise httpx.ReadTimeout(f"no answer within {self.cfg.timeout_seconds}s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = request_error(exc, self.where, OTLP_HTTP)
            await self._close()
            raise error from exc
        try:
            if response.status_code == 200:
                return await self._accepted(response, signal, json, deadline)
            try:
                async with asyncio.timeout_at(deadline):
                    start = await body_start(response)
            except (TimeoutError, httpx.HTTPError):
                start = b""  # the status stands
        finally:
            await response.aclose()
        raise status_error(
            response.status_code,
            response.reason_phrase,
            response.headers,
            _http_message(start, response.headers.get("content-type", "")),
            self.where,
            OTLP_HTTP,
        )

    async def _accepted(self, response: Any, signal: str, json: bool, deadline: float) -> Any:
        """The answer to an accepted export (200), read up to :data:`DRAINED` bytes and until
        ``deadline``; an empty one, with a warning, when it cannot be read: the collector
        holds the data all the same."""
        import httpx
        from google.protobuf import json_format
        from google.protobuf.message import DecodeError

        from quiver.ingest.otlp.decode import RESPONSE_TYPES

        answer = RESPONSE_TYPES[signal]()  # type: ignore[index]
        try:
            async with asyncio.timeout_at(deadline):
                content = await read_body(
                    response, DRAINED, self.where, "1 MiB", "ask the collector's operators why"
                )
            if json and content:
                json_format.Parse(content, answer, ignore_unknown_fields=True)
            elif content:
                answer.ParseFromString(content)
        except (
            TimeoutError,
            httpx.HTTPError,
            QuiverError,
            DecodeError,
            json_format.ParseError,
        ) as exc:
            if isinstance(exc, TimeoutError):
                reason = f"it did not end within {self.cfg.timeout_seconds}s"
            elif isinstance(exc, QuiverError):
                reason = f"it is longer than {DRAINED} bytes"
            else:
                reason = f"{type(exc).__name__}: {exc}"
            self._warn(
                f"the collector accepted the data but its answer could not be read ({reason}); "
                "items it may have rejected are not counted"
            )
            return RESPONSE_TYPES[signal]()  # type: ignore[index]
        return answer

    async def commit(self) -> None:
        await self._close()

    async def abort(self) -> None:
        await self._close()

    async def _close(self) -> None:
        channel, self._channel = self._channel, None
        client, self._client = self._client, None
        with contextlib.suppress(Exception):
            if channel is not None:
                await channel.close()
            if client is not None:
                await client.aclose()


_RETRYABLE_GRPC = frozenset(
    {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
)


def _grpc_error(exc: Any, where: str) -> QuiverError:
    """A failed gRPC export as a typed error, by the OTLP specification's table; a TLS
    failure, which gRPC reports as UNAVAILABLE, is permanent as no retry mends it."""
    code = exc.code().name
    details = exc.details() or ""
    tls = _grpc_tls_failure(details)
    if code == "UNAVAILABLE" and tls is not None:
        return PermanentError.one(f"the collector answered {code}: {details}", where, tls)
    hint = _retry_info(exc.trailing_metadata())
    if code in _RETRYABLE_GRPC or (code == "RESOURCE_EXHAUSTED" and hint is not None):
        return _retryable(f"the collector answered {code}: {details}", where, hint)
    return PermanentError.one(
        f"the collector refused the data with {code}: {details}",
        where,
        "the data is not sent again; check the endpoint and the credentials",
    )


def _grpc_tls_failure(details: str) -> str | None:
    """The fix for a TLS failure named in a gRPC status's details, or None."""
    lowered = details.lower()
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return (
            "the collector's TLS certificate failed verification, which fails every retry: "
            "fix its certificate, or trust its issuing CA with `tls.ca_file`"
        )
    if "handshake failed" in lowered or "wrong_version_number" in lowered:
        return (
            "the TLS handshake failed: check that the collector serves TLS on this port "
            "(`tls` set for a plain port fails this way), the CA in `tls.ca_file`, and that "
            "it accepts a current TLS version"
        )
    return None


def _retryable(message: str, where: str, after: float | None) -> RetryableError:
    wait = f"; it asked to wait {after:.1f}s" if after is not None else ""
    if after is not None and after > MAX_RETRY_AFTER:
        wait += f", cut to {MAX_RETRY_AFTER:.0f}s"
        after = MAX_RETRY_AFTER
    error = RetryableError(
        [ErrorDetail(message, where, f"the collector is busy or away{wait}; the run retries")]
    )
    error.retry_after = after
    return error


def _retry_info(metadata: Any) -> float | None:
    """The RetryInfo delay in a gRPC status's details, or None."""
    from google.rpc import error_details_pb2, status_pb2

    for key, value in metadata or ():
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                delay = info.retry_delay
                return float(delay.seconds) + float(delay.nanos) / 1e9
    return None


def _http_message(start: bytes, content_type: str) -> str:
    """The message of an OTLP/HTTP error body (a google.rpc.Status) from the start of the
    body, or the body's text."""
    from google.protobuf.message import DecodeError
    from google.rpc import status_pb2

    if "protobuf" in content_type:
        try:
            return status_pb2.Status.FromString(start).message or "(no message)"
        except DecodeError:
            pass
    return start[:BODY_START].decode("utf-8", "replace")
