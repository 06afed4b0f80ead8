"""The GraphQL HTTP surface: a lean ASGI app following GraphQL over HTTP.

``create_app(schema, settings)`` returns the ASGI application. Its lifespan opens the
:class:`~quiver.graphql.engine.GraphQLEngine` (one per server process). Routes:

* ``GET|POST <graphql.path>``: GraphQL requests, JSON (and batched JSON arrays) over POST,
  query-string parameters over GET; GraphiQL for browsers on GET with ``text/html``;
* ``GET <graphql.path>/static/<package>-<version>/<file>``: GraphiQL's assets, cached for good;
* ``GET /healthz``: the process is up; ``GET /readyz``: the database answers;
* ``GET /metrics``: Prometheus text format (with the metrics of the registries of
  :mod:`quiver.runtime.metrics`: an in-process observer dispatcher's).

Media types: responses are ``application/graphql-response+json`` or ``application/json`` as
the ``Accept`` header asks (``application/json`` when it is absent or ``*/*``). GraphQL request
errors (parse, validation, variable coercion) are 400 with the former and 200 with the latter;
malformed HTTP requests are 400 with either. Internal failures are logged and answered 500 with
a generic message and ``extensions.code``, never the exception text. A query that found no free
database connection within ``database.pool_timeout_ms`` is answered 503 with ``Retry-After``
and ``DATABASE_BUSY``.

Every answer carries ``X-Request-Id``: the client's, when it sent a usable one, else a new one;
log records written while the request runs carry it too. With ``cors.allow_origins`` set,
Starlette's ``CORSMiddleware`` answers preflights and adds the CORS headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from contextvars import ContextVar
from random import getrandbits as _random_bits
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from quiver.auth import ANONYMOUS, AuthenticationError, Authenticator, Principal, authenticator_for
from quiver.config.settings import QuiverSettings
from quiver.graphql.apq import ApqError, ApqStore, resolve_persisted_query
from quiver.graphql.engine import GraphQLEngine, Outcome
from quiver.graphql.graphiql import (
    ASSET_CACHE_CONTROL,
    graphiql_asset,
    graphiql_page,
    static_prefix,
)
from quiver.graphql.websocket import SendDeadlines, serve_websocket
from quiver.runtime.context import RequestContext, set_current_request
from quiver.runtime.logs import request_id
from quiver.runtime.metrics import exposed
from quiver.schema.ir import Schema
from quiver.schema.reflect import reflect_database
from quiver.sql.changelog import json_value

__all__ = ["GraphQLApp", "create_app"]

log = logging.getLogger("quiver.graphql.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_CT_GQL = b"application/graphql-response+json; charset=utf-8"
_CT_JSON = b"application/json; charset=utf-8"
_HTML = "text/html"
_ALLOW = b"GET, POST"
_MAX_ACCEPT_CACHE = 256
#: Longest Accept header whose negotiation is kept for the next request that sends it.
_MAX_CACHED_ACCEPT = 512
_REQUEST_ID = b"x-request-id"
#: Seconds a client told DATABASE_BUSY should wait before it tries again.
_RETRY_AFTER = b"1"
_USABLE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


#: The caller of the request being answered (set by the authentication hook).
_principal: ContextVar[Principal] = ContextVar("quiver_principal", default=ANONYMOUS)


def _new_request_id() -> str:
    """24 random hex digits: unique enough to follow one request through the logs.

    ``random`` (reseeded in each forked or spawned worker) costs half of ``os.urandom``'s
    system call; request ids only correlate records, they guard nothing.
    """
    return f"{_random_bits(96):024x}"


def create_app(schema: Schema, settings: QuiverSettings) -> GraphQLApp:
    """The ASGI app serving ``schema`` with ``settings``; the engine opens in its lifespan."""
    return GraphQLApp(schema, settings)


class _BodyDeadlines:
    """The requests reading their bodies and when each must have it, watched by one timer for
    them all: a timer of each request's own (``asyncio.timeout``) costs more than the rest of
    reading a small body. A request past its deadline is cancelled within a quarter of the
    timeout (a second at most) after it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.interval = min(1.0, seconds / 4)
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[Any]) -> None:
        loop = task.get_loop()
        self.reading[task] = loop.time() + self.seconds
        if self._timer is None:
            self._timer = loop.call_later(self.interval, self._check, loop)

    def stop(self, task: asyncio.Task[Any]) -> bool:
        """Forget ``task``; whether its deadline had passed (and it was cancelled for it)."""
        self.reading.pop(task, None)
        if task in self.expired:
            self.expired.discard(task)
            return True
        return False

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = [task for task, deadline in self.reading.items() if deadline <= now]
        for task in late:
            del self.reading[task]
            self.expired.add(task)
            task.cancel()
        self._timer = loop.call_later(self.interval, self._check, loop) if self.reading else None


class _HttpError(Exception):
    """A malformed HTTP request: answered with ``status`` whatever the media type."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = "BAD_REQUEST",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or []


#: Methods with series of their own in quiver_graphql_requests_total; others count as OTHER.
_COUNTED_METHODS = frozenset({"GET", "POST"})
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10)
_BUCKET_LABELS = (*(repr(float(b)) for b in _DURATION_BUCKETS), "+Inf")  # as Prometheus writes them


class _Metrics:
    """The server's own metrics, counted with plain numbers on the request path.

    The event loop is the only writer, so no lock is needed; the Prometheus families
    (counters with ``_created``, a histogram) are built when ``/metrics`` is scraped, as
    prometheus_client's own Counter and Histogram would expose them.
    """

    def __init__(self) -> None:
        now = time.time()
        self._requests: dict[tuple[str, str], list[float]] = {
            ("POST", "data"): [0, now],
            ("GET", "data"): [0, now],
        }
        self._ok_post = self._requests[("POST", "data")]
        self._ok_get = self._requests[("GET", "data")]
        self._errors: dict[str, list[float]] = {}
        self._bucket_counts = [0] * (len(_DURATION_BUCKETS) + 1)  # the last one is +Inf
        self._duration_sum = 0.0
        self._duration_created = now
        self.registry = CollectorRegistry(auto_describe=True)
        self.subscriptions = Gauge(
            "quiver_graphql_subscriptions_active",
            "GraphQL subscriptions running over WebSocket.",
            registry=self.registry,
        )
        self.registry.register(_MetricsCollector(self))

    def observe(self, method: str, result: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        if result == "data":
            (self._ok_post if method == "POST" else self._ok_get)[0] += 1
        else:
            # The client names the method: any but GET and POST counts as OTHER, so that
            # requests of made-up methods cannot add series without end.
            if method not in _COUNTED_METHODS:
                method = "OTHER"
            entry = self._requests.get((method, result))
            if entry is None:
                entry = self._requests[(method, result)] = [0, time.time()]
            entry[0] += 1
        self._bucket_counts[bisect_left(_DURATION_BUCKETS, elapsed)] += 1
        self._duration_sum += elapsed

    def error(self, code: str) -> None:
        entry = self._errors.get(code)
        if entry is None:
            entry = self._errors[code] = [0, time.time()]
        entry[0] += 1

    def families(self) -> list[Metric]:
        requests = CounterMetricFamily(
            "quiver_graphql_requests",
            "GraphQL HTTP requests by method and result.",
            labels=["method", "result"],
        )
        for (method, result), (count, created) in self._requests.items():
            requests.add_metric([method, result], count, created=created)
        duration = HistogramMetricFamily(
            "quiver_graphql_request_duration_seconds", "Time to answer a GraphQL HTTP request."
        )
        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(_BUCKET_LABELS, self._bucket_counts, strict=True):
            total += count
            cumulative.append((bound, total))
        duration.add_metric([], cumulative, self._duration_sum)
        duration.samples.append(
            Sample(
                "quiver_graphql_request_duration_seconds_created",
                {},
                self._duration_created,
            )
        )
        errors = CounterMetricFamily(
            "quiver_graphql_errors", "GraphQL errors returned, by extensions.code.", labels=["code"]
        )
        for code, (count, created) in self._errors.items():
            errors.add_metric([code], count, created=created)
        return [requests, duration, errors]

    def count_errors(self, body: bytes) -> None:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        for item in decoded if isinstance(decoded, list) else [decoded]:
            for err in item.get("errors") or ():
                code = (err.get("extensions") or {}).get("code", "UNKNOWN")
                self.error(str(code))


class _MetricsCollector(Collector):
    def __init__(self, metrics: _Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics.families()


def _error_body(message: str, code: str) -> bytes:
    return orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})


_Negotiated = tuple[str | None, bool]


def _media_type(raw: bytes | None, cache: dict[bytes | None, _Negotiated]) -> _Negotiated:
    """The JSON media type to answer with (None: none acceptable), and whether HTML is preferred."""
    hit = cache.get(raw)
    if hit is not None:
        return hit
    chosen = _negotiate(raw.decode("latin-1") if raw is not None else None)
    # Only the short values clients send: a header may be megabytes long.
    if len(cache) < _MAX_ACCEPT_CACHE and (raw is None or len(raw) <= _MAX_CACHED_ACCEPT):
        cache[raw] = chosen
    return chosen


def _negotiate(accept: str | None) -> _Negotiated:
    if accept is None or not accept.strip():
        return JSON, False
    scores: dict[str, tuple[float, int, int]] = {}
    for index, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        q = 1.0
        charset_ok = True
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"').lower()
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                # A weight is from 0 to 1 (RFC 9110): NaN, which compares false with every
                # weight, would make the choice depend on the order of the ranges.
                q = min(max(q, 0.0), 1.0) if math.isfinite(q) else (1.0 if q > 0 else 0.0)
            elif key == "charset" and value not in ("utf-8", "utf8"):
                charset_ok = False
        if q <= 0 or not charset_ok:
            continue
        for offer in (GRAPHQL_RESPONSE, JSON, _HTML):
            if media == offer:
                specificity = 2
            elif media == "application/*" and offer != _HTML:
                specificity = 1
            elif media == "*/*" and offer == JSON:
                # A wildcard means "anything": the widely understood application/json.
                specificity = 0
            else:
                continue
            score = (q, specificity, -index)
            if offer not in scores or score > scores[offer]:
                scores[offer] = score
    best_json: str | None = None
    for offer in (GRAPHQL_RESPONSE, JSON):
        # By weight, then by how exactly a range names it (application/json before
        # application/*); a tie goes to graphql-response+json, whichever the header lists first.
        if offer in scores and (best_json is None or scores[offer][:2] > scores[best_json][:2]):
            best_json = offer
    html = _HTML in scores and (best_json is None or scores[_HTML] >= scores[best_json])
    return best_json, html


class GraphQLApp:
    """The ASGI application (see the module docs)."""

    def __init__(
        self,
        schema: Schema | None,
        settings: QuiverSettings,
        resolvers: Sequence[Callable[..., Any]] = (),
    ) -> None:
        self.schema = schema
        self.settings = settings
        self.resolvers = resolvers
        gql = settings.graphql
        self.path = gql.path
        self.max_bytes = gql.max_request_bytes
        self.body_timeout = gql.body_timeout_ms / 1000
        self._body_deadlines = _BodyDeadlines(self.body_timeout)
        self._send_deadlines = SendDeadlines(settings.subscriptions.send_timeout_ms / 1000)
        self.max_batch = gql.max_batch
        self.apq: ApqStore | None = ApqStore() if gql.persisted_queries else None
        self.graphiql = graphiql_page(gql.path) if gql.graphiql else None
        self.static_prefix = static_prefix(gql.path)
        self.engine: GraphQLEngine | None = None
        self.metrics = _Metrics()
        self._accept_cache: dict[bytes | None, _Negotiated] = {}
        self._access_log = settings.log.access
        self.auth: Authenticator = authenticator_for(settings.auth)
        # What answers a request once its id is set (and its access-log line started): the
        # router, behind Starlette's CORS middleware when origins are allowed.
        self._handler: ASGIApp = self._route
        self._cors: ASGIApp | None = None
        cors = settings.cors
        if cors.allow_origins or cors.allow_origin_regex:
            from starlette.middleware.cors import CORSMiddleware

            self._handler = self._with_cors
            self._cors = CORSMiddleware(
                self._route,
                allow_origins=cors.allow_origins,
                allow_origin_regex=cors.allow_origin_regex,
                allow_methods=["GET", "POST"],
                allow_headers=cors.allow_headers,
                allow_credentials=cors.allow_credentials,
                expose_headers=["x-request-id"],
                max_age=cors.max_age,
            )

    # ----- ASGI -----
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._with_request_id(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # The socket's id, as a request's: on its accept and on every line logged for it.
            token = request_id.set(_request_id_of(scope))
            try:
                await self._websocket(scope, receive, send)
            finally:
                request_id.reset(token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GraphQL over WebSocket (subscriptions) on the GraphQL path; see
        :mod:`quiver.graphql.websocket`."""
        path = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path != self.path:
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        await serve_websocket(
            self.engine,
            self.settings,
            self.auth,
            scope,
            receive,
            send,
            self.metrics.subscriptions,
            self._send_deadlines,
        )

    async def _with_request_id(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route the request with its id set: every answer (``_respond``) and log record has it."""
        token = request_id.set(_request_id_of(scope))
        try:
            if self._access_log:
                await self._logged(scope, receive, send)
            else:
                await self._handler(scope, receive, send)
        finally:
            request_id.reset(token)

    async def _with_cors(self, scope: Scope, receive: Receive, send: Send) -> None:
        """CORS around the router. A preflight, which the middleware answers itself, gets the
        request id header that the router's answers carry."""
        assert self._cors is not None
        if scope["method"] == "OPTIONS":
            send = _with_request_id_header(send)
        await self._cors(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route the request and write its access-log line."""
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self._handler(scope, receive, send_noting_status)
        finally:
            method, path = scope["method"], scope["path"]
            ms = round((time.perf_counter() - started) * 1000, 3)
            fields = {"method": method, "path": path, "status": status, "ms": ms}
            log.info("%s %s %d", method, path, status, extra={"fields": fields})

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):
            path = path[len(root) :]  # mounted inside another app, or behind --root-path
        if path in ("/healthz", "/readyz") or path.startswith(self.static_prefix):
            pass  # probes and GraphiQL's static assets stay open
        elif self.auth.required and not await self._authenticated(scope, send):
            return
        if path == self.path:
            await self._graphql(scope, receive, send)
        elif path == "/healthz":
            await _respond(send, 200, b"text/plain; charset=utf-8", b"ok\n")
        elif path == "/readyz":
            await self._ready(send)
        elif path == "/metrics":
            body = b"".join(generate_latest(r) for r in (self.metrics.registry, *exposed()))
            await _respond(send, 200, CONTENT_TYPE_LATEST.encode(), body)
        elif self.graphiql is not None and path.startswith(self.static_prefix):
            await self._asset(scope, send, path[len(self.static_prefix) :])
        else:
            await _respond(send, 404, _CT_JSON, _error_body(f"No route {path}.", "NOT_FOUND"))

    async def _authenticated(self, scope: Scope, send: Send) -> bool:
        """Whether the request's credentials pass the authentication hook; answers 401 if not."""
        header: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        try:
            principal = self.auth.authenticate(header)
            scope.setdefault("state", {})["principal"] = principal
            _principal.set(principal)
            set_current_request(RequestContext(user_id=principal.name))  # the change log's actor
        except AuthenticationError as err:
            detail = err.details[0]
            await _respond(
                send,
                401,
                _CT_JSON,
                _error_body(f"{detail.message} ({detail.fix})", "UNAUTHENTICATED"),
                [(b"www-authenticate", b'Bearer realm="quiver"')],
            )
            return False
        return True

    async def _asset(self, scope: Scope, send: Send, name: str) -> None:
        """A GraphiQL asset: one version per URL, so browsers keep it for good."""
        asset = graphiql_asset(name)
        if asset is None:
            await _respond(send, 404, _CT_JSON, _error_body(f"No asset {name}.", "NOT_FOUND"))
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _respond(
                send,
                405,
                _CT_JSON,
                _error_body("Assets are read with GET.", "METHOD_NOT_ALLOWED"),
                [(b"allow", b"GET, HEAD")],
            )
            return
        gzipped = any(n == b"accept-encoding" and b"gzip" in v.lower() for n, v in scope["headers"])
        extra = [(b"cache-control", ASSET_CACHE_CONTROL), (b"vary", b"accept-encoding")]
        if gzipped:
            extra.append((b"content-encoding", b"gzip"))
        body = asset.gzipped if gzipped else asset.body
        await _respond(send, 200, asset.content_type, body, extra, head=method == "HEAD")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("GraphQL engine failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Open the engine (the lifespan calls this; call it yourself without a server).

        Without a schema, the database is reflected first.
        """
        if self.schema is None:
            db = self.settings.database
            self.schema = await reflect_database(
                db.url, schemas=db.schemas or None, names=self.settings.names
            )
        if self.engine is None:
            self.engine = await GraphQLEngine.open(self.schema, self.settings, self.resolvers)

    async def shutdown(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await engine.close()

    async def _ready(self, send: Send) -> None:
        engine = self.engine
        if engine is None:
            await _respond(send, 503, b"text/plain; charset=utf-8", b"engine not started\n")
            return
        try:
            await asyncio.wait_for(engine.database.ping(), timeout=5)
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            await _respond(send, 503, b"text/plain; charset=utf-8", b"database unavailable\n")
            return
        await _respond(send, 200, b"text/plain; charset=utf-8", b"ready\n")

    # ----- GraphQL -----
    async def _graphql(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        accepts: list[bytes] = []
        content_type: bytes | None = None
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"accept":
                accepts.append(value)  # joined once: many Accept lines cost no more than one
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        accept = (accepts[0] if len(accepts) == 1 else b",".join(accepts)) if accepts else None
        media, wants_html = _media_type(accept, self._accept_cache)
        try:
            if method == "POST":
                if media is None:
                    raise self._not_acceptable()
                body = await self._read_body(receive, length)
                status, payload, result = await self._post(body, content_type, media)
            elif method == "GET":
                if wants_html and self.graphiql is not None and not scope["query_string"]:
                    await _respond(send, 200, b"text/html; charset=utf-8", self.graphiql)
                    self.metrics.observe(method, "graphiql", started)
                    return
                if media is None:
                    raise self._not_acceptable()
                status, payload, result = await self._get(scope["query_string"], media)
            else:
                raise _HttpError(
                    405,
                    f"Method {method} is not allowed here; use GET or POST.",
                    "METHOD_NOT_ALLOWED",
                    [(b"allow", _ALLOW)],
                )
        except _HttpError as err:
            await _respond(
                send,
                err.status,
                _CT_JSON if media != GRAPHQL_RESPONSE else _CT_GQL,
                _error_body(err.message, err.code),
                err.headers,
            )
            self.metrics.error(err.code)
            self.metrics.observe(method, "http_error", started)
            return
        except asyncio.CancelledError:
            # Only the server cancels a request (the body deadline is handled where it is
            # read): quiver serve's stop, once server.shutdown_timeout_ms has passed. The
            # client is told to send it again, as a load balancer does with a 503.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            log.warning("request stopped unanswered: the server is shutting down")
            await _respond(
                send,
                503,
                _CT_JSON if media != GRAPHQL_RESPONSE else _CT_GQL,
                _error_body(
                    "The server stopped this request as it shut down; send it again.",
                    "SHUTTING_DOWN",
                ),
                [(b"retry-after", _RETRY_AFTER), (b"connection", b"close")],
            )
            self.metrics.error("SHUTTING_DOWN")
            self.metrics.observe(method, "http_error", started)
            return
        except Exception:
            log.exception("unexpected failure answering a GraphQL request")
            await _respond(
                send,
                500,
                _CT_JSON if media != GRAPHQL_RESPONSE else _CT_GQL,
                _error_body("Internal server error.", "INTERNAL_SERVER_ERROR"),
            )
            self.metrics.error("INTERNAL_SERVER_ERROR")
            self.metrics.observe(method, "internal_error", started)
            return
        extra = [(b"retry-after", _RETRY_AFTER)] if result == "busy" else None
        await _respond(
            send, status, _CT_GQL if media == GRAPHQL_RESPONSE else _CT_JSON, payload, extra
        )
        if result != "data":
            self.metrics.count_errors(payload)
        self.metrics.observe(method, result, started)

    def _not_acceptable(self) -> _HttpError:
        return _HttpError(
            406,
            f"None of the media types in the Accept header can be served; accept "
            f"{GRAPHQL_RESPONSE} or {JSON}.",
            "NOT_ACCEPTABLE",
        )

    async def _read_body(self, receive: Receive, length: bytes | None) -> bytes:
        limit = self.max_bytes
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise _HttpError(400, "Content-Length is not a number.") from None
            if declared > limit:
                raise self._too_large(declared)
        # A client that sends its body slowly, or never, would hold the connection for good.
        task = asyncio.current_task()
        assert task is not None
        deadlines = self._body_deadlines
        deadlines.start(task)
        try:
            return await self._receive_body(receive, limit)
        except asyncio.CancelledError:
            if not deadlines.stop(task):
                raise  # cancelled for another reason
            task.uncancel()
            raise _HttpError(
                408,
                f"The request body did not arrive within {self.body_timeout:g} s; send it "
                "whole, or raise graphql.body_timeout_ms.",
                "REQUEST_TIMEOUT",
                [(b"connection", b"close")],
            ) from None
        finally:
            deadlines.stop(task)

    async def _receive_body(self, receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _HttpError(400, "The client closed the connection mid-request.")
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise self._too_large(size)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self, size: int) -> _HttpError:
        return _HttpError(
            413,
            f"The request body ({size} bytes or more) exceeds the limit of {self.max_bytes} "
            "bytes; send a smaller request or raise graphql.max_request_bytes.",
            "PAYLOAD_TOO_LARGE",
        )

    async def _post(
        self, body: bytes, content_type: bytes | None, media: str
    ) -> tuple[int, bytes, str]:
        if content_type is None:
            raise _HttpError(
                415,
                "The request has no Content-Type; send application/json.",
                "UNSUPPORTED_MEDIA_TYPE",
            )
        if content_type != b"application/json":
            _check_content_type(content_type)
        if not body:
            raise _HttpError(400, "The request body is empty; send a JSON object with a query.")
        try:
            # Exact where orjson would round (a 30-digit integer in a JSON variable, a long
            # decimal, 1e400): the cheap check of json_value keeps ordinary bodies on orjson.
            decoded = json_value(body, strict=True)
        except json.JSONDecodeError as exc:  # orjson's error is one too
            raise _HttpError(
                400, f"The request body is not valid JSON: {exc.args[0] if exc.args else exc}."
            ) from None
        if isinstance(decoded, list):
            return await self._batch(decoded, media)
        if not isinstance(decoded, dict):
            raise _HttpError(400, "The request body must be a JSON object (or an array of them).")
        return await self._one(decoded, media, allow_mutation=True)

    async def _get(self, query_string: bytes, media: str) -> tuple[int, bytes, str]:
        params: dict[str, Any] = {}
        for key, value in _query_parameters(query_string):
            if key in params:
                raise _HttpError(400, f"The query-string parameter {key!r} is given twice.")
            params[key] = value
        for key in ("variables", "extensions"):
            raw = params.get(key)
            if raw is None or raw == "":
                params.pop(key, None)
                continue
            try:
                params[key] = json_value(raw, strict=True)
            except json.JSONDecodeError as exc:
                raise _HttpError(
                    400,
                    f"The {key} parameter must be URL-encoded JSON (an object); it is not "
                    f"valid JSON: {exc.args[0] if exc.args else exc}.",
                ) from None
        if params.get("operationName") == "":
            params["operationName"] = None
        return await self._one(params, media, allow_mutation=False)

    async def _batch(self, items: list[Any], media: str) -> tuple[int, bytes, str]:
        if not items:
            raise _HttpError(400, "The batch is empty; send at least one operation.")
        if len(items) > self.max_batch:
            raise _HttpError(
                400,
                f"The batch has {len(items)} operations; the limit is {self.max_batch}. "
                "Send fewer, or raise graphql.max_batch.",
                "BATCH_LIMIT_EXCEEDED",
            )
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise _HttpError(400, f"Batch entry {i} must be a JSON object.")
        results = await asyncio.gather(
            *(
                self._one(item, media, allow_mutation=True, where=f"[{i}].")
                for i, item in enumerate(items)
            ),
            return_exceptions=True,
        )
        bodies: list[bytes] = []
        kinds: set[str] = set()
        for r in results:
            if isinstance(r, _HttpError):
                bodies.append(_error_body(r.message, r.code))
                kinds.add("request_error")
            elif isinstance(r, BaseException):
                raise r
            else:
                bodies.append(r[1])
                kinds.add(r[2])
        result = "data" if kinds == {"data"} else "batch_with_errors"
        return 200, b"[" + b",".join(bodies) + b"]", result

    async def _one(
        self, params: dict[str, Any], media: str, *, allow_mutation: bool, where: str = ""
    ) -> tuple[int, bytes, str]:
        engine = self.engine
        if engine is None:
            raise _HttpError(503, "The server is starting; retry shortly.", "SERVICE_UNAVAILABLE")
        # The caller's role decides the schema it sees and the rows its plans read.
        engine = engine.for_principal(_principal.get())
        query = params.get("query")
        operation_name = params.get("operationName")
        variables = params.get("variables")
        extensions = params.get("extensions")
        if query is not None and not isinstance(query, str):
            raise _HttpError(400, f"{where}query must be a string holding a GraphQL document.")
        if operation_name is not None and not isinstance(operation_name, str):
            raise _HttpError(400, f"{where}operationName must be a string or null.")
        if variables is not None and not isinstance(variables, dict):
            raise _HttpError(400, f"{where}variables must be a JSON object or null.")
        if extensions is not None and not isinstance(extensions, dict):
            raise _HttpError(400, f"{where}extensions must be a JSON object or null.")
        remember: str | None = None
        # a null persistedQuery is no persisted query (as Apollo's clients and servers read it)
        if extensions and extensions.get("persistedQuery") is not None:
            query, remember, apq_error = resolve_persisted_query(
                self.apq, extensions["persistedQuery"], query
            )
            if apq_error is not None:
                return self._apq_failure(apq_error, media)
        if query is None:
            raise _HttpError(400, f"{where}query is missing: send the GraphQL document as query.")
        prepared = engine.prepare(query, operation_name)
        if not allow_mutation and prepared.operation_type == "mutation":
            raise _HttpError(
                405,
                "Mutations cannot be sent with GET; use POST.",
                "METHOD_NOT_ALLOWED",
                [(b"allow", b"POST")],
            )
        if remember is not None and self.apq is not None and not prepared.errors:
            self.apq.put(remember, query)
        outcome: Outcome = await engine.execute(prepared, variables)
        kind = outcome.kind
        if kind == "internal_error":
            return 500, outcome.body, kind
        if kind == "busy":
            return 503, outcome.body, kind
        if kind == "request_error" and media == GRAPHQL_RESPONSE:
            return 400, outcome.body, kind
        return 200, outcome.body, kind

    def _apq_failure(self, error: ApqError, media: str) -> tuple[int, bytes, str]:
        body = orjson.dumps({"errors": [error.as_error()]})
        status = error.status if media == GRAPHQL_RESPONSE or error.code == "BAD_REQUEST" else 200
        return status, body, "request_error"


def _query_parameters(query_string: bytes) -> list[tuple[str, str]]:
    """The ``name=value`` pairs of a URL's query string, each %-decoded as UTF-8.

    A name or value whose bytes are not UTF-8 (``%F4`` for ``ô`` in Latin-1) is a 400 naming
    it, never a U+FFFD put in its place: a query would then run, and answer, on other text.
    """
    pairs: list[tuple[str, str]] = []
    for field in query_string.split(b"&"):
        if not field:
            continue
        raw_key, _, raw_value = field.partition(b"=")
        texts: list[str] = []
        for part, raw in (("name", raw_key), ("value", raw_value)):
            decoded = unquote_to_bytes(raw.replace(b"+", b" "))
            try:
                texts.append(decoded.decode())
            except UnicodeDecodeError as exc:
                name = unquote_to_bytes(raw_key).decode(errors="backslashreplace")
                raise _HttpError(
                    400,
                    f"The query-string parameter '{name}' is not UTF-8 once %-decoded (byte "
                    f"0x{decoded[exc.start]:02x}, byte {exc.start + 1} of its {part}); "
                    "percent-encode the UTF-8 bytes of each character (%C3%B4 for ô).",
                ) from None
        pairs.append((texts[0], texts[1]))
    return pairs


def _check_content_type(raw: bytes) -> None:
    text = raw.decode("latin-1")
    media, *params = (p.strip() for p in text.split(";"))
    if media.lower() != JSON:
        raise _HttpError(
            415,
            f"Content-Type {media!r} is not supported; send application/json.",
            "UNSUPPORTED_MEDIA_TYPE",
        )
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise _HttpError(
                415,
                f"Charset {value.strip()!r} is not supported; send UTF-8 JSON.",
                "UNSUPPORTED_MEDIA_TYPE",
            )


def _request_id_of(scope: Scope) -> str:
    """The request's id: the client's ``X-Request-Id`` when it is usable, else a new one."""
    headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == _REQUEST_ID:
            if _USABLE_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return _new_request_id()


def _with_request_id_header(send: Send) -> Send:
    """``send``, adding the request's ``X-Request-Id`` to an answer that lacks one."""

    async def sending(message: Message) -> None:
        rid = request_id.get()
        if message["type"] == "http.response.start" and rid is not None:
            headers = list(message.get("headers", ()))
            if all(name.lower() != _REQUEST_ID for name, _ in headers):
                message = {**message, "headers": [*headers, (_REQUEST_ID, rid.encode())]}
        await send(message)

    return sending


async def _respond(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    rid = request_id.get()
    if rid is not None:
        headers.append((_REQUEST_ID, rid.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
