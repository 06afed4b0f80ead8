"""The ``s3`` source: objects from S3 or S3-compatible storage (MinIO, Ceph, R2, ...).

Objects are chosen by ``key``, or by ``prefix`` and an optional ``glob`` over the whole key
(``exports/2024-*/orders-*.csv.gz``; ``*`` also crosses ``/``), and read in key order. Each
object is downloaded to a temporary file (the next one downloads while the current one is
read) and parsed by the file source of its ``format`` (``csv``, ``tsv``, ``jsonl``,
``parquet``, ``arrow`` or a plugin), with that source's own options: the formats are the
ones of local files, compression included. The line column holds the line in the object; rows a
format rejects carry the object's key. Every object must have the columns of the first one.

Credentials come from the options or, when left out, from the usual AWS chain (environment
variables, shared config files, instance roles).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pyarrow as pa
from pydantic import Field, model_validator

from quiver.pipeline.clients.s3 import S3Connection, s3_client, s3_error
from quiver.pipeline.component import (
    LINE_COLUMN,
    ComponentConfig,
    RowError,
    RowRejecting,
    RunContext,
    source,
)
from quiver.pipeline.conform import conform
from quiver.pipeline.formats import FormatOption, build_format
from quiver.runtime.errors import PermanentError

__all__ = ["S3Source", "S3SourceConfig"]


def _format_field(kind: str) -> Any:
    return Field(
        description=f"Format of the objects: a {kind} name (`csv`, `jsonl`, `parquet`, ...) or "
        f"`{{csv: {{delimiter: ';'}}}}` with that {kind}'s options (all but `path`)."
    )


class S3SourceConfig(ComponentConfig, S3Connection):
    """Read objects from S3-compatible storage with a file format."""

    key: str | None = Field(None, description="One object key. Exclusive with prefix/glob.")
    prefix: str = Field("", description="List objects under this key prefix.")
    glob: str | None = Field(None, description="Keep keys matching this pattern (fnmatch).")
    format: FormatOption = _format_field("source")
    key_column: str | None = Field(
        None, description="Add a column of this name holding each row's object key."
    )

    @model_validator(mode="after")
    def _key_or_listing(self) -> S3SourceConfig:
        if self.key is not None and (self.prefix or self.glob):
            raise ValueError("set either `key` or `prefix`/`glob`, not both")
        return self


def _literal_prefix(pattern: str) -> str:
    m = re.search(r"[*?\[]", pattern)
    return pattern if m is None else pattern[: m.start()]


@source("s3", config=S3SourceConfig)
class S3Source(RowRejecting):
    """Objects from S3-compatible storage, read with any file format."""

    def __init__(self, cfg: S3SourceConfig) -> None:
        self.cfg = cfg
        self.where = f"source s3 s3://{cfg.bucket}/{cfg.key or cfg.glob or cfg.prefix}"
        self._client: Any = None
        self._inner: Any = None
        self._key = ""
        self._errors: list[RowError] = []
        self.keys_done: list[str] = []
        # Checked before any network call: an unknown format is a config error.
        build_format("source", cfg.format, "probe", "s3")

    def _client_once(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.cfg)
        return self._client

    def keys(self) -> list[str]:
        """The object keys this source reads, in order."""
        if self.cfg.key is not None:
            return [self.cfg.key]
        client = self._client_once()
        prefix = self.cfg.prefix
        if self.cfg.glob and not prefix:
            prefix = _literal_prefix(self.cfg.glob)
        keys: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.cfg.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith("/"):
                    continue  # folder marker
                if self.cfg.glob and not fnmatch.fnmatchcase(key, self.cfg.glob):
                    continue
                keys.append(key)
        return sorted(keys)

    def _download(self, index: int, key: str, folder: str) -> str:
        # Named by the key's place in the listing, so objects of the same base name in other
        # folders never share a file; the base name's extension chooses the compression.
        local = os.path.join(folder, f"{index:06d}-{os.path.basename(key)}")
        self._client_once().download_file(self.cfg.bucket, key, local)
        return local

    def take_errors(self) -> list[RowError]:
        """Rows the format could not read, with the object's key in the reason."""
        if self._inner is not None and hasattr(self._inner, "take_errors"):
            for e in self._inner.take_errors():
                self._errors.append(
                    RowError(
                        e.line,
                        f"s3://{self.cfg.bucket}/{self._key}: {e.reason}",
                        e.column,
                        e.value,
                        e.row,
                        e.step,
                    )
                )
        errors, self._errors = self._errors, []
        return errors

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        try:
            keys = await asyncio.to_thread(self.keys)
        except Exception as exc:
            raise s3_error(exc, self.where, "listing objects") from exc
        if not keys:
            raise PermanentError.one(
                "no objects match", self.where, "check bucket, prefix and glob (case matters)"
            )
        folder = tempfile.mkdtemp(prefix="quiver-s3-")
        schema: pa.Schema | None = None
        try:
            next_download = asyncio.ensure_future(
                asyncio.to_thread(self._download, 0, keys[0], folder)
            )
            for i, key in enumerate(keys):
                try:
                    local = await next_download
                except Exception as exc:
                    raise s3_error(exc, f"s3://{self.cfg.bucket}/{key}", "downloading") from exc
                if i + 1 < len(keys):
                    next_download = asyncio.ensure_future(
                        asyncio.to_thread(self._download, i + 1, keys[i + 1], folder)
                    )
                self.take_errors()  # keep what the previous object's reader left
                self._key = key
                self._inner = build_format("source", self.cfg.format, local, "s3")
                async for batch in self._inner.batches(ctx):
                    out = self._with_key(batch, key)
                    if schema is None:
                        schema = out.schema
                    elif not out.schema.equals(schema):
                        out = conform(
                            out,
                            schema,
                            where=f"s3://{self.cfg.bucket}/{key}",
                            origin="the first object",
                            fix_columns="read objects with different columns in separate steps",
                            fix_types="declare the column types in the format's options "
                            "(e.g. csv `types:`)",
                        )
                    yield out
                self.take_errors()
                self._inner = None
                with contextlib.suppress(OSError):
                    os.remove(local)
                self.keys_done.append(key)
        finally:
            if "next_download" in locals() and not next_download.done():
                next_download.cancel()
                with contextlib.suppress(BaseException):
                    await next_download
            shutil.rmtree(folder, ignore_errors=True)

    def _with_key(self, batch: pa.RecordBatch, key: str) -> pa.RecordBatch:
        if not self.cfg.key_column:
            return batch
        column = pa.array([key] * batch.num_rows, pa.string())
        if LINE_COLUMN in batch.schema.names:
            at = batch.schema.get_field_index(LINE_COLUMN)
            return batch.add_column(at, self.cfg.key_column, column)
        return batch.append_column(self.cfg.key_column, column)
