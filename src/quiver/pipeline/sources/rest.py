"""The ``rest`` source: records from a paginated JSON HTTP API.

One request per page, through :class:`quiver.runtime.delivery.Delivery`: 429, 5xx, timeouts
and connection errors are retried with exponential backoff and jitter (``retry``); other 4xx,
and what a retry cannot mend (a redirect loop, a body its Content-Encoding does not fit, a
TLS certificate that fails verification; :func:`~quiver.runtime.outbound_http.request_error`)
fail at once with the status or cause and the start of the response body. Records are found at a
JSON path in each response (``records: data.items``); pagination follows a page number, an
offset, a cursor or a next-page URL read from the response, or the ``Link: <...>; rel="next"``
header.

Records become Arrow columns: the first batch fixes the schema (or ``schema`` declares it).
Values are read by the rules of :mod:`quiver.pipeline.json_text`: a value that is not of its
column's type (``2.5`` in an ``int`` column) or a field that is not in the schema rejects the
record with its number and field, as a bad CSV row is rejected; numbers in timestamp columns
are seconds since 1970-01-01 unless the type names another unit (``timestamp(ms)``). Each
batch carries the line column: the 1-based record number.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quiver.pipeline.clients.http import HttpAuth, RateLimiter
from quiver.pipeline.component import (
    ComponentConfig,
    RowError,
    RowRejecting,
    RunContext,
    source,
)
from quiver.pipeline.json_text import (
    MAX_JSON_DEPTH,
    DuplicateKeyError,
    JsonNumber,
    JsonTooDeepError,
    duplicate_key,
    parse_json,
    parse_json_marking,
)
from quiver.pipeline.records import RecordBatcher, arrow_type
from quiver.runtime.delivery import Delivery, RetryPolicy
from quiver.runtime.errors import PermanentError
from quiver.runtime.outbound_http import MAX_REDIRECTS, body_start, http_error, read_body

__all__ = ["JsonPath", "RestSource", "RestSourceConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PagePagination(_Model):
    """``?page=1``, ``?page=2``, ... until a page has fewer records than `size`."""

    param: str = Field("page", description="Query parameter holding the page number.")
    start: int = Field(1, description="Number of the first page.")
    size_param: str | None = Field(None, description="Query parameter for the page size.")
    size: int | None = Field(None, ge=1, description="Page size; a shorter page is the last.")


class OffsetPagination(_Model):
    """``?offset=0&limit=100``, ``?offset=100&limit=100``, ... until a short page."""

    param: str = Field("offset", description="Query parameter holding the offset.")
    limit_param: str = Field("limit", description="Query parameter holding the page size.")
    limit: int = Field(100, ge=1, description="Records per page; a shorter page is the last.")
    start: int = Field(0, ge=0, description="Offset of the first page.")


class CursorPagination(_Model):
    """The next page's cursor is read from the response; no cursor ends the listing."""

    path: str = Field(description="JSON path of the next cursor in the response body.")
    param: str = Field("cursor", description="Query parameter the cursor is sent in.")


class LinkPagination(_Model):
    """Follow the ``Link: <url>; rel="next"`` response header (GitHub style)."""

    rel: str = Field("next", description="The relation to follow.")


class NextUrlPagination(_Model):
    """The response holds the full URL of the next page (``{"next": "https://..."}``)."""

    path: str = Field("next", description="JSON path of the next page's URL in the body.")


class Pagination(_Model):
    """Exactly one pagination style."""

    page: PagePagination | None = Field(None, description="Page numbers: ?page=1, 2, ...")
    offset: OffsetPagination | None = Field(
        None, description="Offsets: ?offset=0&limit=100, ?offset=100&limit=100, ..."
    )
    cursor: CursorPagination | None = Field(
        None, description="A cursor read from each response, sent with the next request."
    )
    next_url: NextUrlPagination | None = Field(
        None, description="The next page's URL, read from each response."
    )
    link: LinkPagination | None = Field(
        None, description='The `Link: <url>; rel="next"` response header.'
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Pagination:
        styles = (self.page, self.offset, self.cursor, self.next_url, self.link)
        if sum(x is not None for x in styles) != 1:
            raise ValueError(
                "choose exactly one of `page`, `offset`, `cursor`, `next_url` or `link`"
            )
        return self


class RestSourceConfig(ComponentConfig):
    """Read records from a JSON API."""

    url: str = Field(description="URL of the first page.")
    method: Literal["GET", "POST"] = Field("GET", description="HTTP method.")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Query parameters sent with every page."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    body: dict[str, Any] | None = Field(None, description="JSON body of POST requests.")
    auth: HttpAuth | None = Field(None, description="Authentication (bearer, basic or header).")
    records: str = Field(
        "$",
        description="JSON path of the record list in each response: `$` (the body itself), "
        "`data.items`, `$.results[*]`. A single object counts as one record.",
    )
    pagination: Pagination | None = Field(None, description="How to get the next page.")
    max_pages: int | None = Field(None, ge=1, description="Stop after this many pages.")
    rate_limit: float | None = Field(
        None, gt=0, description="At most this many requests per second."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for one response.")
    max_page_bytes: int = Field(
        256 << 20,
        gt=0,
        description="Largest response body (one page, after decompression) read, in bytes; "
        "a larger one fails the run naming its URL, without being read further.",
    )
    schema_: dict[str, str] | None = Field(
        None,
        alias="schema",
        description="Column types (int, float, decimal(p,s), str, bool, date, time, timestamp, "
        "timestamp(ms, UTC), binary, json); inferred from the first batch when left out. "
        "A number in a timestamp column counts seconds since 1970-01-01, or the unit in "
        "timestamp(s|ms|us|ns).",
    )
    batch_rows: int = Field(10_000, ge=1, description="Records per batch.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retries of one page.")

    @model_validator(mode="after")
    def _known_types(self) -> RestSourceConfig:
        for name, type_name in (self.schema_ or {}).items():
            arrow_type(type_name, name)
        JsonPath(self.records)
        if self.pagination and self.pagination.cursor:
            JsonPath(self.pagination.cursor.path)
        if self.pagination and self.pagination.next_url:
            JsonPath(self.pagination.next_url.path)
        return self


# -- JSON paths --------------------------------------------------------------------------

_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\[\*\]|\[['\"]([^'\"]+)['\"]\]")


class JsonPath:
    """The dotted subset of JSONPath: ``$``, ``a.b``, ``$.a[0].b``, ``a['x y']``, ``a[*]``."""

    def __init__(self, text: str) -> None:
        self.text = text
        rest = text.strip()
        if rest.startswith("$"):
            rest = rest[1:]
        if rest and not rest.startswith((".", "[")):
            rest = "." + rest
        self.steps: list[str | int | None] = []
        pos = 0
        shift = len(text) - len(rest)
        while pos < len(rest):
            m = _STEP.match(rest, pos)
            if m is None:
                raise ValueError(
                    f"bad JSON path {text!r} at character {max(pos + shift, 0) + 1}: "
                    "use `a.b`, `a[0]`, `a['key with spaces']` or `a[*]`"
                )
            if m.group(1) is not None:
                self.steps.append(m.group(1))
            elif m.group(2) is not None:
                self.steps.append(int(m.group(2)))
            elif m.group(3) is not None:
                self.steps.append(m.group(3))
            else:
                self.steps.append(None)  # [*]: the list itself
            pos = m.end()

    def find(self, doc: Any) -> Any:
        """The value at this path, or None when any step is missing."""
        value = doc
        for step in self.steps:
            if step is None:
                continue
            if isinstance(step, int):
                if not isinstance(value, list) or step >= len(value):
                    return None
                value = value[step]
            else:
                if not isinstance(value, dict):
                    return None
                value = value.get(step)
            if value is None:
                return None
        return value


def _json_text(value: Any) -> Any:
    """A value found in a response as it can go into a query string."""
    return str(value) if isinstance(value, JsonNumber) else value


def _parse_page(content: bytes) -> tuple[Any, bool]:
    """The JSON document of a page, and whether an object in it names a key twice."""
    try:
        return parse_json(content), False
    except DuplicateKeyError:
        # the records naming a key twice are refused, the others taken
        return parse_json_marking(content), True


def _next_link(header: str, rel: str) -> str | None:
    for part in header.split(","):
        m = re.match(r"\s*<([^>]*)>(.*)", part)
        if m and re.search(rf'rel="?([^";]*\s)?{re.escape(rel)}(\s[^";]*)?"?', m.group(2)):
            return m.group(1)
    return None


@source("rest", config=RestSourceConfig)
class RestSource(RowRejecting):
    """Records from a paginated JSON HTTP API."""

    def __init__(self, cfg: RestSourceConfig) -> None:
        self.cfg = cfg
        self.records_path = JsonPath(cfg.records)
        self.where = f"source rest {cfg.url}"
        self._errors: list[RowError] = []

    def take_errors(self) -> list[RowError]:
        """Records that did not fit the schema, by record number."""
        errors, self._errors = self._errors, []
        return errors

    def _check_envelope(self, doc: Any, records: list[Any], page: int, url: str) -> None:
        """Fail when an object outside the records (the page's own fields: pagination,
        totals) names a key twice: which value the page meant cannot be told."""
        key = duplicate_key(doc, frozenset(id(r) for r in records))
        if key is not None:
            raise PermanentError.one(
                f"page {page}: key {key!r} appears twice in one JSON object outside the "
                "records, so which value the page means cannot be told",
                f"{self.where} ({url})",
                "fix the API's response; a key may appear once in a JSON object",
            )

    def _batch(self, batcher: RecordBatcher, records: list[Any]) -> pa.RecordBatch:
        batch, errors = batcher.split(records)
        self._errors.extend(errors)
        return batch

    def _client(self) -> httpx.AsyncClient:
        headers = {"Accept": "application/json", **self.cfg.headers}
        if self.cfg.auth is not None:
            headers.update(self.cfg.auth.headers())
        return httpx.AsyncClient(
            headers=headers,
            timeout=self.cfg.timeout,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        )

    async def _fetch(
        self, client: httpx.AsyncClient, url: str, params: dict[str, Any], limiter: RateLimiter
    ) -> tuple[httpx.Response, bytes]:
        """One page: its response and its body, read as it streams in up to
        ``max_page_bytes``."""
        await limiter.wait()
        where = f"{self.cfg.method} {url}"
        try:
            request = client.build_request(
                self.cfg.method,
                url,
                params=params or None,
                content=orjson.dumps(self.cfg.body) if self.cfg.body is not None else None,
                headers={"Content-Type": "application/json"} if self.cfg.body is not None else None,
            )
            response = await client.send(request, stream=True)
            try:
                if response.status_code >= 300:
                    limiter.observe(response)
                    raise http_error(None, response, where, await body_start(response))
                return response, await read_body(
                    response, self.cfg.max_page_bytes, where, "max_page_bytes"
                )
            finally:
                await response.aclose()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise http_error(exc, None, where) from exc

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        cfg = self.cfg
        batcher = RecordBatcher(self.where, cfg.schema_)
        delivery = Delivery(
            cfg.retry,
            on_retry=lambda name, attempt, delay, exc: ctx.log(
                f"{name}: attempt {attempt} failed ({exc}); retrying in {delay:.1f}s", "warning"
            ),
        )
        limiter = RateLimiter(cfg.rate_limit)
        pending: list[dict[str, Any]] = []
        pagination = cfg.pagination
        url: str | None = cfg.url
        params: dict[str, Any] = dict(cfg.params)
        if pagination and pagination.page:
            params[pagination.page.param] = pagination.page.start
            if pagination.page.size_param and pagination.page.size:
                params[pagination.page.size_param] = pagination.page.size
        if pagination and pagination.offset:
            params[pagination.offset.param] = pagination.offset.start
            params[pagination.offset.limit_param] = pagination.offset.limit
        pages = 0
        async with self._client() as client:
            while url is not None:
                response, content = await delivery.call(
                    functools.partial(self._fetch, client, url, dict(params), limiter),
                    name="source rest",
                )
                pages += 1
                try:
                    doc, duplicates = _parse_page(content)
                except JsonTooDeepError as exc:
                    raise PermanentError.one(
                        f"page {pages} nests objects and arrays {exc.depth} levels deep, more "
                        f"than the {MAX_JSON_DEPTH} the source reads",
                        f"{self.where} ({response.url})",
                        "check that the URL answers with the API's records; hold deeper "
                        "parts as JSON strings",
                    ) from None
                except ValueError as exc:
                    raise PermanentError.one(
                        f"page {pages} is not JSON: {exc}",
                        f"{self.where} ({response.url})",
                        "check the URL and the Accept header; the source reads JSON APIs",
                    ) from None
                found = self.records_path.find(doc)
                page_records = (
                    [] if found is None else found if isinstance(found, list) else [found]
                )
                if duplicates:
                    self._check_envelope(doc, page_records, pages, str(response.url))
                pending.extend(page_records)
                while len(pending) >= cfg.batch_rows:
                    chunk, pending = pending[: cfg.batch_rows], pending[cfg.batch_rows :]
                    batch = self._batch(batcher, chunk)
                    if batch.num_rows:
                        yield batch
                if cfg.max_pages is not None and pages >= cfg.max_pages:
                    break
                previous = (url, params)
                url, params = self._next(response, doc, params, len(page_records))
                if url is not None and (url, params) == previous:
                    raise PermanentError.one(
                        f"pagination does not advance: page {pages + 1} would request "
                        f"{url} {params} again",
                        self.where,
                        "check the pagination settings against the API's paging fields",
                    )
        if pending and (batch := self._batch(batcher, pending)).num_rows:
            yield batch

    def _next(
        self, response: httpx.Response, doc: Any, params: dict[str, Any], count: int
    ) -> tuple[str | None, dict[str, Any]]:
        """The URL and parameters of the next page, or (None, ...) after the last."""
        p = self.cfg.pagination
        url = str(self.cfg.url)
        if p is None or (count == 0 and (p.page or p.offset)):
            return None, params
        if p.page is not None:
            if p.page.size is not None and count < p.page.size:
                return None, params
            return url, {**params, p.page.param: int(params[p.page.param]) + 1}
        if p.offset is not None:
            if count < p.offset.limit:
                return None, params
            return url, {**params, p.offset.param: int(params[p.offset.param]) + count}
        if p.cursor is not None:
            cursor = JsonPath(p.cursor.path).find(doc)
            if cursor in (None, "", False):
                return None, params
            return url, {**params, p.cursor.param: _json_text(cursor)}
        if p.next_url is not None:
            target = JsonPath(p.next_url.path).find(doc)
            if not isinstance(target, str) or not target:
                return None, params
            # The URL carries its own query string (the configured params included).
            return str(response.url.join(target)), {}
        assert p.link is not None
        link = _next_link(response.headers.get("link", ""), p.link.rel)
        if not link:
            return None, params
        # The link carries its own query string; only the configured params are dropped.
        return str(response.url.join(link)), {}
