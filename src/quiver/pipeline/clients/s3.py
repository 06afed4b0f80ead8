"""The S3 client side shared by the ``s3`` source and sink: where the storage is and how to
sign in, the boto3 client, and the mapping of storage failures onto retryable or permanent
errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = ["S3Connection", "s3_client", "s3_error"]


class S3Connection(BaseModel):
    """Where the storage is and how to sign in."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(description="Bucket name.")
    endpoint_url: str | None = Field(
        None, description="Endpoint of S3-compatible storage, e.g. http://127.0.0.1:9000."
    )
    region: str | None = Field(None, description="Region, e.g. eu-west-1.")
    access_key_id: str | None = Field(None, description="Access key; default: the AWS chain.")
    secret_access_key: str | None = Field(None, description="Secret key (use `${ENV}`).")
    session_token: str | None = Field(None, description="Session token of temporary keys.")
    path_style: bool = Field(
        False, description="Address buckets as endpoint/bucket (MinIO and most S3-compatibles)."
    )


def s3_client(cfg: S3Connection) -> Any:
    """A boto3 S3 client for ``cfg`` that leaves retrying to the pipeline."""
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path" if cfg.path_style else "auto"},
        retries={"max_attempts": 1},  # retries are the pipeline's (runtime.delivery)
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.client(
        "s3",
        endpoint_url=cfg.endpoint_url,
        region_name=cfg.region,
        aws_access_key_id=cfg.access_key_id,
        aws_secret_access_key=cfg.secret_access_key,
        aws_session_token=cfg.session_token,
        config=config,
    )


_RETRYABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
}


def s3_error(exc: BaseException, where: str, doing: str) -> QuiverError:
    """Throttling, 5xx and connection failures are retryable; the rest is permanent."""
    if isinstance(exc, QuiverError):
        return exc
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
        NoCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"S3 {code or status} while {doing}: {error.get('Message', exc)}"
        if code in _RETRYABLE_CODES or status >= 500:
            return RetryableError.one(message, where, "the storage is busy; retried with backoff")
        fix = {
            "NoSuchBucket": "check the bucket name (and endpoint_url / region)",
            "NoSuchKey": "check the object key",
            "AccessDenied": "check the credentials and the bucket policy",
            "InvalidAccessKeyId": "check access_key_id",
            "SignatureDoesNotMatch": "check secret_access_key",
        }.get(code, "check the bucket, key and credentials")
        return PermanentError.one(message, where, fix)
    if isinstance(exc, NoCredentialsError):
        return PermanentError.one(
            f"no S3 credentials found while {doing}",
            where,
            "set access_key_id/secret_access_key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(exc, BotoConnectionError | HTTPClientError | OSError):
        return RetryableError.one(
            f"S3 unreachable while {doing}: {exc}",
            where,
            "check endpoint_url and the network; retried with backoff",
        )
    return PermanentError.one(f"S3 error while {doing}: {type(exc).__name__}: {exc}", where)
