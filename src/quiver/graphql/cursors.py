"""Connection cursors: the order-key values of a row, opaque and signed.

A cursor is the URL-safe Base64 (no padding) of ``payload || mac`` where ``payload`` is the JSON
``[tag, [value, ...]]`` (the tag names the connection and its ordering, the values are the row's
order keys as the API serves them, the primary key last) and ``mac`` the first 16 bytes of its
HMAC-SHA256 under the server's cursor secret. A cursor the server did not issue (forged, edited,
truncated, or signed with another secret) is refused; its values are never trusted otherwise.

The database writes each cursor's values as a JSON object (``{"k0": ..., "k1": ...}``) where the
response holds a cursor; :func:`sign_cursors` replaces those objects by the signed strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["CursorCodec", "CursorError", "CursorPlacement", "sign_cursors"]

_MAC_BYTES = 16
#: One key per process when the settings give none: cursors then last as long as the process.
_PROCESS_SECRET = secrets.token_bytes(32)


class CursorError(Exception):
    """A cursor this server did not issue for this connection and ordering."""


class CursorCodec:
    """Encodes and checks cursors under one secret."""

    def __init__(self, secret: str | bytes | None) -> None:
        if secret is None or secret == "":
            self._key = _PROCESS_SECRET
        else:
            self._key = secret.encode() if isinstance(secret, str) else secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, tag: str, values: list[Any]) -> str:
        payload = orjson.dumps([tag, values])
        token = base64.urlsafe_b64encode(payload + self._mac(payload))
        return token.rstrip(b"=").decode("ascii")

    def decode(self, tag: str, cursor: Any, keys: int) -> list[Any]:
        """The order-key values of ``cursor``, or :class:`CursorError` saying why not."""
        if not isinstance(cursor, str) or not cursor.isascii() or not cursor:
            raise CursorError("it is not a cursor this server issued")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise CursorError("it is not a cursor this server issued") from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise CursorError(
                "it is not a cursor this server issued (or it was issued before the cursor"
                " secret changed)"
            )
        try:
            issued_tag, values = orjson.loads(payload)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            raise CursorError("it is not a cursor this server issued") from None
        if issued_tag != tag or not isinstance(values, list) or len(values) != keys:
            raise CursorError("it was issued by another connection or ordering")
        return values


@dataclass(frozen=True)
class CursorPlacement:
    """Where a connection's response holds cursors, by response keys (aliases)."""

    tag: str
    #: (edges key, cursor keys within each edge)
    edges: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: (pageInfo key, startCursor/endCursor keys within it)
    page_info: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _signed(codec: CursorCodec, tag: str, raw: Any) -> Any:
    if not isinstance(raw, dict):
        return raw  # null: no row there
    return codec.encode(tag, [raw[f"k{i}"] for i in range(len(raw))])


def sign_cursors(body: bytes, placement: CursorPlacement, codec: CursorCodec) -> bytes:
    """The connection JSON ``body`` with each cursor's key values replaced by its signed form."""
    conn = orjson.loads(body)
    if not isinstance(conn, dict):
        return body
    tag = placement.tag
    for key, cursor_keys in placement.edges:
        for edge in conn.get(key) or ():
            for ck in cursor_keys:
                edge[ck] = _signed(codec, tag, edge.get(ck))
    for key, cursor_keys in placement.page_info:
        page = conn.get(key)
        if isinstance(page, dict):
            for ck in cursor_keys:
                page[ck] = _signed(codec, tag, page.get(ck))
    return orjson.dumps(conn)
