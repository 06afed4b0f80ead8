"""The Flight server's small protobuf writer against the protobuf library's own encoding."""

from __future__ import annotations

import pytest
from google.protobuf import wrappers_pb2

from quiver.flight.protobuf import ProtobufError, decode, encode


@pytest.mark.parametrize("value", [1, 127, 128, 300, 2**31, 2**63 - 1, -1, -300, -(2**63)])
def test_an_int64_is_written_as_protobuf_writes_it(value: int) -> None:
    assert encode([(1, value)]) == wrappers_pb2.Int64Value(value=value).SerializeToString()
    (read,) = decode(encode([(1, value)]))[1]
    assert isinstance(read, int)
    assert read == value % (1 << 64)


def test_a_uint64_is_written_as_protobuf_writes_it() -> None:
    big = 2**64 - 1
    assert encode([(1, big)]) == wrappers_pb2.UInt64Value(value=big).SerializeToString()


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_a_value_past_64_bits_is_refused(value: int) -> None:
    with pytest.raises(ProtobufError, match="range"):
        encode([(1, value)])
