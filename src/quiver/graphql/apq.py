"""Automatic persisted queries (the Apollo ``persistedQuery`` extension).

A client first sends only ``extensions.persistedQuery = {version: 1, sha256Hash}``; when the
server does not know the hash it answers ``PersistedQueryNotFound`` and the client retries with
the query text and the hash, which the server checks and remembers. The store is an in-memory
LRU per server process.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ApqError",
    "ApqStore",
    "resolve_persisted_query",
]

APQ_VERSION = 1
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class ApqError:
    """A persisted-query failure in the shape Apollo clients recognise."""

    message: str
    code: str
    status: int  # HTTP status for application/graphql-response+json

    def as_error(self) -> dict[str, Any]:
        return {"message": self.message, "extensions": {"code": self.code}}


NOT_FOUND = ApqError("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND", 400)
NOT_SUPPORTED = ApqError("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED", 400)
HASH_MISMATCH = ApqError("provided sha does not match query", "BAD_REQUEST", 400)
BAD_VERSION = ApqError("Unsupported persisted query version", "BAD_REQUEST", 400)
BAD_HASH = ApqError(
    "persistedQuery.sha256Hash must be the hex SHA-256 of the query", "BAD_REQUEST", 400
)


#: Most characters of query text a store keeps: a valid query may carry up to a request's
#: bytes of comments and spaces, and 10,000 of those would hold gigabytes.
MAX_STORED_CHARS = 64 * 2**20


class ApqStore:
    """A bounded map from SHA-256 hex digests to query text, least recently used first out:
    at most ``max_entries`` queries of ``max_chars`` characters in all."""

    def __init__(self, max_entries: int = 10_000, max_chars: int = MAX_STORED_CHARS) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._queries: OrderedDict[str, str] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._queries)

    def get(self, sha256: str) -> str | None:
        query = self._queries.get(sha256)
        if query is not None:
            self._queries.move_to_end(sha256)
        return query

    def items(self) -> list[tuple[str, str]]:
        """Every (hash, query) held, least recently used first."""
        return list(self._queries.items())

    def put(self, sha256: str, query: str) -> None:
        replaced = self._queries.get(sha256)
        if replaced is not None:
            self._chars -= len(replaced)
        self._queries[sha256] = query
        self._chars += len(query)
        self._queries.move_to_end(sha256)
        while self._queries and (
            len(self._queries) > self.max_entries or self._chars > self.max_chars
        ):
            _, dropped = self._queries.popitem(last=False)
            self._chars -= len(dropped)


def sha256_hex(query: str) -> str:
    return hashlib.sha256(query.encode("utf-8")).hexdigest()


def resolve_persisted_query(
    store: ApqStore | None, extension: Any, query: str | None
) -> tuple[str | None, str | None, ApqError | None]:
    """``(query, hash to remember, error)`` for a request carrying ``persistedQuery``.

    ``store`` is None when persisted queries are disabled. The hash to remember is set when
    the request brought a query whose hash matched: store it once the query proved valid.
    """
    if store is None:
        return None, None, NOT_SUPPORTED
    if not isinstance(extension, dict):
        return None, None, BAD_VERSION
    version = extension.get("version")
    # The JSON integer 1: true and 1.0 compare equal to it in Python, and are not it.
    if type(version) is not int or version != APQ_VERSION:
        return None, None, BAD_VERSION
    digest = extension.get("sha256Hash")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        return None, None, BAD_HASH
    digest = digest.lower()
    if query is None:
        found = store.get(digest)
        if found is None:
            return None, None, NOT_FOUND
        return found, None, None
    if sha256_hex(query) != digest:
        return None, None, HASH_MISMATCH
    return query, digest, None
