"""What every broker receiver shares: message bodies as rows, batching, and settling.

A receiver (``mqtt``, ``amqp``, ``nats``, ``kafka``, ``websocket``) is a pipeline source that
takes messages from a broker or a socket and hands them on as RecordBatches. Each receiver says
how to subscribe, how to acknowledge and how to hand messages back; this module does the rest:

* **Bodies** are JSON objects or arrays of objects (``json``), JSON lines (``jsonl``), CSV
  (``csv``: a header row, or ``columns`` for bare rows) or Avro (``avro``: a bare record
  written with the schema file ``avro_schema``, or an Avro object container file). Columns
  are typed by ``schema`` or taken from the first messages. A receiver may add fields of its
  own to each row (the topic, the subject ...).
* **Batches** close after ``batch_messages`` messages or ``batch_seconds`` after their first
  message. The input ends after ``max_messages`` messages, when no message came for
  ``idle_timeout`` seconds, or on a stop signal (:class:`~quiver.pipeline.component.Draining`):
  with neither limit set, a receiver runs until it is stopped.
* **Acknowledgement** comes last: the engine calls :meth:`BrokerReceiver.commit` once every
  sink has committed, and only then are the messages acknowledged. A run that fails, or a
  process that is killed, acknowledges nothing, and the broker hands the messages out again:
  delivery is at-least-once.
* **Bad messages** (an unreadable body, a value not of its column's type, a body larger than
  ``max_message_bytes``, JSON nested more than ``MAX_JSON_DEPTH`` levels) are rejected rows:
  they fail a ``fail_fast`` run, or go to the rejects file with ``on_error: {policy: reject}``
  and are then acknowledged (settled as refused where the broker has a way to say so).
* **Tenants**: with ``tenancy`` the topic, subject or routing key, a message header, the
  connection (``websocket``) or the resource attribute of OTLP rows (``kafka``) names each
  message's tenant (the ``tenant_id`` column, see :mod:`quiver.ingest.tenancy`); a message
  without one is a bad message. A broker cannot be answered 429: with ``tenancy.limits`` a
  batch holding messages of a tenant over its limit waits until the tenant's buckets have
  the tokens (the receiver stops fetching meanwhile where the broker lets it: ``kafka``,
  JetStream ``nats``); its messages are delayed, never dropped, and acknowledged later.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import io
import logging
import ssl
import threading
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from quiver.ingest.avro_rows import AvroBatcher, AvroLayout, container_too_large
from quiver.ingest.listener import tls_file_problems
from quiver.ingest.tenancy import TENANT_COLUMN, TenantPacer, TopicTenancy, rows_by_tenant
from quiver.pipeline.component import (
    Acknowledging,
    Checking,
    Checkpointing,
    Closing,
    ComponentConfig,
    Draining,
    Listening,
    RowError,
    RowRejecting,
    RunContext,
    component_info,
)
from quiver.pipeline.json_text import json_body_records
from quiver.pipeline.messages import MessageRows, csv_text_rows, refusal
from quiver.pipeline.paths import resolve_path
from quiver.pipeline.records import RecordBatcher
from quiver.pipeline.sources.csv import misquoted_body
from quiver.runtime.errors import ConfigError, ErrorDetail, QuiverError

__all__ = [
    "BodyFormat",
    "BrokerReceiver",
    "CheckpointOptions",
    "Message",
    "ReceiverConfig",
    "TlsOptions",
]

BodyFormat = Literal["json", "jsonl", "csv", "avro"]


@dataclass
class Message:
    """One message taken from a broker: its body, the fields it adds to each of its rows,
    how errors name it, and what the receiver needs to settle it."""

    body: bytes
    label: str
    fields: dict[str, Any] = field(default_factory=dict)
    handle: Any = None
    #: Why the message is refused before its body is read (None: it is not).
    refusal: str | None = None
    #: The tenants of its rows when they are not in ``fields`` (OTLP rows of several tenants).
    tenants: tuple[str, ...] = ()


class _BodyError(ValueError):
    """A body refused with a reason of its own (not the decoder's)."""


class TlsOptions(BaseModel):
    """TLS to a broker: the CA to verify it, and a client certificate when it asks for one."""

    model_config = ConfigDict(extra="forbid")

    ca_file: str | None = Field(
        None, description="CA certificates (PEM) to verify the server; default: the system's."
    )
    cert_file: str | None = Field(None, description="Client certificate (PEM).")
    key_file: str | None = Field(None, description="Client private key (PEM).")
    insecure: bool = Field(False, description="Do not verify the server's certificate.")

    def context(self, base_dir: str, *, server: bool = False) -> ssl.SSLContext:
        """The SSL context (files relative to ``base_dir``); ConfigError naming a bad file."""
        purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
        try:
            ctx = ssl.create_default_context(
                purpose,
                cafile=resolve_path(self.ca_file, base_dir) if self.ca_file else None,
            )
            if self.cert_file:
                ctx.load_cert_chain(
                    resolve_path(self.cert_file, base_dir),
                    resolve_path(self.key_file, base_dir) if self.key_file else None,
                )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError.one(
                f"cannot load the TLS files: {exc}",
                "tls",
                "check ca_file, cert_file and key_file (PEM files, relative to the pipeline)",
            ) from exc
        if self.insecure and not server:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class CheckpointOptions(BaseModel):
    """When a receiver that runs until stopped commits a checkpoint (see
    :class:`~quiver.pipeline.component.Checkpointing`)."""

    commit_every: int | None = Field(
        None,
        ge=1,
        description="Commit a checkpoint after this many messages (OTLP: export requests): "
        "the sinks publish what it read (one output per checkpoint: {stem} in file sink paths, "
        "or a parquet directory) and it is acknowledged; the run goes on. Default: one commit "
        "at the end of the run.",
    )
    commit_seconds: float | None = Field(
        None,
        gt=0,
        description="Commit a checkpoint this many seconds after its first message.",
    )

    @property
    def checkpoints(self) -> bool:
        """Whether ``commit_every`` or ``commit_seconds`` is set."""
        return self.commit_every is not None or self.commit_seconds is not None


class ReceiverConfig(CheckpointOptions, ComponentConfig):
    """The options every receiver has: the body format, batching and when the input ends."""

    format: BodyFormat = Field("json", description="Message body format: json, jsonl, csv, avro.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field delimiter.")
    columns: list[str] | None = Field(
        None, description="CSV column names when messages carry no header row."
    )
    avro_schema: str | None = Field(
        None,
        description="Avro: the schema file (.avsc, relative to the pipeline file) bodies are "
        "written with. Without it each body must be an Avro object container file.",
    )
    schema_: dict[str, str] | None = Field(
        None,
        alias="schema",
        description="Column types (int, float, decimal(p,s), str, bool, date, time, timestamp, "
        "binary, json). Taken from the first messages when left out; CSV columns not listed "
        "are text.",
    )
    batch_messages: int = Field(1_000, ge=1, description="Messages per batch, at most.")
    batch_seconds: float = Field(
        1.0, gt=0, description="A batch is handed on this long after its first message."
    )
    idle_timeout: float | None = Field(
        None,
        gt=0,
        description="End the run when no message comes for this many seconds (default: "
        "wait until stopped).",
    )
    tls: TlsOptions | None = Field(None, description="TLS settings (off when left out).")
    max_messages: int | None = Field(
        None,
        ge=1,
        description="End the run after this many messages (default: no limit). Messages are "
        "held unacknowledged until the run (or its checkpoint) commits.",
    )
    max_message_bytes: int = Field(
        16 << 20,
        ge=1,
        description="Largest message body read (default 16 MiB); a larger one is a rejected "
        "row, settled as refused without being read (its body is not kept in the rejects "
        "file).",
    )


class _ClientLog(logging.Handler):
    """The records of a broker client library as debug lines of the run's log (``--debug``
    shows them, with their tracebacks): a receiver reports a lost connection or a refused
    message itself, in one line, and the library's own account of it would otherwise reach
    the console as a bare traceback."""

    def __init__(self, log: Callable[[str, str], None], loop: asyncio.AbstractEventLoop):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        self._log = log
        self._loop = loop
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if threading.get_ident() == self._thread:
                self._log(text, "debug")
            elif not self._loop.is_closed():  # a client's own thread (paho)
                self._loop.call_soon_threadsafe(self._log, text, "debug")
        except Exception:  # a log record must never break the receiver
            self.handleError(record)


class BrokerReceiver(
    Acknowledging, Draining, Checkpointing, RowRejecting, Closing, Checking, Listening
):
    """Base of the broker receivers; see the module's doc.

    A subclass sets ``where`` and implements :meth:`_subscribe` (connect and start delivering
    messages with :meth:`_deliver`), :meth:`_unsubscribe` (stop the delivery),
    :meth:`_acknowledge`, :meth:`_release` and :meth:`_disconnect`.
    """

    #: Fields a receiver adds to rows, with their types (e.g. ``{"mqtt_topic": "str"}``).
    extra_types: Mapping[str, str] = {}
    #: How a receiver with ``tenancy`` reads the tenant of a topic (see :meth:`_tenant`).
    topic_tenancy: TopicTenancy | None = None
    #: The per-tenant rate limits of a receiver whose tenancy is not by topic (websocket).
    pacer: TenantPacer | None = None
    #: The loggers of the receiver's client library (routed to the run's debug log).
    client_loggers: tuple[str, ...] = ()

    def __init__(self, cfg: ReceiverConfig, where: str) -> None:
        self.rcfg = cfg
        self.where = where
        self.acknowledged = 0  # messages acknowledged by commits so far
        self.rejected = 0  # messages refused (bad bodies) so far
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._stopped = asyncio.Event()
        self._held: list[Message] = []  # handed on, not yet acknowledged
        self._refused: list[Message] = []  # set aside as rejected, not yet settled
        self._errors: list[RowError] = []
        self._rows: MessageRows[Message] = MessageRows(self._batcher)
        self._avro: AvroLayout | None = None  # the columns of Avro bodies
        self._layouts: dict[str, AvroLayout] = {}  # of container files, by schema text
        self._connected = False
        self._taken = 0  # messages taken in the run
        self._subscribed = False
        self._failure: QuiverError | None = None
        self._ended = False  # the input has ended (no checkpoint follows)
        self.paced = 0  # batches delayed for a tenant over its rate limit
        #: Cleared while a batch waits for a tenant's rate limit: fetching stops meanwhile.
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._client_log: _ClientLog | None = None

    @property
    def listening(self) -> bool:
        """Subscribed, and neither stopped nor ended."""
        return self._subscribed and not self._ended and not self._stopped.is_set()

    # ---------------------------------------------------------------- for subclasses

    @abstractmethod
    async def _subscribe(self, ctx: RunContext) -> None:
        """Connect and start delivering messages with :meth:`_deliver`."""

    @abstractmethod
    async def _unsubscribe(self) -> None:
        """Stop delivering messages; the connection stays open for acknowledgements."""

    @abstractmethod
    async def _acknowledge(self, accepted: list[Message], refused: list[Message]) -> None:
        """Settle messages the sinks hold (``accepted``) and bad ones (``refused``)."""

    @abstractmethod
    async def _release(self, messages: list[Message]) -> None:
        """Hand messages back to the broker so a later run receives them again."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Close the connection (messages still unacknowledged go back to the broker)."""

    def _fail(self, error: QuiverError) -> None:
        """Called by a subclass when the connection is lost for good: the run fails with
        ``error`` (and hands back what it held) instead of waiting for messages forever."""
        if self._failure is None:
            self._failure = error
            self._stopped.set()

    def _tenant(
        self, topic: str, fields: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> str | None:
        """With tenancy, put the tenant of a message on ``topic`` with ``headers`` (lowercase
        names) in ``fields``; why the message is refused (None: it is not)."""
        if self.topic_tenancy is None:
            return None
        tenant, refusal = self.topic_tenancy.tenant(topic, headers)
        fields[TENANT_COLUMN] = tenant
        return refusal

    async def _pace(self, taken: list[Message], batch: pa.RecordBatch, ctx: RunContext) -> None:
        """Wait until the tenants of ``batch`` are within their rate limits (or the run is
        stopped); fetching stops meanwhile."""
        pacer = self.pacer or (self.topic_tenancy.pacer if self.topic_tenancy else None)
        if pacer is None or not pacer.active:
            return
        messages: dict[str, int] = {}
        for message in taken:
            named = message.fields.get(TENANT_COLUMN)
            for tenant in message.tenants or ((named,) if named else ()):
                messages[tenant] = messages.get(tenant, 0) + 1
        items = rows_by_tenant(batch)
        try:
            while not self._stopped.is_set():
                wait, tenant = pacer.wait(messages, items)
                if wait <= 0:
                    return
                if self._flowing.is_set():
                    self.paced += 1
                    self._flowing.clear()
                    ctx.log(
                        f"{self.where}: tenant {tenant!r} is over its rate limit: "
                        f"{len(taken)} message(s) wait {wait:.2f}s",
                        "info",
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), wait)
        finally:
            self._flowing.set()

    def _deliver(self, message: Message) -> None:
        """Called by a subclass for each message received."""
        size, limit = len(message.body), self.rcfg.max_message_bytes
        if size > limit and message.refusal is None:
            message.refusal = (
                f"the body is {size} bytes, more than max_message_bytes ({limit}); it was not "
                "read (nor kept in the rejects file): raise max_message_bytes to take it"
            )
            message.body = b""
        self._inbox.put_nowait(message)

    # ---------------------------------------------------------------- the source

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        """The messages of the run, or of one checkpoint (then called again for the next)."""
        cfg = self.rcfg
        if self._failure is not None:  # a read retried after the connection was lost
            await self._forget_connection()
        if not self._subscribed:
            self._load_avro(ctx)
            self._route_client_logs(ctx)
            self._connected = True
            try:
                await self._subscribe(ctx)
            except BaseException:
                await self.close()  # a retry of the read subscribes anew
                raise
            self._subscribed = True
            ctx.log(f"{self.where}: subscribed, receiving", "notice")
        held = 0  # messages of this checkpoint
        started = 0.0  # when its first message came
        ended = True
        try:
            while cfg.max_messages is None or self._taken < cfg.max_messages:
                room = None if cfg.max_messages is None else cfg.max_messages - self._taken
                if cfg.commit_every is not None:
                    room = min(room or cfg.commit_every, cfg.commit_every - held)
                wait = cfg.idle_timeout
                if held and cfg.commit_seconds is not None:
                    left = max(0.0, started + cfg.commit_seconds - time.monotonic())
                    wait = left if wait is None else min(wait, left)
                messages = await self._collect(room, wait)
                if self._failure is not None:
                    raise self._failure
                if not messages:
                    ended = self._stopped.is_set() or not self._checkpoint_due(held, started)
                    break
                if not self._taken:
                    ctx.log(f"{self.where}: first messages received", "info")
                if not held:
                    started = time.monotonic()
                held += len(messages)
                self._taken += len(messages)
                before = len(self._held)
                batch = self._to_batch(messages, ctx)
                if batch is not None:
                    await self._pace(self._held[before:], batch, ctx)
                    yield batch
                if self._checkpoint_due(held, started) and not self._stopped.is_set():
                    ended = False
                    break
        finally:
            if ended:
                self._ended = True
                await self._unsubscribe()
                # taken from the broker after the input ended: give them back at once
                left_over = []
                while not self._inbox.empty():
                    left_over.append(self._inbox.get_nowait())
                if left_over:
                    await self._release(left_over)

    async def _forget_connection(self) -> None:
        """Start again from nothing: what the lost connection delivered goes back to the
        broker with it (AMQP requeues it, JetStream and MQTT sessions deliver it again, Kafka
        offsets were not committed), so it is neither acknowledged nor rejected here."""
        self._failure = None
        self._stopped.clear()
        self._ended = False
        self._held.clear()
        self._refused.clear()
        self._errors.clear()
        self._inbox = asyncio.Queue()
        with contextlib.suppress(Exception):  # the connection is gone already
            await self.close()
        self._subscribed = False

    def _route_client_logs(self, ctx: RunContext) -> None:
        if self._client_log is not None or not self.client_loggers:
            return
        self._client_log = _ClientLog(ctx.log, asyncio.get_running_loop())
        for name in self.client_loggers:
            logging.getLogger(name).addHandler(self._client_log)

    def _checkpoint_due(self, held: int, started: float) -> bool:
        cfg = self.rcfg
        if not held:
            return False
        if cfg.commit_every is not None and held >= cfg.commit_every:
            return True
        return cfg.commit_seconds is not None and time.monotonic() >= started + cfg.commit_seconds

    def checkpoints(self) -> bool:
        """Whether this receiver commits in checkpoints (``commit_every`` / ``commit_seconds``)."""
        return self.rcfg.checkpoints

    def more(self) -> bool:
        """Whether another checkpoint follows the one just committed."""
        return not self._ended

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        """The Avro schema file and the TLS files, read before any message is taken."""
        problems: list[ErrorDetail] = []
        try:
            self._load_avro(ctx)
        except ConfigError as exc:
            problems.extend(exc.details)
        tls = self.rcfg.tls
        if tls is None:
            return problems

        def resolved(name: str | None) -> str | None:
            return resolve_path(name, ctx.base_dir) if name else None

        component = component_info(type(self)).name
        found = tls_file_problems(
            resolved(tls.cert_file), resolved(tls.key_file), resolved(tls.ca_file)
        )
        for option, problem in found:
            option = "ca_file" if option == "client_ca_file" else option
            problems.append(
                ErrorDetail(
                    problem,
                    f"{component}.tls.{option}",
                    "ca_file names PEM CA certificates, cert_file the PEM client certificate "
                    "and key_file its unencrypted PEM key (relative paths start at the "
                    "pipeline file)",
                )
            )
        return problems

    def drain(self) -> None:
        """Stop taking messages: the batches end with what was received so far."""
        self._stopped.set()

    async def _collect(self, room: int | None, wait: float | None) -> list[Message]:
        """The next batch of messages: [] when none came within ``wait`` seconds or once
        stopped."""
        cfg = self.rcfg
        first = await self._next(wait)
        if first is None:
            return []
        messages = [first]
        deadline = time.monotonic() + cfg.batch_seconds
        limit = cfg.batch_messages if room is None else min(cfg.batch_messages, room)
        while len(messages) < limit:
            if not self._inbox.empty():
                messages.append(self._inbox.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopped.is_set():
                break
            message = await self._next(remaining)
            if message is None:
                break
            messages.append(message)
        return messages

    async def _next(self, timeout: float | None) -> Message | None:
        """The next message, or None after ``timeout`` seconds or once stopped."""
        if self._stopped.is_set():
            return self._inbox.get_nowait() if not self._inbox.empty() else None
        getting = asyncio.ensure_future(self._inbox.get())
        stopping = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({getting, stopping}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            stopping.cancel()
            if not getting.done():
                getting.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        return None

    # ---------------------------------------------------------------- bodies to rows

    def _load_avro(self, ctx: RunContext) -> None:
        cfg = self.rcfg
        if cfg.format != "avro" or cfg.avro_schema is None or self._avro is not None:
            return
        import orjson

        path = resolve_path(cfg.avro_schema, ctx.base_dir)
        try:
            with open(path, "rb") as fh:
                schema = orjson.loads(fh.read())
        except (OSError, ValueError) as exc:
            raise ConfigError.one(
                f"avro_schema: cannot read the Avro schema {path}: {exc}",
                "",
                "point avro_schema at a valid .avsc file (JSON)",
            ) from exc
        layout = AvroLayout(schema, path, cfg.schema_)
        known = {*layout.fields, *self.extra_types}
        unknown = [n for n in cfg.schema_ or {} if n not in known]
        if unknown:
            raise ConfigError.one(
                f"schema: {', '.join(map(repr, unknown))} not in the Avro schema {path} "
                f"(its fields: {', '.join(layout.fields)})",
                "",
                "declare only fields of the Avro schema in `schema` (it types the rest)",
            )
        self._avro = layout

    def _records(self, body: bytes) -> list[Any]:
        fmt = self.rcfg.format
        if fmt == "avro":
            return self._avro_records(body)
        body = body.removeprefix(codecs.BOM_UTF8)  # a UTF-8 byte order mark is no content
        if fmt == "csv":
            return self._csv_records(body)
        if fmt == "json" and not body.strip():
            raise ValueError("the body is empty (a json body is an object or an array)")
        return json_body_records(body, lines=fmt == "jsonl")

    def _csv_records(self, body: bytes) -> list[Any]:
        cfg = self.rcfg
        misquoted = misquoted_body(body, cfg.delimiter)
        if misquoted is not None:
            raise ValueError(misquoted)
        records: list[Any] = csv_text_rows(body, cfg.delimiter, cfg.columns).to_pylist()
        return records

    def _avro_records(self, body: bytes) -> list[Any]:
        import fastavro

        try:
            if self.rcfg.avro_schema is None:
                return self._container_records(body)
            layout = self._avro
            assert layout is not None  # read before the first message
            stream = io.BytesIO(body)
            record = fastavro.schemaless_reader(stream, layout.reading, None)
        except _BodyError:
            raise
        except Exception as exc:  # the decoder's many ways of saying the bytes are not Avro
            raise ValueError(
                f"not an Avro body for this schema ({type(exc).__name__}: {exc}); was it "
                "written with another schema?"
            ) from exc
        if stream.tell() != len(body):
            raise ValueError(
                f"{len(body) - stream.tell()} byte(s) left after the record: the body was "
                "not written with this schema"
            )
        return [record]

    def _container_records(self, body: bytes) -> list[Any]:
        """The records of an Avro object container file: the first body's schema types the
        columns; a body written with a schema of other columns is refused."""
        import fastavro
        import orjson

        stream = io.BytesIO(body)
        blocks = fastavro.block_reader(stream)
        codec = blocks.metadata.get("avro.codec", "null")
        if codec != "null":
            limit = self.rcfg.max_message_bytes
            problem = container_too_large(body, stream.tell(), codec, limit)
            if problem is not None:
                raise _BodyError(problem)
        text = blocks.metadata.get("avro.schema", "")
        layout = self._layouts.get(text)
        if layout is None:
            try:
                layout = AvroLayout(orjson.loads(text), "the body's schema", self.rcfg.schema_)
            except ConfigError as exc:
                raise _BodyError(str(exc)) from exc
            self._layouts[text] = layout
        if self._avro is None:
            self._avro = layout
        elif layout is not self._avro:
            first = self._avro
            mine = [(c.name, c.kind) for c in layout.columns]
            theirs = [(c.name, c.kind) for c in first.columns]
            if mine != theirs or layout.fields != first.fields:
                raise _BodyError(
                    "written with a schema of other fields or types than the first message's "
                    f"({', '.join(f'{n}: {k}' for n, k in mine)} instead of "
                    f"{', '.join(f'{n}: {k}' for n, k in theirs)}); give the receiver "
                    "avro_schema to read every body with one schema"
                )
        # each record read with the logical types off, as a bare body is (see AvroLayout)
        return [
            fastavro.schemaless_reader(block.bytes_, layout.reading, None)  # type: ignore[attr-defined]
            for block in blocks
            for _ in range(block.num_records)
        ]

    def _declared(self) -> dict[str, str] | None:
        cfg = self.rcfg
        if cfg.schema_ is None and cfg.format != "csv":
            return None
        declared = dict(cfg.schema_ or {})
        if cfg.format == "csv" and cfg.columns:
            declared = {n: declared.get(n, "str") for n in cfg.columns} | declared
        declared.update({k: v for k, v in self.extra_types.items() if k not in declared})
        return declared

    def _to_batch(self, messages: list[Message], ctx: RunContext) -> pa.RecordBatch | None:
        parsed: list[tuple[Message, list[Any]]] = []
        for message in messages:
            if message.refusal is not None:
                self._refuse(message, message.refusal, ctx)
                continue
            try:
                records = self._records(message.body)
            except (ValueError, UnicodeDecodeError) as exc:
                self._refuse(message, f"unreadable {self.rcfg.format} body: {exc}", ctx)
                continue
            if message.fields:
                records = [{**r, **message.fields} if isinstance(r, dict) else r for r in records]
            parsed.append((message, records))
        batch, taken, refused = self._rows.split(parsed)
        self._held.extend(taken)
        for message, error in refused:
            self._refuse(message, error.reason, ctx, error)
        return batch

    def _batcher(self, records: Sequence[Any]) -> RecordBatcher:
        if isinstance(self._avro, AvroLayout):
            return AvroBatcher(self.where, self._avro, self.rcfg.schema_ or {}, self.extra_types)
        return RecordBatcher(self.where, self._csv_declared(records), known=self.extra_types)

    def _csv_declared(self, records: Sequence[Any]) -> dict[str, str] | None:
        """The declared columns; for CSV with a header row, the header's names as text."""
        declared = self._declared()
        if self.rcfg.format != "csv" or self.rcfg.columns:
            return declared
        header = next((r for r in records if isinstance(r, dict)), {})
        types = dict(declared or {})
        return {n: types.get(n, "str") for n in header} | types

    def _refuse(
        self, message: Message, reason: str, ctx: RunContext, error: RowError | None = None
    ) -> None:
        self.rejected += 1
        self._refused.append(message)
        ctx.log(f"{self.where}: message {message.label} rejected: {reason}", "warning")
        # the body as text, or base64 when not UTF-8 (Avro, protobuf): messages.body_entry
        self._errors.append(refusal(message.label, message.body, reason, error))

    def take_errors(self) -> list[RowError]:
        errors, self._errors = self._errors, []
        return errors

    # ---------------------------------------------------------------- settling

    async def commit(self) -> None:
        """Acknowledge every message handed on so far: the sinks have committed them."""
        held, self._held = self._held, []
        refused, self._refused = self._refused, []
        if held or refused:
            await self._acknowledge(held, refused)
        self.acknowledged += len(held)

    async def abort(self) -> None:
        """Hand every unsettled message back to the broker."""
        held, self._held = self._held, []
        refused, self._refused = self._refused, []
        if (held or refused) and self._connected:
            # when this fails, the closed connection hands them back as well
            with contextlib.suppress(Exception):
                await self._release(held + refused)

    async def close(self) -> None:
        if self._connected:
            self._connected = False
            await self._disconnect()
        handler, self._client_log = self._client_log, None
        if handler is not None:
            for name in self.client_loggers:
                logging.getLogger(name).removeHandler(handler)
