"""The ``s3`` sink: one object in S3 or S3-compatible storage, written with a file format.

Rows are written by the file sink of ``format`` (``csv``, ``jsonl``, ``parquet``, ``arrow``,
... with its own options) into a private temporary file. On commit that file is uploaded
as a multipart upload (``part_size_mb`` parts, ``concurrency`` of them at once), which S3
makes visible only when the upload is completed: readers see the previous object or the new
one, never a part of it. If the run or the upload fails the upload is aborted, so neither
an object nor billed orphan parts remain, and the temporary file is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from typing import Any, cast

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.clients.s3 import S3Connection, s3_client, s3_error
from quiver.pipeline.component import (
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    RunContext,
    capabilities_of,
    sink,
)
from quiver.pipeline.formats import FormatOption, build_format
from quiver.runtime.errors import PermanentError, RetryableError

__all__ = ["S3Sink", "S3SinkConfig"]

_MB = 1024 * 1024


class S3SinkConfig(ComponentConfig, S3Connection):
    """Write one object to S3-compatible storage with a file format."""

    key: str = Field(description="Object key; its extension may choose compression (.gz, .zst).")
    format: FormatOption = Field(
        description="Format of the object: a sink name (`csv`, `jsonl`, `parquet`, ...) or "
        "`{csv: {delimiter: ';'}}` with that sink's options (all but `path`)."
    )
    part_size_mb: int = Field(
        16, ge=5, le=5 * 1024, description="Multipart part size in MiB (S3 needs at least 5)."
    )
    concurrency: int = Field(4, ge=1, le=32, description="Parts uploaded at once.")
    content_type: str | None = Field(None, description="Content-Type stored with the object.")


_CONTENT_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.file",
}


@sink("s3", config=S3SinkConfig)
class S3Sink(ColumnBound):
    """One object in S3-compatible storage, uploaded only when the run succeeds."""

    def __init__(self, cfg: S3SinkConfig) -> None:
        self.cfg = cfg
        self.where = f"sink s3 s3://{cfg.bucket}/{cfg.key}"
        self._folder: str | None = None
        self._local = ""
        self._inner: Any = None
        self.upload_id: str | None = None
        self._probe = build_format("sink", cfg.format, "probe", "s3")  # unknown formats fail early

    def columns_used(self) -> list[ColumnUse]:
        """The columns the format's options name (``format: {parquet: {partition_by: ...}}``)."""
        if ColumnBound not in capabilities_of(type(self._probe)) or isinstance(
            self.cfg.format, str
        ):
            return []
        name = next(iter(self.cfg.format))
        return [
            ColumnUse(u.column, ("format", name, *u.option), u.optional)
            for u in cast(ColumnBound, self._probe).columns_used()
        ]

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        self._folder = tempfile.mkdtemp(prefix="quiver-s3-")
        self._local = os.path.join(self._folder, os.path.basename(self.cfg.key) or "object")
        self._inner = build_format("sink", self.cfg.format, self._local, "s3")
        await self._inner.open(schema, ctx)

    async def write(self, batch: pa.RecordBatch) -> None:
        assert self._inner is not None, "write() before open()"
        await self._inner.write(batch)

    async def commit(self) -> None:
        """Finish the file, then upload it; a failed upload may be retried by calling again."""
        if self._inner is not None:
            inner, self._inner = self._inner, None
            try:
                await inner.commit()
            except BaseException:
                await self._discard()
                raise
        if self._folder is None:
            raise PermanentError.one(
                "nothing to upload: the run was aborted", self.where, "run the pipeline again"
            )
        try:
            await asyncio.to_thread(self._upload)
        except Exception as exc:
            error = s3_error(exc, self.where, "uploading")
            if not isinstance(error, RetryableError):
                await self._discard()
            raise error from exc  # a retryable failure keeps the file for the next attempt
        except BaseException:
            await self._discard()
            raise
        await self._discard()

    def _content_type(self) -> str:
        if self.cfg.content_type:
            return self.cfg.content_type
        name = self.cfg.format if isinstance(self.cfg.format, str) else next(iter(self.cfg.format))
        return _CONTENT_TYPES.get(name, "application/octet-stream")

    def _upload(self) -> None:
        client = s3_client(self.cfg)
        size = os.path.getsize(self._local)
        part = self.cfg.part_size_mb * _MB
        created = client.create_multipart_upload(
            Bucket=self.cfg.bucket, Key=self.cfg.key, ContentType=self._content_type()
        )
        self.upload_id = str(created["UploadId"])
        try:
            numbers = list(range(1, max(1, -(-size // part)) + 1))

            def send(number: int) -> dict[str, Any]:
                with open(self._local, "rb") as f:
                    f.seek((number - 1) * part)
                    body = f.read(part)
                answer = client.upload_part(
                    Bucket=self.cfg.bucket,
                    Key=self.cfg.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=body,
                )
                return {"PartNumber": number, "ETag": answer["ETag"]}

            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
                parts = list(pool.map(send, numbers))
            client.complete_multipart_upload(
                Bucket=self.cfg.bucket,
                Key=self.cfg.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(
                    Bucket=self.cfg.bucket, Key=self.cfg.key, UploadId=self.upload_id
                )
            raise

    async def abort(self) -> None:
        inner, self._inner = self._inner, None
        try:
            if inner is not None:
                await inner.abort()
        finally:
            await self._discard()

    async def _discard(self) -> None:
        folder, self._folder = self._folder, None
        if folder is not None:
            await asyncio.to_thread(shutil.rmtree, folder, True)
