"""The GraphQL over WebSocket protocol (``graphql-transport-ws``, as the ``graphql-ws`` library
speaks it), on the GraphQL path of the HTTP app.

The client opens the socket with the subprotocol ``graphql-transport-ws`` and sends
``connection_init`` (its payload may carry ``Authorization`` when the upgrade request had no
such header); the server answers ``connection_ack``. Then ``subscribe`` messages start
operations: a subscription answers ``next`` per change until the client sends ``complete`` or
the socket closes; a query or mutation answers one ``next`` and a ``complete``. A document
that fails validation, limits or argument checks answers ``error`` with GraphQL errors.
``ping`` is answered ``pong``. Protocol violations close the socket with the protocol's codes
(4400 bad message, 4401 subscribe before the ack, 4403 forbidden, 4406 subprotocol, 4408 no
init in time, 4409 duplicate id, 4429 second init); a message larger than
``subscriptions.max_message_bytes`` closes it with 1009, and a client that reads nothing for
``subscriptions.send_timeout_ms`` while a message waits for it with 1008. Closing the socket, or
``complete``, cancels a subscription's task, which holds no database connection between reads;
a query or mutation runs to its end (never cut off inside its transaction) and, once
completed by the client, its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from prometheus_client import Gauge

from graphql import OperationType
from quiver.auth import AuthenticationError, Authenticator
from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.graphql.subscriptions import SubscriptionError, SubscriptionPlan, run_subscription
from quiver.runtime.logs import request_id

__all__ = ["PROTOCOL", "SendDeadlines", "serve_websocket"]

log = logging.getLogger("quiver.graphql.websocket")

PROTOCOL = "graphql-transport-ws"

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


#: How long closing a socket may wait to write its close frame (a client that reads nothing
#: never lets it through).
_CLOSE_WAIT_S = 1.0


class SendDeadlines:
    """The open sockets, checked by one timer for them all: a socket whose message has waited
    ``seconds`` for its client to read it is stopped, within a quarter of the timeout after.

    A send costs two attribute writes (:attr:`_Connection.sending`, :attr:`_Connection.sent`),
    not a timer of its own."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.interval = seconds / 4
        #: Each socket, and the count of its sends and the time a send was first seen waiting.
        self.sockets: dict[_Connection, tuple[int, float] | None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, connection: _Connection) -> None:
        self.sockets[connection] = None
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.interval, self._check, loop)

    def discard(self, connection: _Connection) -> None:
        self.sockets.pop(connection, None)

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        stalled = []
        for connection, seen in self.sockets.items():
            if not connection.sending:
                self.sockets[connection] = None
            elif seen is None or seen[0] != connection.sent:
                self.sockets[connection] = (connection.sent, now)
            elif now - seen[1] >= self.seconds:
                stalled.append(connection)
        for connection in stalled:
            del self.sockets[connection]
            connection.stop(
                1008, f"Client too slow: it read nothing for {self.seconds:g} s (send timeout)"
            )
        self._timer = loop.call_later(self.interval, self._check, loop) if self.sockets else None


class _ClosedError(Exception):
    """The socket closed (or is closing) with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def serve_websocket(
    engine: GraphQLEngine | None,
    settings: QuiverSettings,
    auth: Authenticator,
    scope: Scope,
    receive: Receive,
    send: Send,
    active: Gauge | None = None,
    deadlines: SendDeadlines | None = None,
) -> None:
    """Serve one WebSocket connection until it closes; ``active`` counts the subscriptions
    running; ``deadlines`` (one for every socket of the app) stops a socket whose client does
    not read."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    rid = request_id.get()
    # the socket's id (the HTTP app sets it as a request's) is in its accept as in an answer
    headers = [(b"x-request-id", rid.encode())] if rid else []
    if PROTOCOL not in scope.get("subprotocols", ()):
        await send({"type": "websocket.accept", "headers": headers})
        await send(
            {"type": "websocket.close", "code": 4406, "reason": "Subprotocol not acceptable"}
        )
        return
    if engine is None:
        await send({"type": "websocket.close", "code": 1013})
        return
    header: str | None = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value.decode("latin-1")
    if header is not None and auth.required:
        try:
            auth.authenticate(header)
        except AuthenticationError:
            await send({"type": "websocket.close", "code": 4403})  # answered 403
            return
    await send({"type": "websocket.accept", "subprotocol": PROTOCOL, "headers": headers})
    connection = _Connection(engine, settings, auth, header, send, active)
    if deadlines is not None:
        deadlines.add(connection)
    try:
        await connection.serve(receive)
    finally:
        if deadlines is not None:
            deadlines.discard(connection)
        await connection.release()


class _Connection:
    def __init__(
        self,
        engine: GraphQLEngine,
        settings: QuiverSettings,
        auth: Authenticator,
        header: str | None,
        send: Send,
        active: Gauge | None,
    ) -> None:
        self.active = active
        self.engine = engine
        self.settings = settings
        self.auth = auth
        self.header = header
        self.max_message_bytes = settings.subscriptions.max_message_bytes
        self._send = send
        self._lock = asyncio.Lock()
        self.acknowledged = False
        self.initialised = False
        self.closed = False
        #: The operations running, by id (what ``complete`` and a duplicate id look up).
        self.operations: dict[str, asyncio.Task[None]] = {}
        #: The queries and mutations executing: ``complete`` or closing drops their result but
        #: lets them end, as a write cut off inside its transaction may or may not have been
        #: committed.
        self.single: set[asyncio.Task[None]] = set()
        #: Queries and mutations the client completed that still execute (they count towards
        #: ``max_per_connection`` until they end).
        self.completed: set[asyncio.Task[None]] = set()
        #: Whether a message is being written, and how many were: what
        #: :class:`SendDeadlines` watches.
        self.sending = False
        self.sent = 0
        #: Ends :meth:`serve` (the connection-init timeout, or :meth:`stop`).
        self._serving: asyncio.Timeout | None = None
        self._stop: tuple[int, str] = (4408, "Connection initialisation timeout")

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(orjson.dumps(message))

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        # a close frame's reason holds at most 123 bytes
        short = reason.encode()[:120].decode("utf-8", "ignore")
        with contextlib.suppress(Exception):
            # bounded: a client that reads nothing never lets the close frame through
            async with asyncio.timeout(_CLOSE_WAIT_S), self._lock:
                await self._send({"type": "websocket.close", "code": code, "reason": short})

    def stop(self, code: int, reason: str) -> None:
        """End :meth:`serve` now, closing the socket with ``code`` and ``reason``."""
        if self._serving is not None and not self.closed:
            self._stop = (code, reason)
            self._serving.reschedule(asyncio.get_running_loop().time())

    async def release(self) -> None:
        """Cancel every operation still running, but wait for the queries and mutations
        executing to end (they send nothing more)."""
        self.closed = True
        tasks = [*self.operations.values(), *self.completed]
        self.operations.clear()
        for t in tasks:
            if t not in self.single:
                t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    async def serve(self, receive: Receive) -> None:
        init_timeout = self.settings.subscriptions.connection_init_timeout_ms / 1000
        try:
            async with asyncio.timeout(init_timeout) as self._serving:
                while not self.closed:
                    message = await receive()
                    kind = message["type"]
                    if kind == "websocket.disconnect":
                        self.closed = True
                        return
                    if kind != "websocket.receive":
                        continue
                    data: str | bytes | None = message.get("text")
                    if data is None:
                        data = message.get("bytes") or b""
                    # str.isascii is a flag read: only text beyond ASCII is encoded to count
                    size = len(data) if isinstance(data, bytes) or data.isascii() else -1
                    if size < 0:
                        assert isinstance(data, str)
                        size = len(data.encode())
                    try:
                        if size > self.max_message_bytes:
                            raise _ClosedError(
                                1009,
                                f"Message too big: {size} bytes, the limit is "
                                f"{self.max_message_bytes} (subscriptions.max_message_bytes)",
                            )
                        await self._handle(data, size)
                    except _ClosedError as closing:
                        await self.close(closing.code, closing.reason)
                        return
        except TimeoutError:
            self._serving = None
            code, reason = self._stop
            await self.close(code, reason)
        finally:
            self._serving = None

    async def _handle(self, data: str | bytes, size: int) -> None:
        if isinstance(data, bytes):  # a binary frame: the protocol's JSON text all the same
            try:
                data = data.decode()
            except UnicodeDecodeError:
                raise _ClosedError(4400, "Invalid message received: not UTF-8") from None
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise _ClosedError(4400, f"Invalid message received: not JSON ({err})") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise _ClosedError(4400, "Invalid message received: not an object with a type")
        kind = message["type"]
        if kind == "subscribe":
            await self._subscribe(message, size)
            return
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise _ClosedError(4400, f"Invalid message received: {kind} payload is not an object")
        if kind == "connection_init":
            await self._init(payload)
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            return
        elif kind == "complete":
            op_id = message.get("id")
            if not isinstance(op_id, str) or not op_id:
                raise _ClosedError(4400, "Invalid message received: complete without an id")
            task = self.operations.pop(op_id, None)
            if task is None:
                return
            if task in self.single:
                self.completed.add(task)  # it ends on its own; its result is dropped
            else:
                task.cancel()
        else:
            raise _ClosedError(4400, f"Invalid message received: unknown type {kind!r}")

    async def _init(self, payload: Any) -> None:
        if self.initialised:
            raise _ClosedError(4429, "Too many initialisation requests")
        self.initialised = True
        if self.auth.required:
            header = self.header
            if header is None and payload:
                given = payload.get("Authorization", payload.get("authorization"))
                header = given if isinstance(given, str) else None
            try:
                principal = self.auth.authenticate(header)
            except AuthenticationError as err:
                detail = err.details[0]
                raise _ClosedError(4403, f"Forbidden: {detail.message}"[:120]) from None
            # Every operation of the connection runs with the key's permissions.
            self.engine = self.engine.for_principal(principal)
        self.acknowledged = True
        if self._serving is not None:
            self._serving.reschedule(None)  # initialised in time
        await self.send({"type": "connection_ack"})

    async def _subscribe(self, message: dict[str, Any], size: int) -> None:
        if not self.acknowledged:
            raise _ClosedError(4401, "Unauthorized")
        op_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(op_id, str) or not op_id or not isinstance(payload, dict):
            raise _ClosedError(
                4400, "Invalid message received: subscribe needs an id and a payload"
            )
        query = payload.get("query")
        variables = payload.get("variables")
        operation_name = payload.get("operationName")
        extensions = payload.get("extensions")
        if (
            not isinstance(query, str)
            or (variables is not None and not isinstance(variables, dict))
            or (operation_name is not None and not isinstance(operation_name, str))
            or (extensions is not None and not isinstance(extensions, dict))
        ):
            raise _ClosedError(4400, "Invalid message received: subscribe payload")
        if op_id in self.operations:
            raise _ClosedError(4409, f"Subscriber for {op_id} already exists")
        largest = self.settings.graphql.max_request_bytes
        if size > largest:
            await self._error(
                op_id,
                [
                    {
                        "message": f"The subscribe message has {size} bytes; the limit is "
                        f"{largest}. Send a smaller document, or raise "
                        "graphql.max_request_bytes.",
                        "extensions": {"code": "PAYLOAD_TOO_LARGE", "limit": largest},
                    }
                ],
            )
            return
        limit = self.settings.subscriptions.max_per_connection
        if len(self.operations) + len(self.completed) >= limit:
            await self._error(
                op_id,
                [
                    {
                        "message": f"This connection already runs {limit} operations, the most "
                        "allowed (subscriptions.max_per_connection); complete one first.",
                        "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit},
                    }
                ],
            )
            return
        task = asyncio.create_task(self._operation(op_id, query, operation_name, variables))
        self.operations[op_id] = task

    async def _error(self, op_id: str, errors: list[dict[str, Any]]) -> None:
        await self.send({"type": "error", "id": op_id, "payload": errors})

    async def _operation(
        self, op_id: str, query: str, operation_name: str | None, variables: Any
    ) -> None:
        engine = self.engine
        counted = False
        try:
            prepared = engine.prepare(query, operation_name)
            if prepared.errors:
                await self._error(op_id, prepared.errors)
                return
            operation = prepared.operation
            assert operation is not None
            if operation.operation != OperationType.SUBSCRIPTION:
                task = asyncio.current_task()
                assert task is not None
                self.single.add(task)
                try:
                    outcome = await engine.execute(prepared, variables)
                finally:
                    self.single.discard(task)  # only sending from here: cancelled on closing
                    self.completed.discard(task)
                if self.operations.get(op_id) is not task:
                    return  # completed by the client (or the socket closed): no result
                body = orjson.loads(outcome.body)
                if outcome.kind in ("request_error", "internal_error", "busy"):
                    await self._error(op_id, body.get("errors", []))
                    return
                await self.send({"type": "next", "id": op_id, "payload": body})
                await self.send({"type": "complete", "id": op_id})
                return
            try:
                plan = SubscriptionPlan.build(
                    engine.catalog,
                    engine.graphql_schema,
                    engine.dialect,
                    operation,
                    prepared.fragments,
                    variables,
                )
                limited = engine.cost_error(prepared, plan.variables)
                if limited is not None:
                    await self._error(op_id, [limited])
                    return
                await engine.wake_on_changes()

                async def emit(body: bytes) -> None:
                    text = b'{"type":"next","id":' + orjson.dumps(op_id) + b',"payload":'
                    await self.send_raw(text + body + b"}")

                def running() -> None:
                    nonlocal counted
                    if self.active is not None:
                        self.active.inc()
                        counted = True

                await run_subscription(
                    engine.database,
                    engine.catalog,
                    engine.graphql_schema,
                    plan,
                    self.settings.mutations.change_log_table,
                    self.settings.subscriptions,
                    emit,
                    engine.change_signal,
                    running,
                    engine.access,
                )
            except SubscriptionError as err:
                await self._error(op_id, err.errors)
        except (_ClosedError, asyncio.CancelledError):
            return
        except Exception:
            log.exception("subscription %s failed", op_id)
            if self.operations.get(op_id) is not asyncio.current_task():
                return  # completed by the client meanwhile
            with contextlib.suppress(_ClosedError):
                await self._error(
                    op_id,
                    [
                        {
                            "message": "Internal server error.",
                            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                        }
                    ],
                )
        finally:
            if counted and self.active is not None:
                self.active.dec()
            if self.operations.get(op_id) is asyncio.current_task():
                del self.operations[op_id]

    async def send_raw(self, text: bytes) -> None:
        async with self._lock:
            if self.closed:
                raise _ClosedError(1000, "closed")
            self.sending = True
            try:
                await self._send({"type": "websocket.send", "text": text.decode()})
            except Exception as exc:
                self.closed = True
                raise _ClosedError(1006, "peer gone") from exc
            finally:
                self.sending = False
            self.sent += 1
