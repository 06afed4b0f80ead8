"""Authoring the API in Python: decorators to schema IR, every error with its file:line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest

import quiver
from quiver.schema import authoring
from quiver.schema.authoring import build_schema, collecting, compile_app, load_app
from quiver.schema.ir import Entity, Field, Relation, Scalar, Schema
from quiver.schema.merge import link_relations, merge, strip_hidden
from quiver.schema.validate import validate_schema


def write_app(directory: Path, source: str, name: str = "app.py") -> tuple[Path, str]:
    text = textwrap.dedent(source).lstrip("\n")
    path = directory / name
    path.write_text(text)
    return path, text


def line_of(text: str, marker: str) -> int:
    """The 1-based line of the only line containing ``marker``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


async def compile_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> tuple[list[str], str]:
    monkeypatch.chdir(tmp_path)
    _, text = write_app(tmp_path, source)
    result = await compile_app("app.py")
    return result.lines(), text


# --------------------------------------------------------------------------------------------
# The public names
# --------------------------------------------------------------------------------------------


def test_public_names_resolve_to_the_authoring_module() -> None:
    assert quiver.type is authoring.object_type
    assert quiver.field is authoring.field
    assert quiver.relation is authoring.relation
    assert quiver.query is authoring.query
    assert quiver.Where is authoring.Where
    assert quiver.OrderBy is authoring.OrderBy
    assert quiver.JSON is authoring.JSON
    assert set(quiver.__all__) >= {"type", "field", "relation", "query", "BigInt", "ID", "JSON"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = quiver.nope


def test_importing_quiver_does_not_import_the_authoring_module() -> None:
    code = "import sys, quiver; print('quiver.schema.authoring' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# Declarations to IR
# --------------------------------------------------------------------------------------------


def test_every_scalar_annotation_maps_to_its_ir_scalar_and_nullability() -> None:
    @quiver.type(source="everything", key="i")
    class Everything:
        i: int
        f: float
        s: str
        b: bool
        d: Decimal
        ts: datetime
        day: date
        at: time
        u: UUID
        raw: bytes
        big: quiver.BigInt
        ident: quiver.ID
        doc: quiver.JSON
        plain_dict: dict[str, int]
        maybe: int | None
        old_style: int | None = None
        maybe_big: quiver.BigInt | None = None

    app = build_schema([Everything])
    assert app.errors == []
    fields = {f.name: (f.scalar, f.nullable) for f in app.schema.entities[0].fields}
    assert fields == {
        "i": (Scalar.INT, False),
        "f": (Scalar.FLOAT, False),
        "raw": (Scalar.BASE64, False),
        "s": (Scalar.STRING, False),
        "b": (Scalar.BOOLEAN, False),
        "d": (Scalar.DECIMAL, False),
        "ts": (Scalar.DATETIME, False),
        "day": (Scalar.DATE, False),
        "at": (Scalar.TIME, False),
        "u": (Scalar.UUID, False),
        "big": (Scalar.BIGINT, False),
        "ident": (Scalar.ID, False),
        "doc": (Scalar.JSON, False),
        "plainDict": (Scalar.JSON, False),
        "maybe": (Scalar.INT, True),
        "oldStyle": (Scalar.INT, True),
        "maybeBig": (Scalar.BIGINT, True),
    }


def test_type_defaults_come_from_the_class_and_options_override_them() -> None:
    @quiver.type
    class InvoiceLine:
        """One line of an invoice."""

        id: int
        unit_price: Decimal = quiver.field(column="UnitPrice", description="Price of one unit.")
        secret: str = quiver.field(hidden=True)
        renamed: str = quiver.field(name="label")

    entity = build_schema([InvoiceLine]).schema.entities[0]
    assert (entity.name, entity.source, entity.description) == (
        "InvoiceLine",
        "invoice_line",
        "One line of an invoice.",
    )
    assert entity.primary_key == ("id",)
    assert entity.list_field == "invoiceLines"
    assert entity.by_key_field == "invoiceLine"
    assert entity.root_fields is None
    price = entity.field("unitPrice")
    assert price is not None
    assert (price.column, price.description) == ("UnitPrice", "Price of one unit.")
    secret = entity.field("secret")
    assert secret is not None and secret.hidden
    assert entity.field("label") is not None and entity.field("label").column == "renamed"  # type: ignore[union-attr]
    served = strip_hidden(build_schema([InvoiceLine]).schema).entities[0]
    assert [f.name for f in served.fields] == ["id", "unitPrice", "label"]


def test_declaration_lines_are_recorded() -> None:
    @quiver.type(source="t", key="id")
    class Located:
        id: int
        name: str

    entity = build_schema([Located]).schema.entities[0]
    here = Path(__file__)
    lines = here.read_text().splitlines()
    assert entity.location is not None and entity.location.file.endswith("test_authoring.py")
    assert lines[entity.location.line - 1].strip() == "class Located:"
    name_field = entity.field("name")
    assert name_field is not None and name_field.location is not None
    assert lines[name_field.location.line - 1].strip() == "name: str"


def test_inherited_annotations_are_fields_declared_at_the_base_class_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_app(
        tmp_path,
        """
        from typing import Optional

        class Audited:
            created_by: Optional[str]  # base

        import quiver

        @quiver.type(source="thing")
        class Thing(Audited):
            id: int
            name: "Optional[str]"
        """,
        name="base.py",
    )
    text = (tmp_path / "base.py").read_text()
    app = load_app("base.py")
    assert app.errors == []
    fields = app.schema.entities[0].fields
    assert [(f.name, f.nullable) for f in fields] == [
        ("createdBy", True),
        ("id", False),
        ("name", True),
    ]
    assert str(fields[0].location) == f"base.py:{line_of(text, '# base')}"


def test_forward_and_reverse_relations_join_on_the_keys() -> None:
    @quiver.type(source="customer", key="customer_id")
    class Customer:
        customer_id: int
        orders: list[Order] = quiver.relation(fk="customer_id")

    @quiver.type(source="orders", key="id")
    class Order:
        id: int
        customer_id: int | None
        customer: Customer | None = quiver.relation(fk="customer_id")
        buyer: Customer = quiver.relation(fk="customer_id", references="customer_id")

    app = build_schema([Customer, Order])
    assert app.errors == []
    schema = link_relations(app.schema)
    customer, order = schema.entities
    assert customer.relation("orders") == Relation(
        name="orders",
        target="Order",
        kind="many",
        local_columns=("customer_id",),
        target_columns=("customer_id",),
        nullable=False,
        location=customer.relation("orders").location,  # type: ignore[union-attr]
    )
    forward = order.relation("customer")
    assert forward is not None
    assert (forward.kind, forward.local_columns, forward.target_columns, forward.nullable) == (
        "one",
        ("customer_id",),
        ("customer_id",),
        True,
    )
    buyer = order.relation("buyer")
    assert buyer is not None and buyer.nullable is False
    assert validate_schema(schema).errors == []


def test_composite_keys_join_column_by_column_and_must_match_in_length() -> None:
    @quiver.type(source="invoice_line", key=["invoice_id", "line_no"])
    class InvoiceLine:
        invoice_id: int
        line_no: int
        notes: list[LineNote] = quiver.relation(fk=["invoice_id", "line_no"])

    @quiver.type(source="line_note", key="id")
    class LineNote:
        id: int
        invoice_id: int
        line_no: int
        line: InvoiceLine = quiver.relation(fk=["invoice_id", "line_no"])
        half: InvoiceLine = quiver.relation(fk="invoice_id")

    schema = link_relations(build_schema([InvoiceLine, LineNote]).schema)
    line, note = schema.entities
    assert line.primary_key == ("invoice_id", "line_no")
    notes = line.relation("notes")
    assert notes is not None
    assert (notes.local_columns, notes.target_columns) == (
        ("invoice_id", "line_no"),
        ("invoice_id", "line_no"),
    )
    forward = note.relation("line")
    assert forward is not None and forward.target_columns == ("invoice_id", "line_no")
    report = validate_schema(schema)
    half = note.relation("half")
    assert half is not None and half.location is not None
    assert [(d.where, d.message) for d in report.errors] == [
        (
            str(half.location),
            "LineNote.half: 1 column(s) ['invoice_id'] cannot join 2 column(s) "
            "['invoice_id', 'line_no'] of InvoiceLine",
        )
    ]


def test_relation_fk_may_name_the_field_instead_of_the_column() -> None:
    @quiver.type(source="artist", key="ArtistId")
    class Artist:
        artist_id: int = quiver.field(column="ArtistId")

    @quiver.type(source="album", key="AlbumId")
    class Album:
        album_id: int = quiver.field(column="AlbumId")
        artist_id: int = quiver.field(column="ArtistId")
        artist: Artist = quiver.relation(fk="artist_id")

    album = link_relations(build_schema([Artist, Album]).schema).entity("Album")
    assert album is not None
    rel = album.relation("artist")
    assert rel is not None
    assert (rel.local_columns, rel.target_columns) == (("ArtistId",), ("ArtistId",))


def test_queries_declare_exactly_the_root_fields_and_arguments() -> None:
    @quiver.type(source="track", key="id")
    class Track:
        id: int
        name: str

    @quiver.type(source="genre", key="id")
    class Genre:
        id: int

    @quiver.query(connection=True, aggregate=True)
    def tracks(
        where: quiver.Where[Track] | None = None,
        order_by: list[quiver.OrderBy[Track]] | None = None,
        limit: int | None = None,
    ) -> list[Track]:
        return []

    @quiver.query(name="trackById")
    def track(id: int) -> Track | None: ...

    app = build_schema([Track, Genre], [tracks, track])
    assert app.errors == []
    track_e, genre_e = app.schema.entities
    assert track_e.root_fields == ("list", "connection", "aggregate", "by_key")
    assert (track_e.list_field, track_e.by_key_field) == ("tracks", "trackById")
    assert track_e.list_arguments == ("where", "orderBy", "limit")
    assert genre_e.root_fields == ()


def test_a_load_sees_only_its_own_declarations(tmp_path: Path) -> None:
    for name in ("one", "two"):
        d = tmp_path / name
        d.mkdir()
        (d / "models.py").write_text(
            textwrap.dedent(
                f"""
                import quiver

                @quiver.type(source="{name}_table", key="id")
                class {name.title()}:
                    id: int
                """
            )
        )
        write_app(d, "from models import *  # noqa: F403\n")
    first = load_app(tmp_path / "one" / "app.py")
    second = load_app(tmp_path / "two" / "app.py")
    assert [e.source for e in first.schema.entities] == ["one_table"]
    assert [e.source for e in second.schema.entities] == ["two_table"]
    assert "models" not in sys.modules


def test_a_load_forgets_the_app_modules_but_not_installed_ones_below_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor = tmp_path / "vendor"
    (tmp_path / "pkg").mkdir()
    vendor.mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("ID = 1\n")
    (vendor / "vendored_lib.py").write_text("VALUE = 2\n")
    monkeypatch.syspath_prepend(str(vendor))
    write_app(
        tmp_path,
        """
        import pkg, vendored_lib
        import quiver

        @quiver.type(source="t")
        class T:
            id: int
        """,
    )
    try:
        assert load_app(tmp_path / "app.py").errors == []
        assert "pkg" not in sys.modules
        assert "vendored_lib" in sys.modules
    finally:
        sys.modules.pop("vendored_lib", None)


def test_decorating_outside_a_collection_registers_nothing() -> None:
    @quiver.type(source="stray")
    class Stray:
        id: int

    with collecting() as registry:

        @quiver.type(source="inside")
        class Inside:
            id: int

    assert [d.cls for d in registry.types] == [Inside]
    assert Stray.__quiver_type__.source == "stray"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Every error kind, at its line
# --------------------------------------------------------------------------------------------

MODELS = """
from __future__ import annotations
from decimal import Decimal
import quiver
"""


async def test_unknown_relation_target_is_reported_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, text = await compile_lines(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@quiver.type(source="customer")
class Customer:
    id: int

@quiver.type(source="orders")
class Order:
    id: int
    customer_id: int
    customer: Custmer = quiver.relation(fk="customer_id")  # typo
""",
    )
    n = line_of(text, "# typo")
    assert lines == [
        f"app.py:{n}: error: Order.customer: unknown relation target 'Custmer'; did you mean "
        "'Customer'? (annotate it with a @quiver.type class, or with a reflected type's name and "
        "compile with --extend-db)"
    ]


async def test_duplicate_type_field_and_root_field_names_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, text = await compile_lines(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@quiver.type(source="a")
class Thing:  # first
    id: int
    title: str
    name: str = quiver.field(name="title")  # dup field

@quiver.type(source="b", name="Thing")
class OtherThing:  # second
    id: int

@quiver.type(source="c")
class Album:  # album
    id: int

@quiver.type(source="d")
class Record:  # record
    id: int

@quiver.query
def albums() -> list[Album]: ...

@quiver.query(name="albums")
def records() -> list[Record]: ...  # dup root
""",
    )
    first, dup_field = line_of(text, "# first"), line_of(text, "# dup field")
    second, record = line_of(text, "# second"), line_of(text, "# record")
    title = line_of(text, "    title: str")
    assert lines == [
        f"app.py:{dup_field}: error: Thing: duplicate field name 'title' (also at "
        f"app.py:{title}) (rename one of them with name=)",
        f"app.py:{second}: error: duplicate type name 'Thing' (also declared at "
        f"app.py:{first}) (give one of them another name=)",
        f"app.py:{record}: error: duplicate root field 'albums': Record (list) and Album "
        "(list) both use it (name the query differently with @quiver.query(name=...))",
    ]


async def test_fk_and_key_columns_that_do_not_exist_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, text = await compile_lines(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@quiver.type(source="customer", key="customer_id")
class Customer:
    customer_id: int
    orders: list[Order] = quiver.relation(fk="custmer_id")  # reverse typo

@quiver.type(source="orders", key="order_no")  # bad key
class Order:
    id: int
    customer_id: int
    customer: Customer = quiver.relation(fk="customer_idd")  # forward typo
    note: str = quiver.field(column="note_id")
""",
    )
    reverse, forward = line_of(text, "# reverse typo"), line_of(text, "# forward typo")
    key = line_of(text, "# bad key") + 1
    assert lines == [
        f"app.py:{reverse}: error: Customer.orders: column 'custmer_id' does not exist on "
        "Order; did you mean 'customer_id'? (fix the column name in fk= / references=)",
        f"app.py:{key}: error: Order: key column 'order_no' is not a field (declare it as a "
        "field or fix key= (fields: id, customerId, note))",
        f"app.py:{forward}: error: Order.customer: column 'customer_idd' does not exist on "
        "Order; did you mean 'customer_id'? (fix the column name in fk= / references=)",
    ]


async def test_undeclared_fk_columns_are_a_warning_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _, text = write_app(
        tmp_path,
        MODELS
        + """
@quiver.type(source="customer")
class Customer:
    id: int

@quiver.type(source="orders")
class Order:
    id: int
    customer: Customer = quiver.relation(fk="customer_id")  # undeclared
""",
    )
    result = await compile_app("app.py")
    assert result.errors == []
    assert result.schema is not None
    n = line_of(text, "# undeclared")
    assert result.lines() == [
        f"app.py:{n}: warning: Order.customer: column 'customer_id' is not declared on Order; "
        "it is assumed to exist in 'orders' (declare it on Order, with "
        "quiver.field(hidden=True) to keep it out of the API, or compile with --check-db to "
        "verify it)"
    ]


async def test_unsupported_annotations_and_bad_names_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, text = await compile_lines(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@quiver.type(source="t2", name="Thing")
class GoodThing:
    id: int

@quiver.type(source="t", name="Bad-Name")  # bad type name
class Thing:
    id: int
    tags: list[str]  # unsupported list
    mapping: set[int] | None  # unsupported set
    dunder: int = quiver.field(name="__x")  # dunder
    spaced: int = quiver.field(name="two words")  # spaced
    query_type: int
    loose: Decimal | str  # union

@quiver.type(source="q", name="Query")  # reserved
class QueryType:
    id: int

@quiver.type(source="w", name="ThingWhere")  # generated
class ThingFilter:
    id: int
""",
    )
    fix = (
        "(use int, float, str, bool, Decimal, datetime, date, time, uuid.UUID, bytes, "
        "quiver.BigInt, quiver.ID, quiver.JSON, a @quiver.type class or list[...] of one, each "
        "optionally '| None')"
    )
    at = {m: line_of(text, m) for m in ("# unsupported list", "# unsupported set", "# dunder")}
    at.update({m: line_of(text, m) for m in ("# spaced", "# union", "# reserved")})
    name_line = line_of(text, "# bad type name") + 1
    reserved = at["# reserved"] + 1
    assert lines == [
        f"app.py:{name_line}: error: type name 'Bad-Name' is not a valid GraphQL name (use "
        "letters, digits and '_', not starting with a digit; pass name=)",
        f"app.py:{at['# unsupported list']}: error: Bad-Name.tags: unsupported annotation "
        f"list[str] {fix}",
        f"app.py:{at['# unsupported set']}: error: Bad-Name.mapping: unsupported annotation "
        f"set[int] | None {fix}",
        f"app.py:{at['# dunder']}: error: Bad-Name: field name '__x' starts with '__', which "
        "GraphQL reserves for introspection (pass name= to quiver.field() or quiver.relation())",
        f"app.py:{at['# spaced']}: error: Bad-Name: field name 'two words' is not a valid GraphQL "
        "name (pass name= to quiver.field() or quiver.relation())",
        f"app.py:{at['# union']}: error: Bad-Name.loose: unsupported annotation "
        f"Decimal | str {fix}",
        f"app.py:{reserved}: error: type name 'Query' is reserved by the GraphQL schema (rename "
        "it, e.g. name='QueryRow')",
        f"app.py:{line_of(text, '# generated') + 1}: error: type name 'ThingWhere' is also the "
        "name of a type the GraphQL schema generates for Thing (rename one of the two types "
        "with name=)",
    ]


async def test_relations_without_fk_or_with_scalar_annotations_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, text = await compile_lines(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@quiver.type(source="artist")
class Artist:
    id: int
    albums: list[Album]  # no fk

@quiver.type(source="album")
class Album:
    id: int
    artist_id: int
    artist: int = quiver.relation(fk="artist_id")  # scalar relation
""",
    )
    no_fk, scalar = line_of(text, "# no fk"), line_of(text, "# scalar relation")
    assert lines == [
        f"app.py:{no_fk}: error: Artist.albums: the relation to Album names no foreign key "
        "column (pass fk='column' (a column of the Album source), e.g. "
        "quiver.relation(fk='artist_id'))",
        f"app.py:{scalar}: error: Album.artist: a relation must be annotated with a "
        "@quiver.type class, not int (annotate it 'Target', 'Target | None' or "
        "'list[Target]', or declare a scalar with quiver.field())",
    ]


async def test_query_signatures_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, text = await compile_lines(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@quiver.type(source="album", key="id")
class Album:
    id: int

@quiver.type(source="artist")
class Artist:
    name: str

@quiver.query
def albums(
    where: quiver.Where[Artist] | None = None,  # wrong where
    first: int | None = None,  # unknown arg
) -> list[Album]: ...

@quiver.query
def album(id: str) -> Album | None: ...  # wrong key type

@quiver.query
def artist(name: str) -> Artist | None: ...  # no key

@quiver.query
def count() -> int: ...  # not a type
""",
    )
    at = {
        m: line_of(text, m)
        for m in ("# wrong where", "# unknown arg", "# wrong key type", "# no key", "# not a ty")
    }
    assert lines == [
        f"app.py:{at['# wrong where']}: error: query albums: argument 'where' is annotated "
        "quiver.Where[Artist] | None (annotate it quiver.Where[Album] | None)",
        f"app.py:{at['# unknown arg']}: error: query albums: unsupported argument 'first' (a "
        "list query accepts where, order_by, limit and offset)",
        f"app.py:{at['# wrong key type']}: error: query album: key argument 'id' is annotated "
        "str but Album.id is Int (its parameters must be the key fields: id: int)",
        f"app.py:{at['# no key']}: error: query artist: Artist has no key to look a row up "
        "by (pass key='column' to @quiver.type on Artist, or return list[Artist])",
        f"app.py:{at['# not a ty']}: error: query count returns int (annotate the return as "
        "list[T] (a list field) or T | None (one row by key), where T is a @quiver.type class)",
    ]


async def test_an_app_that_fails_to_import_is_reported_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, text = await compile_lines(
        tmp_path,
        monkeypatch,
        MODELS
        + """
@quiver.type(sourc="t")  # typo in option
class Thing:
    id: int
""",
    )
    n = line_of(text, "# typo in option")
    assert len(lines) == 1
    assert lines[0].startswith(f"app.py:{n}: error: importing the app failed: TypeError: ")
    assert "unexpected keyword argument 'sourc'" in lines[0]

    lines, text = await compile_lines(tmp_path, monkeypatch, "x = 1\ndef broken(:\n")
    assert lines == ["app.py:2: error: syntax error: invalid syntax"]


async def test_a_missing_file_and_an_app_without_types_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = await compile_app("nope.py")
    assert missing.lines() == [
        "nope.py: error: no such file: nope.py (pass the path of a Python file)"
    ]
    lines, _ = await compile_lines(tmp_path, monkeypatch, "import quiver\n")
    assert lines == [
        "app.py:1: error: the app declares no @quiver.type classes (decorate at least one "
        "class with @quiver.type)"
    ]


# --------------------------------------------------------------------------------------------
# Merging authored types over reflected ones
# --------------------------------------------------------------------------------------------


def _reflected() -> Schema:
    artist = Entity(
        name="Artist",
        source="artist",
        fields=(
            Field(name="artistId", column="artist_id", scalar=Scalar.INT, nullable=False),
            Field(name="name", column="name", scalar=Scalar.STRING),
        ),
        primary_key=("artist_id",),
        relations=(
            Relation(
                name="albums",
                target="Album",
                kind="many",
                local_columns=("artist_id",),
                target_columns=("artist_id",),
                nullable=False,
            ),
        ),
        list_field="artists",
        by_key_field="artist",
    )
    album = Entity(
        name="Album",
        source="album",
        fields=(
            Field(name="albumId", column="album_id", scalar=Scalar.INT, nullable=False),
            Field(name="title", column="title", scalar=Scalar.STRING, nullable=False),
            Field(name="artistId", column="artist_id", scalar=Scalar.INT, nullable=False),
            Field(name="price", column="price", scalar=Scalar.FLOAT),
        ),
        primary_key=("album_id",),
        relations=(
            Relation(
                name="artist",
                target="Artist",
                kind="one",
                local_columns=("artist_id",),
                target_columns=("artist_id",),
                nullable=False,
            ),
        ),
        list_field="albums",
        by_key_field="album",
    )
    return Schema(entities=(album, artist))


def test_an_authored_type_overrides_and_extends_the_reflected_one() -> None:
    @quiver.type(source="album", key="album_id")
    class Record:
        album_id: int
        title: str = quiver.field(name="headline", description="The album title.")
        price: Decimal | None
        artist_id: int = quiver.field(hidden=True)
        performer: Artist = quiver.relation(fk="artist_id")  # type: ignore[name-defined]  # noqa: F821
        artist: Artist = quiver.relation(hidden=True)  # type: ignore[name-defined]  # noqa: F821

    app = build_schema([Record])
    assert app.errors == []
    merged = link_relations(merge(_reflected(), app.schema))
    assert validate_schema(merged).errors == []
    served = strip_hidden(merged)
    record = served.entity("Record")
    assert record is not None and served.entity("Album") is None
    assert [(f.name, f.column, f.scalar) for f in record.fields] == [
        ("albumId", "album_id", Scalar.INT),
        ("headline", "title", Scalar.STRING),
        ("price", "price", Scalar.DECIMAL),
    ]
    assert [(r.name, r.target, r.target_columns) for r in record.relations] == [
        ("performer", "Artist", ("artist_id",))
    ]
    assert (record.list_field, record.by_key_field) == ("records", "record")
    artist = served.entity("Artist")
    assert artist is not None
    albums = artist.relation("albums")
    assert albums is not None and albums.target == "Record"


def test_an_authored_type_without_a_reflected_source_is_added() -> None:
    @quiver.type(source="v_top_album", key="album_id")
    class TopAlbum:
        album_id: int

    merged = merge(_reflected(), build_schema([TopAlbum]).schema)
    assert [e.name for e in merged.entities] == ["Album", "Artist", "TopAlbum"]


@pytest.mark.parametrize("name", ["and", "or", "not", "true", "false", "null"])
def test_a_field_named_like_a_filter_combinator_or_literal_is_rejected(name: str) -> None:
    from quiver.schema.ir import Entity, Field, Scalar, Schema

    entity = Entity(
        name="Thing",
        source="thing",
        primary_key=("id",),
        fields=(
            Field(name="id", column="id", scalar=Scalar.INT, nullable=False),
            Field(name=name, column="c", scalar=Scalar.STRING),
        ),
    )
    errors = validate_schema(Schema(entities=(entity,))).errors
    assert len(errors) == 1
    assert f"field name {name!r} is reserved" in errors[0].message
    assert "name=" in errors[0].fix


async def test_a_query_argument_default_the_api_would_drop_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query function never runs, so ``limit: int | None = 50`` would serve no default:
    refused, where ``= None`` (optional) is accepted."""
    lines, text = await compile_lines(
        tmp_path,
        monkeypatch,
        """
import quiver

@quiver.type(source="t")
class Thing:
    id: int

@quiver.query
def things(limit: int | None = 50, offset: int | None = None) -> list[Thing]: ...  # list

@quiver.query
def thing(id: int = 7) -> Thing | None: ...  # key
""",
    )
    listed, key = line_of(text, "# list"), line_of(text, "# key")
    assert lines == [
        f"app.py:{listed}: error: query things: argument 'limit' has the default 50, which the"
        " API cannot apply (the function's body never runs; clients give every argument they"
        " want) (remove the default (limit: int | None = None makes the argument"
        " optional))",
        f"app.py:{key}: error: query thing: argument 'id' has the default 7, which the API"
        " cannot apply (the function's body never runs; clients give every argument they want)"
        " (remove the default (id: int | None = None makes the argument optional))",
    ]
