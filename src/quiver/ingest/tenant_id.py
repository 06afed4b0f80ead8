"""What a tenant id may be: 1 to 128 letters, digits, ``_``, ``.`` or ``-``, starting with a
letter or a digit, so that it can name a directory of a partitioned sink as it is."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["TENANT_HINT", "TenantId", "check_tenant_id", "is_tenant_id"]

_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

#: What a tenant id is, for error messages.
TENANT_HINT = (
    "a tenant id is 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or a digit"
)


def is_tenant_id(value: str) -> bool:
    return _TENANT_ID.match(value) is not None


def check_tenant_id(value: str) -> str:
    """``value`` if it is a valid tenant id; ValueError saying what one is otherwise."""
    if not is_tenant_id(value):
        raise ValueError(f"{value!r} is not a tenant id: {TENANT_HINT}")
    return value


#: A tenant id in a config model: checked by :func:`check_tenant_id`.
TenantId = Annotated[str, AfterValidator(check_tenant_id)]
