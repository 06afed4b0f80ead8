"""Observer conditions: parsed to an AST, evaluated over the before/after images, checked
against the entity's fields before anything runs."""

from __future__ import annotations

import pytest

from quiver.config.settings import ObserverSettings
from quiver.observers.catalog import ObserverConfigError, build_observers
from quiver.observers.condition import ConditionError, Images, evaluate, parse_condition

ORDER = {"Order": ["id", "total", "status", "note", "big"]}


def _update(before: dict[str, object], after: dict[str, object]) -> Images:
    changed = frozenset(k for k in after if before.get(k) != after.get(k))
    return Images(before, after, changed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("total > 100 && changed(status) && status == 'paid'", True),
        ("total > 200 && changed(status)", False),
        ("total >= 150.5 and not changed(total)", True),
        ('changed(total) || status == "paid"', True),
        ("before.status == 'open' && after.status == 'paid'", True),
        ("!(status != 'paid')", True),
        ("status in ['open', 'void']", False),
        ("status in ['paid', 'void']", True),
        ("note == null", True),
        ("note != null", False),
        ("note > 3", False),
        ("big > 9007199254740993", True),
        ("total < 'abc'", False),
        ("", True),
    ],
)
def test_conditions_evaluate_over_the_images(text: str, expected: bool) -> None:
    images = _update(
        {"id": 1, "total": 150.5, "status": "open", "note": None, "big": "9007199254740995"},
        {"id": 1, "total": 150.5, "status": "paid", "note": None, "big": "9007199254740995"},
    )
    assert evaluate(parse_condition(text), images) is expected


def test_a_bare_field_reads_the_before_image_of_a_delete() -> None:
    images = Images({"status": "paid"}, None, frozenset({"status"}))
    assert evaluate(parse_condition("status == 'paid'"), images)
    assert not evaluate(parse_condition("after.status == 'paid'"), images)


@pytest.mark.parametrize(
    ("text", "column"),
    [("total >", 8), ("total > 1 status", 11), ("changed(1)", 9), ("total = 1", 7), ("(a", 3)],
)
def test_syntax_errors_name_their_column(text: str, column: int) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition(text, "observers[0].when")
    detail = caught.value.details[0]
    assert detail.where == "observers[0].when"
    assert f"column {column}" in detail.message


def test_the_condition_text_is_never_evaluated_as_python() -> None:
    with pytest.raises(ConditionError):
        parse_condition("__import__('os').system('true')")


def _observer(**kw: object) -> ObserverSettings:
    base: dict[str, object] = {
        "name": "paid",
        "entity": "Order",
        "actions": [{"type": "log"}],
    }
    return ObserverSettings.model_validate({**base, **kw})


def test_a_valid_observer_is_built() -> None:
    [observer] = build_observers(
        [_observer(when="total > 100 && changed(status)", on=["update"])], ORDER
    )
    assert observer.on == frozenset({"update"})
    assert [a.name for a in observer.actions] == ["log0"]


def test_an_unknown_field_is_rejected_with_its_location() -> None:
    with pytest.raises(ObserverConfigError) as caught:
        build_observers([_observer(when="total > 100 && Status == 'paid'")], ORDER)
    [detail] = caught.value.details
    assert detail.where == "observers[0] (paid).when"
    assert "Order has no field 'Status'" in detail.message and "column 16" in detail.message
    assert "did you mean 'status'?" in detail.fix


def test_every_problem_is_reported_together() -> None:
    bad = [
        _observer(entity="Ordr"),
        _observer(name="x", when="total >"),
        _observer(name="y", actions=[{"type": "webhok"}, {"type": "webhook", "url": "ftp://x"}]),
        _observer(name="z", actions=[{"type": "log", "colour": "red"}]),
    ]
    with pytest.raises(ObserverConfigError) as caught:
        build_observers(bad, ORDER)
    where = [d.where for d in caught.value.details]
    assert where == [
        "observers[0] (paid).entity",
        "observers[1] (x).when",
        "observers[2] (y).actions[0].type",
        "observers[2] (y).actions[1].url",
        "observers[3] (z).actions[0].colour",
    ]


@pytest.mark.parametrize(
    ("when", "sql_null", "json_null"),
    [
        ("meta == null", True, False),
        ("meta != null", False, True),
        ("meta", False, False),
        ("!meta", True, True),
        ("before.meta == after.meta", True, True),
        ("meta == 'null'", False, False),
    ],
)
def test_a_json_null_is_a_value_and_sql_null_a_missing_one(
    when: str, sql_null: bool, json_null: bool
) -> None:
    from quiver.observers.condition import typed_condition

    condition = typed_condition(parse_condition(when), {"meta": "json"})
    # event documents leave a JSON field holding SQL NULL out, and show a JSON null as null
    absent = Images({"id": 1}, {"id": 1}, frozenset())
    present = Images({"id": 1, "meta": None}, {"id": 1, "meta": None}, frozenset())
    assert evaluate(condition, absent) is sql_null
    assert evaluate(condition, present) is json_null
