"""Config field types of the file steps that are checked when the config is loaded: a text
encoding, and column types by name."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from quiver.pipeline.encodings import normalize_encoding
from quiver.pipeline.type_names import parse_type
from quiver.runtime.errors import ConfigError

__all__ = ["ColumnTypes", "Encoding", "as_value_error", "checked_encoding", "checked_types"]


def as_value_error(exc: ConfigError) -> ValueError:
    """A ConfigError as the ValueError a pydantic validator raises (the field path is added
    by the config loader, so only the message and the fix are kept)."""
    return ValueError(
        "; ".join(f"{d.message} ({d.fix})" if d.fix else d.message for d in exc.details)
    )


def checked_encoding(value: str) -> str:
    """``value`` if it names a text encoding, else the ValueError a config validator raises."""
    try:
        normalize_encoding(value, "encoding")
    except ConfigError as exc:
        raise as_value_error(exc) from None
    return value


#: A config field naming a text encoding, checked when the config is loaded.
Encoding = Annotated[str, AfterValidator(checked_encoding)]


def checked_types(value: dict[str, str], *, maps: bool = False) -> dict[str, str]:
    """``value`` (column name to type name) if every type name is known, else a ValueError;
    ``maps`` allows ``map<key type, value type>``."""
    for name, type_name in value.items():
        try:
            parse_type(type_name, f"types.{name}", maps=maps)
        except ConfigError as exc:
            raise ValueError(f"column {name!r}: {as_value_error(exc)}") from None
    return value


def checked_json_types(value: dict[str, str]) -> dict[str, str]:
    """:func:`checked_types` with map types allowed (the JSON Lines source reads them)."""
    return checked_types(value, maps=True)


#: A config field of column types by name, checked when the config is loaded.
ColumnTypes = Annotated[dict[str, str], AfterValidator(checked_types)]
#: The same, where map types may be declared too.
JsonColumnTypes = Annotated[dict[str, str], AfterValidator(checked_json_types)]
