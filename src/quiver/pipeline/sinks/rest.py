"""The ``rest`` sink: send rows to an HTTP endpoint as JSON, ``batch_rows`` rows per request.

Bodies are a JSON array of row objects (``format: json``), the same wrapped in an object
(``wrap: records`` -> ``{"records": [...]}``), or newline-delimited JSON (``format: jsonl``).
Values are written by the rules of :mod:`quiver.pipeline.json_text` (what the ``rest`` and
``rabbitmq`` sources read back, value for value): decimals as exact strings, binary as
base64, times as ISO 8601 text, NaN and infinities as ``"NaN"``/``"Infinity"``/``"-Infinity"``.
Every request carries an ``Idempotency-Key`` header that is the same when the request is
sent again, so a server that honours it applies each request once even when a retry follows
a lost response.

HTTP has no transactions: requests are sent as rows arrive, and rows sent before a later
failure stay sent (at-least-once delivery). ``commit`` and ``abort`` only close the client.
A 429, 5xx, timeout or connection error raises RetryableError (the engine retries the write;
requests already accepted for that batch are not sent again); other 4xx, and failures a retry
cannot mend (a TLS certificate that fails verification, a URL that is not http(s)), raise
PermanentError with the status or cause and the start of the response body.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
import orjson
import pyarrow as pa
from pydantic import Field

from quiver.pipeline.clients.http import HttpAuth, RateLimiter
from quiver.pipeline.component import (
    ComponentConfig,
    RunContext,
    sink,
    without_line,
)
from quiver.pipeline.json_text import dump_json, json_rows
from quiver.runtime.outbound_http import body_start, drain, http_error

__all__ = ["RestSink", "RestSinkConfig"]


class RestSinkConfig(ComponentConfig):
    """Send rows to an HTTP endpoint."""

    url: str = Field(description="Endpoint that receives the rows.")
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    auth: HttpAuth | None = Field(None, description="Authentication (bearer, basic or header).")
    format: Literal["json", "jsonl"] = Field(
        "json", description="json: an array of objects; jsonl: one object per line."
    )
    wrap: str | None = Field(
        None, description="Send `{wrap: [rows]}` instead of a bare array (format json only)."
    )
    batch_rows: int = Field(500, ge=1, description="Rows per request.")
    rate_limit: float | None = Field(
        None, gt=0, description="At most this many requests per second."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for one response.")


@sink("rest", config=RestSinkConfig)
class RestSink:
    """Rows as JSON requests to an HTTP endpoint (at-least-once)."""

    def __init__(self, cfg: RestSinkConfig) -> None:
        self.cfg = cfg
        self.where = f"sink rest {cfg.url}"
        self.client: httpx.AsyncClient | None = None
        self.limiter = RateLimiter(cfg.rate_limit)
        self.run_id = ""
        self.requests = 0
        # Progress inside the batch being written, so a retried write resumes after the
        # requests that already succeeded.
        self._current: tuple[int, int] = (0, 0)  # (id of batch, rows already sent)

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        headers = {**self.cfg.headers}
        if self.cfg.auth is not None:
            headers.update(self.cfg.auth.headers())
        self.run_id = ctx.run_id
        self.client = httpx.AsyncClient(headers=headers, timeout=self.cfg.timeout)

    def _body(self, rows: list[dict[str, Any]]) -> tuple[bytes, str]:
        if self.cfg.format == "jsonl":
            lines = b"".join(dump_json(r, orjson.OPT_APPEND_NEWLINE, from_rows=True) for r in rows)
            return lines, "application/x-ndjson"
        payload: Any = {self.cfg.wrap: rows} if self.cfg.wrap else rows
        return dump_json(payload, from_rows=True), "application/json"

    async def write(self, batch: pa.RecordBatch) -> None:
        assert self.client is not None, "write() before open()"
        batch_id = id(batch)
        done = self._current[1] if self._current[0] == batch_id else 0
        self._current = (batch_id, done)
        batch = without_line(batch)
        size = self.cfg.batch_rows
        for offset in range(done, batch.num_rows, size):
            rows = json_rows(batch.slice(offset, size))
            body, content_type = self._body(rows)
            key = f"{self.run_id}-{self.requests + 1}"
            await self.limiter.wait()
            await self._send(body, content_type, key)
            self.requests += 1
            self._current = (batch_id, offset + len(rows))
        self._current = (0, 0)  # done: a later batch may reuse this one's id

    async def _send(self, body: bytes, content_type: str, key: str) -> None:
        """One request; of the answer only the start of an error's body is kept (for the
        message), so a server answering with a huge body costs no memory."""
        assert self.client is not None
        try:
            request = self.client.build_request(
                self.cfg.method,
                self.cfg.url,
                content=body,
                headers={"Content-Type": content_type, "Idempotency-Key": key},
            )
            response = await self.client.send(request, stream=True)
            try:
                if response.status_code >= 300:
                    self.limiter.observe(response)
                    raise http_error(None, response, self.where, await body_start(response))
                await drain(response)
            finally:
                await response.aclose()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise http_error(exc, None, self.where) from exc

    async def commit(self) -> None:
        await self._close()

    async def abort(self) -> None:
        await self._close()

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()
