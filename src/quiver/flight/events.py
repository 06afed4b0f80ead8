"""Change events as Arrow: the change-log rows of one entity since a time, and after it.

An ``observer_events`` ticket (see :mod:`quiver.flight.tickets`) streams the rows of the
change log (:mod:`quiver.sql.changelog`) of one entity whose ``changed_at`` is at or after the
ticket's time, in ``id`` order, with the schema :func:`events_schema` gives. With ``follow``
the stream then waits for new rows and sends them as they commit, until the client cancels.

Ids are handed out when a row is written, not when its transaction commits: a transaction that
commits late leaves a gap below ids already sent, filled later. A bare "highest id sent"
watermark would skip such a row, so the scan (:class:`EventScanner`) reads ``id > highest``
*and* the ids of the gaps it has seen, and keeps a gap until no transaction can still fill it:

- PostgreSQL: a gap is dropped once every transaction that was running a second or more after
  the gap was seen has ended (``txid_current_snapshot()``'s horizon passed the ``xmax`` noted
  then), however long that takes;
- MariaDB and SQLite: a gap is kept for ``flight.events_window`` seconds (SQLite writers are
  serialised, so its ids never commit out of order).

The first scan starts below the first row written ``events_window`` seconds before the ticket's
time, so rows of transactions that were running then are found as well. Every scan reads the
rows of all entities (the gaps are in the one id sequence) and keeps those of the ticket's.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from quiver.flight.arrow_types import arrow_schema
from quiver.flight.export import find_entity
from quiver.flight.pool import ConnectionPool, Lease
from quiver.flight.tickets import EventsTicket
from quiver.runtime.errors import ErrorDetail, PermanentError
from quiver.schema.catalog import Catalog
from quiver.schema.ir import Entity, Scalar
from quiver.sql.changelog import image_document, json_nulls, json_text, json_value
from quiver.sql.connect import database_error
from quiver.sql.database import driver_params
from quiver.sql.dialects import Dialect

__all__ = ["EventScanner", "EventsPlan", "events_schema", "plan_events", "stream_events"]

#: Most gaps a scan asks for again; past it the oldest are given up (and logged).
MAX_GAPS = 1_000
#: Seconds after a gap is first seen before PostgreSQL's transaction horizon is noted for it
#: (covers a writer that took its id just before its transaction got an xid). At most
#: :data:`MAX_GAPS` gaps are kept on every dialect; past it the oldest are given up.
_PG_SETTLE_S = 1.0

_COLUMNS = (
    "id, entity, entity_key, operation, before_image, after_image, changed_fields, actor,"
    " tenant_id, transaction_id, changed_at"
)


def events_schema(entity: Entity, images: str = "struct") -> pa.Schema:
    """The schema of an events stream of ``entity``: before and after are structs of the
    entity's fields (nullable, by API name), or JSON text when ``images`` is ``json``."""
    image: pa.DataType = pa.string()
    if images == "struct":
        image = pa.struct([pa.field(f.name, f_type.type, True) for f, f_type in _typed(entity)])
    return pa.schema(
        [
            pa.field("id", pa.int64(), False),
            pa.field("entity", pa.string(), False),
            pa.field("operation", pa.string(), False),
            pa.field("key", pa.string(), False),
            pa.field("before", image, True),
            pa.field("after", image, True),
            pa.field("changed_fields", pa.list_(pa.string()), False),
            pa.field("actor", pa.string(), True),
            pa.field("tenant_id", pa.string(), True),
            pa.field("transaction_id", pa.string(), False),
            pa.field("changed_at", pa.timestamp("us", tz="UTC"), False),
        ]
    )


def _typed(entity: Entity) -> list[tuple[Any, pa.Field]]:
    return list(zip(entity.fields, arrow_schema(entity.fields), strict=True))


@dataclass
class _Gap:
    first_seen: float
    #: PostgreSQL: the snapshot's xmax noted a second after the gap was seen.
    xmax: int | None = None


@dataclass
class _Row:
    id: int
    entity: str
    values: tuple[Any, ...]
    changed_at: dt.datetime


@dataclass
class EventScanner:
    """Reads the change log forward from a start id without skipping rows that commit late."""

    pool: ConnectionPool
    dialect: Dialect
    table: str
    window: float
    highest: int = 0
    gaps: dict[int, _Gap] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    @property
    def _name(self) -> str:
        return self.pool.url.dialect

    def _run(self, lease: Lease, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = lease.connection.cursor()
        try:
            cursor.execute(text, driver_params(self._name, params) or None)
            rows = cursor.fetchall()
        except Exception as exc:
            lease.broken = True
            raise database_error(exc, self.pool.url, "reading the change log") from None
        finally:
            try:
                cursor.close()
            except Exception:
                lease.broken = True
        return [tuple(r) for r in rows]

    def _text(self, text: str) -> str:
        pieces = text.split("?")
        out = [pieces[0]]
        for n, piece in enumerate(pieces[1:], start=1):
            out.append(self.dialect.placeholder(n))
            out.append(piece)
        return "".join(out)

    def _quoted(self) -> str:
        return self.dialect.quote_ident(self.table)

    def start(self, since: dt.datetime) -> None:
        """Place the scan just below the first row written ``window`` seconds before ``since``
        (or at the end of the log when nothing was written since then)."""
        lease = self.pool.acquire()
        try:
            self._check_table(lease)
            start = since - dt.timedelta(seconds=self.window)
            bound = {"mysql": "FROM_UNIXTIME(?)", "postgresql": "CAST(? AS timestamptz)"}.get(
                self._name, "?"
            )
            rows = self._run(
                lease,
                self._text(f"SELECT MIN(id) FROM {self._quoted()} WHERE changed_at >= {bound}"),
                [self._time_param(start)],
            )
            first = rows[0][0] if rows else None
            if first is None:
                last = self._run(lease, f"SELECT MAX(id) FROM {self._quoted()}", [])
                self.highest = int(last[0][0] or 0) if last else 0
            else:
                self.highest = int(first) - 1
        finally:
            self.pool.release(lease)

    def _check_table(self, lease: Lease) -> None:
        try:
            cursor = lease.connection.cursor()
            try:
                cursor.execute(f"SELECT id FROM {self._quoted()} WHERE 1 = 0")
                cursor.fetchall()
            finally:
                cursor.close()
        except Exception:
            lease.broken = True
            detail = ErrorDetail(
                f"there is no change-log table {self.table!r} in this database yet",
                "observer_events",
                "mutations create it on their first write; `quiver observers install-triggers`"
                " creates it and logs writes made outside Quiver (mutations.change_log_table"
                " names it)",
            )
            raise PermanentError([detail], code="NO_CHANGE_LOG") from None

    def _time_param(self, when: dt.datetime) -> str | decimal.Decimal:
        if self._name == "sqlite":  # the change log's own text spelling, compared as text
            return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if self._name == "mysql":  # FROM_UNIXTIME: the session's time zone, as the column
            return decimal.Decimal(f"{when.timestamp():.6f}")
        return when.isoformat()  # with its offset: the session's time zone does not matter

    def scan(self, limit: int) -> tuple[list[_Row], int]:
        """The next rows (of every entity), oldest id first, and how many the query read."""
        gap_ids = sorted(self.gaps)[:MAX_GAPS]
        condition = "id > ?"
        params: list[Any] = [self.highest]
        if gap_ids:
            condition = f"(id > ? OR id IN ({', '.join('?' for _ in gap_ids)}))"
            params.extend(gap_ids)
        changed_at = "changed_at"
        json_cast = "{}"
        if self._name == "postgresql":
            json_cast = "{}::text"
        elif self._name == "mysql":
            changed_at = "UNIX_TIMESTAMP(changed_at)"
        columns = _COLUMNS.replace("changed_at", changed_at)
        for column in ("entity_key", "before_image", "after_image", "changed_fields"):
            columns = columns.replace(column, json_cast.format(column), 1)
        text = self._text(
            f"SELECT {columns} FROM {self._quoted()} WHERE {condition} ORDER BY id LIMIT ?"
        )
        lease = self.pool.acquire()
        try:
            rows = self._run(lease, text, [*params, limit])
            horizon = self._pg_horizon(lease) if self._name == "postgresql" else None
        finally:
            self.pool.release(lease)
        out = [_Row(int(r[0]), r[1], r[2:10], _utc(r[10])) for r in rows]
        self._advance([r.id for r in out], len(rows) < limit, horizon)
        return out, len(rows)

    def _pg_horizon(self, lease: Lease) -> tuple[int, int]:
        rows = self._run(
            lease,
            "SELECT txid_snapshot_xmin(s), txid_snapshot_xmax(s)"
            " FROM (SELECT txid_current_snapshot() AS s) AS snap",
            [],
        )
        return int(rows[0][0]), int(rows[0][1])

    def _advance(self, ids: list[int], complete: bool, horizon: tuple[int, int] | None) -> None:
        """Move the watermark past ``ids`` and note the gaps below it; drop settled gaps."""
        now = self.clock()
        for i in ids:
            self.gaps.pop(i, None)
        above = sorted({i for i in ids if i > self.highest})
        if above:
            missing: list[int] = []
            previous = self.highest
            for i in above:  # a jump of the sequence leaves at most MAX_GAPS gaps below i
                missing.extend(range(max(previous + 1, i - MAX_GAPS), i))
                previous = i
            for gap_id in missing[-MAX_GAPS:]:
                self.gaps[gap_id] = _Gap(now)
            self.highest = above[-1]
        for gap_id, gap in list(self.gaps.items()):
            if horizon is not None:
                xmin, xmax = horizon
                if gap.xmax is None:
                    if now - gap.first_seen >= _PG_SETTLE_S:
                        gap.xmax = xmax
                elif xmin >= gap.xmax:
                    del self.gaps[gap_id]
            elif now - gap.first_seen > self.window:
                del self.gaps[gap_id]
        if len(self.gaps) > MAX_GAPS:
            for gap_id in sorted(self.gaps, key=lambda g: self.gaps[g].first_seen)[
                : len(self.gaps) - MAX_GAPS
            ]:
                del self.gaps[gap_id]


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, int | float | decimal.Decimal):
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    else:
        when = dt.datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


# ----- rows into batches -----


def _loads(value: Any) -> Any:
    """JSON text (every number exact, see :func:`json_value`) or an already decoded value."""
    return json_value(value)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode()
    if isinstance(value, str):
        return value
    return json_text(value).decode()


def _cell(value: Any, target: pa.DataType, as_json: bool = False) -> Any:
    """One image value (as JSON gave it) as a Python value of ``target``; ``as_json``: a JSON
    field's value, which travels as its JSON text (``"a"`` quoted, numbers as served)."""
    if value is None:
        return None
    if pa.types.is_list(target):
        if not as_json:
            # a PostgreSQL array of several dimensions: its elements in order, as GraphQL
            # serves it (the elements of other fields are never lists)
            value = list(_elements(value))
        return [_cell(v, target.value_type, as_json) for v in value]
    if as_json:
        return json_text(value).decode()
    if pa.types.is_boolean(target):
        if isinstance(value, str):
            return value.lower() in ("true", "t", "1")
        return bool(value)
    if pa.types.is_integer(target):
        return int(value)
    if pa.types.is_floating(target):
        return float(value)
    if pa.types.is_decimal(target):
        return decimal.Decimal(str(value))
    if pa.types.is_timestamp(target):
        return _utc(value)
    if pa.types.is_date(target):
        return dt.date.fromisoformat(str(value)[:10])
    if pa.types.is_time(target):
        of_day = dt.time.fromisoformat(str(value))
        if of_day.tzinfo is not None:  # SQLite keeps any text: time64 has no offset
            raise ValueError("a time of day with a UTC offset, which time64 has none of")
        return of_day
    if pa.types.is_binary(target):
        text = str(value)
        if text.startswith("\\x"):
            return bytes.fromhex(text[2:])
        import base64

        return base64.b64decode(text)
    if isinstance(value, str):
        return value
    return json_text(value).decode()


def _elements(value: Any) -> Iterator[Any]:
    """The elements of a (possibly nested) JSON array, in order."""
    for v in value:
        if isinstance(v, list):
            yield from _elements(v)
        else:
            yield v


def _json_image(
    raw: Any, json_fields: frozenset[str], list_fields: frozenset[str] = frozenset()
) -> str | None:
    """An image as JSON text in the event document's form: of ``json_fields`` (fields that may
    hold the JSON value null), one holding SQL NULL is absent, one holding JSON null is null
    (see :func:`quiver.sql.changelog.image_document`); of ``list_fields`` (arrays of other
    than JSON), one logged as nested lists (a PostgreSQL array of several dimensions, logged
    so before the triggers served it flat) is the list of its elements, as GraphQL serves
    it; every number as logged."""
    text = _json_text(raw)
    if text is None:
        return text
    nested = bool(list_fields) and "[[" in text.replace(" ", "")
    if not nested and (not json_fields or "null" not in text):
        return text
    image = json.loads(text, parse_float=orjson.Fragment, parse_int=_exact_int)
    document = image_document(image, json_fields)
    if nested and document is not None:
        for name in list_fields:
            value = document.get(name)
            if isinstance(value, list) and any(isinstance(v, list) for v in value):
                document[name] = list(_elements(value))
    if document == image:
        return text
    return orjson.dumps(document).decode()


def _exact_int(text: str) -> Any:
    number = int(text)
    return number if -(2**63) <= number < 2**64 else orjson.Fragment(text)


def _image(raw: Any, typed: list[tuple[Any, pa.Field]], event_id: int, side: str) -> Any:
    image = _loads(raw)
    if image is None:
        return None
    nulls = json_nulls(image)
    out: dict[str, Any] = {}
    for f, target in typed:
        if f.name not in image:
            continue
        if f.name in nulls and image[f.name] is None:
            out[f.name] = "null"  # the JSON value null, as its JSON text
            continue
        try:
            out[f.name] = _cell(image[f.name], target.type, f.scalar == Scalar.JSON)
        except (ValueError, TypeError, ArithmeticError) as exc:
            detail = ErrorDetail(
                f"change {event_id}: {side}.{f.name} = {image[f.name]!r} cannot be read as "
                f"{target.type} ({exc})",
                f"observer_events {side}.{f.name}",
                'ask for the images as JSON text: {"observer_events": {..., "images": "json"}}',
            )
            raise PermanentError([detail], code="STORED_VALUE") from None
    return out


def _batch(rows: list[_Row], schema: pa.Schema, entity: Entity, images: str) -> pa.RecordBatch:
    typed = _typed(entity)
    json_fields = frozenset(f.name for f in entity.fields if f.holds_json_null)
    list_fields = frozenset(f.name for f in entity.fields if f.is_list and f.scalar != Scalar.JSON)
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for r in rows:
        key, op, before, after, changed, actor, tenant, txid = r.values
        columns["id"].append(r.id)
        columns["entity"].append(r.entity)
        columns["operation"].append(op)
        columns["key"].append(_json_text(key))
        if images == "struct":
            columns["before"].append(_image(before, typed, r.id, "before"))
            columns["after"].append(_image(after, typed, r.id, "after"))
        else:
            columns["before"].append(_json_image(before, json_fields, list_fields))
            columns["after"].append(_json_image(after, json_fields, list_fields))
        columns["changed_fields"].append([str(c) for c in (_loads(changed) or [])])
        columns["actor"].append(actor)
        columns["tenant_id"].append(tenant)
        columns["transaction_id"].append(str(txid))
        columns["changed_at"].append(r.changed_at)
    arrays = [_array(columns[f.name], f, rows) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(values: list[Any], column: pa.Field, rows: list[_Row]) -> pa.Array:
    """``values`` as ``column``'s array; a value its type cannot hold (a decimal past its
    precision, NaN in a decimal) is STORED_VALUE naming the change and the field."""
    try:
        return pa.array(values, type=column.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where, shown = column.name, ""
        if pa.types.is_struct(column.type):
            for row, image in zip(rows, values, strict=True):
                for f in column.type if image is not None else ():
                    try:
                        pa.array([image.get(f.name)], type=f.type)
                    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                        where = f"{column.name}.{f.name}"
                        shown = f"change {row.id}: {where} = {image.get(f.name)!s:.80} "
                        break
                if shown:
                    break
        detail = ErrorDetail(
            f"{shown or where + ' '}cannot be read as its Arrow type ({problem})",
            f"observer_events {where}",
            'ask for the images as JSON text: {"observer_events": {..., "images": "json"}}',
        )
        raise PermanentError([detail], code="STORED_VALUE") from None


@dataclass(frozen=True)
class EventsPlan:
    entity: Entity
    schema: pa.Schema
    ticket: EventsTicket


def plan_events(catalog: Catalog, ticket: EventsTicket) -> EventsPlan:
    """Check the ticket's entity against the catalog (nothing runs)."""
    entity = find_entity(catalog, ticket.entity)
    return EventsPlan(entity, events_schema(entity, ticket.images), ticket)


def stream_events(
    plan: EventsPlan,
    scanner: EventScanner,
    batch_rows: int,
    poll_interval: float,
    stopped: Callable[[], bool],
) -> Iterator[pa.RecordBatch]:
    """Batches of the plan's events: every row up to now, then (following) new rows as they
    commit, until ``stopped()`` says the client is gone or cancelled. The scanner has been
    started (:meth:`EventScanner.start`)."""
    ticket = plan.ticket
    name = plan.entity.name
    limit = max(1, min(batch_rows, 10_000))
    pending: list[_Row] = []
    while True:
        rows, read = scanner.scan(limit)
        pending.extend(r for r in rows if r.entity == name and r.changed_at >= ticket.since)
        caught_up = read < limit
        if pending and (caught_up or len(pending) >= batch_rows):
            for start in range(0, len(pending), batch_rows):
                chunk = pending[start : start + batch_rows]
                yield _batch(chunk, plan.schema, plan.entity, ticket.images)
            pending = []
        if not caught_up:
            if stopped():
                return
            continue
        if not ticket.follow:
            return
        if _wait(poll_interval, stopped):
            return


def _wait(seconds: float, stopped: Callable[[], bool]) -> bool:
    """Sleep ``seconds`` in small steps; True as soon as ``stopped()`` is."""
    end = time.monotonic() + seconds
    while True:
        if stopped():
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.05))
