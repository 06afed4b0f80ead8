"""Column type names of pipeline files."""

from __future__ import annotations

import pyarrow as pa
import pytest

from quiver.pipeline.type_names import parse_type
from quiver.runtime.errors import ConfigError


def test_type_names() -> None:
    assert parse_type("decimal(12, 3)", "t") == pa.decimal128(12, 3)
    assert parse_type("timestamp(ms, Europe/Paris)", "t") == pa.timestamp("ms", "Europe/Paris")
    with pytest.raises(ConfigError, match="did you mean 'float'"):
        parse_type("flaot", "types.x")
