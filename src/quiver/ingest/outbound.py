"""Rows -> messages, for the producer sinks (``kafka``, ``nats``): bodies, keys, destinations.

Every producer sink takes the same ``format`` options (:class:`ProducerFormat`) and turns a
batch into :class:`Outbound` messages with :class:`MessageEncoder`:

* ``json``: one JSON object per row (``rows_per_message`` > 1: a JSON array of them);
  ``jsonl``: JSON lines; ``csv``: a CSV document with a header row. Values are written by the
  rules of :mod:`quiver.pipeline.json_text`, which the receivers read back value for value.
* ``avro``: one bare Avro record per row, written with the schema file ``avro_schema`` (what
  the receivers read with the same file); ``rows_per_message`` > 1 writes an Avro object
  container file (schema included).
* ``otlp_proto`` / ``otlp_json``: rows of the telemetry layout rebuilt into OTLP export
  requests (:mod:`quiver.ingest.otlp.rebuild`), one request per signal (header
  ``otlp-signal``), binary protobuf or OTLP/JSON.

A destination (Kafka topic, NATS subject) may name row fields: ``events.{service_name}``
sends each row to the destination its values give (``tenants.{tenant_id}.spans``: a topic per
tenant). Rows go to their destination (and key) in order; a multi-row message holds rows of
one destination and key only. With ``tenant_header`` each message carries the tenant of its
rows (their ``tenant_id``) in that header, and holds rows of one tenant only.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field, model_validator

from quiver.ingest.avro_rows import AvroWriting
from quiver.ingest.tenancy import TENANT_COLUMN
from quiver.pipeline.component import ComponentConfig, RunContext, without_line
from quiver.pipeline.json_text import dump_json, json_rows, text_columns
from quiver.pipeline.paths import resolve_path
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError

__all__ = [
    "CONTENT_TYPES",
    "SIGNAL_HEADER",
    "MessageEncoder",
    "Outbound",
    "OutboundFormat",
    "ProducerFormat",
    "Template",
    "load_avro_schema",
]

OutboundFormat = Literal["json", "jsonl", "csv", "avro", "otlp_json", "otlp_proto"]

CONTENT_TYPES: dict[str, str] = {
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "avro": "application/avro",
    "otlp_json": "application/json",
    "otlp_proto": "application/x-protobuf",
}

#: The header naming the signal of an OTLP message (traces, metrics, logs).
SIGNAL_HEADER = "otlp-signal"


class ProducerFormat(ComponentConfig):
    """The message options every producer sink has."""

    format: OutboundFormat = Field(
        "json",
        description="Message body: json, jsonl, csv, avro (with avro_schema), otlp_json or "
        "otlp_proto (rows of the telemetry layout as OTLP export requests).",
    )
    rows_per_message: int | None = Field(
        None,
        ge=1,
        description="Rows in one message, at most. Default: 1 for json and avro; every row "
        "of a batch (per destination and key) for jsonl, csv and the OTLP formats.",
    )
    avro_schema: str | None = Field(
        None,
        description="Avro: the schema file (.avsc, relative to the pipeline file) records "
        "are written with.",
    )

    tenant_header: str | None = Field(
        None,
        min_length=1,
        description="Header carrying the tenant (the tenant_id field) of each message, e.g. "
        "X-Scope-OrgID; a message then holds rows of one tenant (none: no header).",
    )

    @model_validator(mode="after")
    def _avro_needs_schema(self) -> ProducerFormat:
        if self.format == "avro" and self.avro_schema is None:
            raise ValueError("format avro needs `avro_schema` (the .avsc file records follow)")
        if self.avro_schema is not None and self.format != "avro":
            raise ValueError("`avro_schema` only applies to format avro")
        return self

    def per_message(self) -> int | None:
        """Rows per message, or None for every row of a group."""
        if self.rows_per_message is not None:
            return self.rows_per_message
        return 1 if self.format in ("json", "avro") else None


@dataclass
class Outbound:
    """One message to send: where, its key, body and headers, and how many rows it holds."""

    destination: str
    key: bytes | None
    body: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    rows: int = 1


_FIELD = re.compile(r"\{([^{}]+)\}")


class Template:
    """A destination naming row fields in braces (``events.{service_name}``)."""

    def __init__(self, text: str, option: str) -> None:
        self.text = text
        self.option = option
        self.fields = _FIELD.findall(text)

    def check(self, schema: pa.Schema, where: str) -> None:
        """ConfigError when the template names a field the rows do not have."""
        missing = [f for f in self.fields if f not in schema.names]
        if missing:
            raise ConfigError.one(
                f"{self.option} {self.text!r} names field(s) the rows do not have: "
                f"{', '.join(missing)}",
                where,
                f"use one of: {', '.join(n for n in schema.names if not n.startswith(chr(31)))}",
            )

    def render(self, batch: pa.RecordBatch, where: str) -> list[str]:
        """The destination of every row of ``batch``."""
        if not self.fields:
            return [self.text] * batch.num_rows
        columns = {f: batch.column(f).to_pylist() for f in self.fields}
        out = []
        for i in range(batch.num_rows):
            text = self.text
            for name, values in columns.items():
                value = values[i]
                if value is None or value == "":
                    raise PermanentError.one(
                        f"row {i + 1}: field {name!r} is empty, so {self.option} "
                        f"{self.text!r} names no destination",
                        where,
                        "fill the field with a processor (transform/enrich) or filter such rows",
                    )
                text = text.replace("{" + name + "}", str(value))
            out.append(text)
        return out


class MessageEncoder:
    """Turns batches into :class:`Outbound` messages by the options of a producer sink."""

    def __init__(
        self,
        cfg: ProducerFormat,
        destination: Template,
        key_field: str | None,
        where: str,
    ) -> None:
        self.cfg = cfg
        self.destination = destination
        self.key_field = key_field
        self.where = where
        self._avro: Any = None

    def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        """Check the fields named against ``schema``; read the Avro schema file."""
        self.destination.check(schema, self.where)
        if self.key_field is not None and self.key_field not in schema.names:
            raise ConfigError.one(
                f"key: the rows have no field {self.key_field!r}",
                self.where,
                f"use one of: {', '.join(n for n in schema.names if not n.startswith(chr(31)))}",
            )
        if self.cfg.format == "avro" and self._avro is None:
            self._avro = load_avro_schema(self.cfg.avro_schema or "", ctx.base_dir)

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        """Problems with the Avro schema file, before any row is read."""
        if self.cfg.format != "avro":
            return []
        try:
            self._avro = load_avro_schema(self.cfg.avro_schema or "", ctx.base_dir)
        except ConfigError as exc:
            return exc.details
        return []

    def encode(self, batch: pa.RecordBatch) -> list[Outbound]:
        """The messages of ``batch``, in row order per destination and key."""
        batch = without_line(batch)
        if batch.num_rows == 0:
            return []
        destinations = self.destination.render(batch, self.where)
        keys: list[Any] = (
            batch.column(self.key_field).to_pylist()
            if self.key_field is not None
            else [None] * batch.num_rows
        )
        tenants: list[Any] = [None] * batch.num_rows
        tenant_header = self.cfg.tenant_header
        if tenant_header is not None and TENANT_COLUMN in batch.schema.names:
            tenants = batch.column(TENANT_COLUMN).to_pylist()
        groups: dict[tuple[str, Any, Any], list[int]] = {}
        for i, (dest, key, tenant) in enumerate(zip(destinations, keys, tenants, strict=True)):
            groups.setdefault((dest, key, tenant), []).append(i)
        out: list[Outbound] = []
        size = self.cfg.per_message()
        for (dest, key, tenant), rows in groups.items():
            part = batch.take(pa.array(rows, pa.int64())) if len(groups) > 1 else batch
            key_bytes = None if key is None else _key_bytes(key)
            for body, headers, count in self._bodies(part, size):
                if tenant_header is not None and tenant is not None:
                    headers = [*headers, (tenant_header, str(tenant).encode())]
                out.append(Outbound(dest, key_bytes, body, headers, count))
        return out

    def _bodies(
        self, batch: pa.RecordBatch, size: int | None
    ) -> list[tuple[bytes, list[tuple[str, bytes]], int]]:
        fmt = self.cfg.format
        content = [("content-type", CONTENT_TYPES[fmt].encode())]
        if fmt in ("otlp_json", "otlp_proto"):
            return self._otlp(batch, size, content)
        step = size or batch.num_rows
        if fmt == "csv":
            return [
                (_csv_body(batch.slice(o, step)), content, min(step, batch.num_rows - o))
                for o in range(0, batch.num_rows, step)
            ]
        if fmt == "avro":
            rows = self._avro_rows(batch)
            return [
                (self._avro_body(rows[o : o + step]), content, len(rows[o : o + step]))
                for o in range(0, len(rows), step)
            ]
        # the rows as Python values once, then cut into messages
        values = json_rows(batch)
        chunks = [values[o : o + step] for o in range(0, len(values), step)]
        if fmt == "jsonl":
            return [
                (b"\n".join(dump_json(r, from_rows=True) for r in c), content, len(c))
                for c in chunks
            ]
        if self.cfg.per_message() == 1:
            return [(dump_json(c[0], from_rows=True), content, 1) for c in chunks]
        return [(dump_json(c, from_rows=True), content, len(c)) for c in chunks]

    def _avro_rows(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        try:
            rows: list[dict[str, Any]] = self._avro.rows(batch)
        except ValueError as exc:
            raise PermanentError.one(
                f"a row does not fit the Avro schema {self.cfg.avro_schema}: {exc}",
                self.where,
                "make the rows' values fit the schema's types (a cast or transform step)",
            ) from exc
        return rows

    def _avro_body(self, rows: list[dict[str, Any]]) -> bytes:
        import fastavro

        out = io.BytesIO()
        schema = self._avro.writing
        try:
            if self.cfg.per_message() == 1:
                fastavro.schemaless_writer(out, schema, rows[0])
            else:
                fastavro.writer(out, schema, rows)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise PermanentError.one(
                f"a row does not fit the Avro schema {self.cfg.avro_schema}: {exc}",
                self.where,
                "make the rows' fields and types match the schema (a cast or select step)",
            ) from exc
        return out.getvalue()

    def _otlp(
        self, batch: pa.RecordBatch, size: int | None, content: list[tuple[str, bytes]]
    ) -> list[tuple[bytes, list[tuple[str, bytes]], int]]:
        from quiver.ingest.otlp.rebuild import (
            RebuildError,
            rebuild_requests,
            request_json,
            signal_rows,
        )

        out = []
        try:
            for signal, rows in signal_rows(batch).items():
                step = size or len(rows)
                headers = [*content, (SIGNAL_HEADER, signal.encode())]
                for o in range(0, len(rows), step):
                    part = rows[o : o + step]
                    request = rebuild_requests(signal, part)
                    body = (
                        request.SerializeToString()
                        if self.cfg.format == "otlp_proto"
                        else request_json(request)
                    )
                    out.append((body, headers, len(part)))
        except RebuildError as exc:
            raise PermanentError.one(
                str(exc),
                self.where,
                "send rows of the telemetry layout, or choose json, jsonl, csv or avro",
            ) from exc
        return out


def _csv_body(chunk: pa.RecordBatch) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(text_columns(chunk), out)
    return out.getvalue()


def _key_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def load_avro_schema(name: str, base_dir: str) -> AvroWriting:
    """How rows are written with the Avro schema of the file ``name``; ConfigError naming it
    when unreadable."""
    import fastavro
    import orjson

    path = resolve_path(name, base_dir)
    try:
        with open(path, "rb") as fh:
            schema = orjson.loads(fh.read())
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise ValueError("each row is written as one record: the schema must be a record")
        return AvroWriting(schema)
    except (OSError, ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
        raise ConfigError.one(
            f"avro_schema: cannot read the Avro schema {path}: {exc}",
            "",
            "point avro_schema at a valid .avsc file (JSON)",
        ) from exc
