"""Create, update and delete mutations on PostgreSQL, MariaDB and SQLite: typed inputs, batches,
where filters, and the written rows returned with nested selections."""

from __future__ import annotations

import pytest

from tests.graphql.conftest import Runner
from tests.graphql.mutation_fixtures import open_bookshop

pytestmark = pytest.mark.asyncio(loop_scope="session")


CREATE_AUTHOR = """
mutation($input: AuthorCreateInput!) {
  createAuthor(input: $input) { id name email country bio }
}"""


async def test_create_returns_the_row_with_the_database_defaults(shop: Runner) -> None:
    data = await shop.data(CREATE_AUTHOR, {"input": {"name": "Ann", "email": "ann@x.org"}})
    row = data["createAuthor"]
    assert row["name"] == "Ann" and row["country"] == "NZ" and row["bio"] is None
    assert isinstance(row["id"], int)
    assert shop.sql("SELECT name, email, country FROM authors WHERE id = ?", (row["id"],)) == [
        ("Ann", "ann@x.org", "NZ")
    ]


async def test_input_types_require_not_null_columns_without_default(shop: Runner) -> None:
    data = await shop.data(
        """{ __type(name: "AuthorCreateInput") { inputFields { name type { kind } } } }"""
    )
    kinds = {f["name"]: f["type"]["kind"] for f in data["__type"]["inputFields"]}
    assert kinds == {
        "id": "SCALAR",
        "name": "NON_NULL",
        "email": "NON_NULL",
        "country": "SCALAR",
        "bio": "SCALAR",
    }
    book = await shop.data("""{ __type(name: "BookCreateInput") { inputFields { name } } }""")
    names = {f["name"] for f in book["__type"]["inputFields"]}
    assert "titleLength" not in names  # generated: the database writes it
    errors = await shop.errors(CREATE_AUTHOR, {"input": {"name": "No email"}})
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "email" in errors[0]["message"]


async def test_batch_create_returns_rows_in_input_order_with_nested_selections(
    shop: Runner,
) -> None:
    author = (await shop.data(CREATE_AUTHOR, {"input": {"name": "Bo", "email": "bo@x.org"}}))[
        "createAuthor"
    ]
    data = await shop.data(
        """mutation($inputs: [BookCreateInput!]!) {
          createBooks(inputs: $inputs) { title pages titleLength author { name books { title } } }
        }""",
        {
            "inputs": [
                {"authorId": author["id"], "title": "Zebra", "pages": 10},
                {"authorId": author["id"], "title": "Apple"},
            ]
        },
    )
    books = data["createBooks"]
    assert [b["title"] for b in books] == ["Zebra", "Apple"]
    assert books[0]["titleLength"] == 5 and books[1]["pages"] is None
    assert books[0]["author"]["name"] == "Bo"
    assert sorted(b["title"] for b in books[0]["author"]["books"]) == ["Apple", "Zebra"]


async def test_update_by_key_and_by_where(shop: Runner) -> None:
    for name in ("A1", "A2", "A3"):
        await shop.data(CREATE_AUTHOR, {"input": {"name": name, "email": f"{name}@x.org"}})
    [(a1,)] = shop.sql("SELECT id FROM authors WHERE name = 'A1'")
    one = await shop.data(
        'mutation($id: Int!) { updateAuthor(id: $id, set: {bio: "hi"}) { name bio } }',
        {"id": a1},
    )
    assert one["updateAuthor"] == {"name": "A1", "bio": "hi"}
    many = await shop.data(
        """mutation { updateAuthors(where: {name: {in: ["A2", "A3"]}}, set: {country: "FR"})
          { name country } }"""
    )
    assert many["updateAuthors"] == [
        {"name": "A2", "country": "FR"},
        {"name": "A3", "country": "FR"},
    ]
    assert shop.sql("SELECT name FROM authors WHERE country = 'FR' ORDER BY name") == [
        ("A2",),
        ("A3",),
    ]
    none = await shop.data(
        'mutation { updateAuthors(where: {name: {eq: "nobody"}}, set: {bio: "x"}) { id } }'
    )
    assert none["updateAuthors"] == []


async def test_delete_returns_the_rows_as_they_were(shop: Runner) -> None:
    for name in ("D1", "D2", "Keep"):
        await shop.data(CREATE_AUTHOR, {"input": {"name": name, "email": f"{name}@x.org"}})
    data = await shop.data(
        'mutation { deleteAuthors(where: {name: {startsWith: "D"}}) { name email } }'
    )
    assert data["deleteAuthors"] == [
        {"name": "D1", "email": "D1@x.org"},
        {"name": "D2", "email": "D2@x.org"},
    ]
    assert shop.sql("SELECT name FROM authors") == [("Keep",)]
    [(keep,)] = shop.sql("SELECT id FROM authors")
    one = await shop.data("mutation($id: Int!) { deleteAuthor(id: $id) { name } }", {"id": keep})
    assert one["deleteAuthor"] == {"name": "Keep"}
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(0,)]


async def test_several_mutation_fields_run_in_order_in_one_operation(shop: Runner) -> None:
    data = await shop.data(
        """mutation {
          a: createAuthor(input: {name: "First", email: "f@x.org"}) { name }
          b: updateAuthors(where: {name: {eq: "First"}}, set: {name: "Renamed"}) { name }
          __typename
        }"""
    )
    assert data == {"a": {"name": "First"}, "b": [{"name": "Renamed"}], "__typename": "Mutation"}


async def test_with_mutations_disabled_a_mutation_is_not_supported(
    request: pytest.FixtureRequest,
) -> None:
    url: str = request.getfixturevalue("fresh_sqlite")
    runner = await open_bookshop("sqlite", url, enabled=False)
    try:
        errors = await runner.errors(CREATE_AUTHOR, {"input": {"name": "A", "email": "a@x"}})
        assert errors[0]["extensions"]["code"] == "OPERATION_NOT_SUPPORTED"
        assert runner.sql("SELECT COUNT(*) FROM authors") == [(0,)]
    finally:
        await runner.engine.close()
        runner.db.close()


async def test_values_of_every_scalar_are_written_and_read_back_alike(shop: Runner) -> None:
    fields = await shop.data('{ __type(name: "GadgetCreateInput") { inputFields { name } } }')
    names = {f["name"] for f in fields["__type"]["inputFields"]}
    values: dict[str, object] = {
        "price": "12.50",
        "madeAt": "2024-05-06T07:08:09Z",
        "released": "2024-05-06",
        "active": False,
        "meta": {"a": [1, 2], "b": "x"},
        "data": "AAEC/w==",
        "big": "9007199254740993",
        "score": 1.5,
    }
    if shop.dialect != "sqlite":
        values["kind"] = "big"
    assert set(values) <= names
    selection = " ".join(values)
    data = await shop.data(
        f"mutation($i: GadgetCreateInput!) {{ createGadget(input: $i) {{ id {selection} }} }}",
        {"i": values},
    )
    row = data["createGadget"]
    for name, value in values.items():
        got = row[name]
        if name == "madeAt":
            assert str(got).replace("+00:00", "Z").startswith("2024-05-06T07:08:09"), got
        elif name == "price":
            assert str(got) in ("12.50", "12.5"), got
        else:
            assert got == value, (name, got)
    again = await shop.data(f"{{ gadget(id: {row['id']}) {{ {selection} }} }}")
    assert again["gadget"] == {k: row[k] for k in values}
    updated = await shop.data(
        "mutation($id: Int!) { updateGadget(id: $id, set: {active: true, meta: null}) "
        "{ active meta } }",
        {"id": row["id"]},
    )
    assert updated["updateGadget"] == {"active": True, "meta": None}
