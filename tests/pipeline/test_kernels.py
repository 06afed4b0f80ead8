"""The compute functions of ``quiver.pipeline.kernels`` give what ``pyarrow.compute``'s do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as arrow_compute
import pytest

from quiver.pipeline import kernels

TEXT = pa.array(["a,b", None, "", 'say "hi"', "é\nx"], pa.string())
SLICED = TEXT.slice(1, 3)

CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("fill_null", lambda k: k.fill_null(TEXT, pa.scalar("N"))),
    ("fill_null", lambda k: k.fill_null(TEXT, "N")),
    ("fill_null", lambda k: k.fill_null(SLICED, pa.scalar("N", pa.large_string()))),
    ("fill_null", lambda k: k.fill_null(pa.array([True, None, False]), False)),
    ("if_else", lambda k: k.if_else(pa.array([True, False, None, True, False]), TEXT, "z")),
    ("replace_substring", lambda k: k.replace_substring(TEXT, '"', '""')),
    ("replace_substring", lambda k: k.replace_substring(SLICED, "\n", "\\n")),
    ("replace_substring", lambda k: k.replace_substring(TEXT, "a", "b", max_replacements=1)),
    (
        "binary_replace_slice",
        lambda k: k.binary_replace_slice(TEXT, start=0, stop=0, replacement='"'),
    ),
    (
        "binary_replace_slice",
        lambda k: k.binary_replace_slice(SLICED, start=1 << 62, stop=1 << 62, replacement="\n"),
    ),
    (
        "binary_join_element_wise",
        lambda k: k.binary_join_element_wise(TEXT, TEXT.fill_null("x"), pa.scalar(",")),
    ),
    ("binary_join_element_wise", lambda k: k.binary_join_element_wise(TEXT, "|")),
    ("cast", lambda k: k.cast(pa.array([1.5, None, 1e300, -0.0]), pa.string())),
    ("cast", lambda k: k.cast(pa.array([2**40, None]), pa.int32(), safe=False)),
    (
        "cast",
        lambda k: k.cast(
            pa.array([1_500_000, 7], pa.timestamp("us")), pa.timestamp("ms"), safe=False
        ),
    ),
    ("utf8_length", lambda k: k.utf8_length(TEXT)),
    ("utf8_length", lambda k: k.utf8_length(SLICED)),
    ("min_max", lambda k: k.min_max(pa.array([3, None, -7, 12]))),
    ("min_max", lambda k: k.min_max(pa.array([], pa.int64()))),
]


@pytest.mark.parametrize(
    ("name", "call"), CALLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CALLS)]
)
def test_each_kernel_gives_what_pyarrow_compute_gives(
    name: str, call: Callable[[Any], Any]
) -> None:
    assert name in kernels.__all__
    ours, theirs = call(kernels), call(arrow_compute)
    assert ours.type == theirs.type
    assert ours.equals(theirs)


def test_a_safe_cast_refuses_what_pyarrow_computes_refuses() -> None:
    values = pa.array([2**40])
    with pytest.raises(pa.ArrowInvalid) as theirs:
        arrow_compute.cast(values, pa.int32())
    with pytest.raises(pa.ArrowInvalid) as ours:
        kernels.cast(values, pa.int32())
    assert str(ours.value) == str(theirs.value)


def test_any_other_name_is_pyarrow_computes_own() -> None:
    assert kernels.match_substring_regex is arrow_compute.match_substring_regex
    with pytest.raises(AttributeError):
        kernels.no_such_function  # noqa: B018
