"""The HTTP client side shared by the ``rest`` source and sink: credentials, request pacing
and the mapping of failed requests onto retryable or permanent errors."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import ssl
import time

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = [
    "MAX_REDIRECTS",
    "HttpAuth",
    "RateLimiter",
    "body_start",
    "drain",
    "http_error",
    "read_body",
    "request_error",
    "retry_after_seconds",
]


class HttpAuth(BaseModel):
    """Credentials sent with every request. Put secrets in the environment: ``${API_TOKEN}``."""

    model_config = ConfigDict(extra="forbid")

    bearer: str | None = Field(None, description="Token sent as `Authorization: Bearer <token>`.")
    basic: tuple[str, str] | None = Field(None, description="[user, password] for Basic auth.")
    header: str | None = Field(None, description="Header name for an API key, e.g. X-Api-Key.")
    value: str | None = Field(None, description="Value of `header`.")

    @model_validator(mode="after")
    def _one_kind(self) -> HttpAuth:
        kinds = [self.bearer is not None, self.basic is not None, self.header is not None]
        if sum(kinds) != 1:
            raise ValueError("set exactly one of `bearer`, `basic` or `header` (+ `value`)")
        if (self.header is None) != (self.value is None):
            raise ValueError("`header` and `value` go together")
        return self

    def headers(self) -> dict[str, str]:
        if self.bearer is not None:
            return {"Authorization": f"Bearer {self.bearer}"}
        if self.basic is not None:
            token = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        assert self.header is not None and self.value is not None
        return {self.header: self.value}


def http_error(
    exc: BaseException | None,
    response: httpx.Response | None,
    where: str,
    body: bytes = b"",
) -> QuiverError:
    """Map a transport failure or a non-2xx response onto Retryable / Permanent errors; the
    message quotes the start of ``body``, the response's (streamed: see :func:`body_start`)."""
    if response is None:
        assert exc is not None
        return request_error(exc, where)
    status = response.status_code
    snippet = body.decode(response.encoding or "utf-8", "replace")[:200].strip()
    message = f"HTTP {status} {response.reason_phrase}" + (f": {snippet}" if snippet else "")
    if status in (429, 503):
        after = response.headers.get("retry-after")
        return RetryableError.one(
            message + (f" (Retry-After: {after})" if after else ""),
            where,
            "the server is overloaded or rate limiting; set `rate_limit` to send fewer "
            "requests per second",
        )
    if status in _RETRIED_STATUS or (status >= 500 and status not in _PERMANENT_STATUS):
        fix = _RETRIED_STATUS.get(status, _OTHER_5XX)
        return RetryableError.one(message, where, fix + "; the request is retried with backoff")
    if 300 <= status < 400:
        location = response.headers.get("location")
        fix = (
            f"the server redirects to {location}: set `url` to that address"
            if location
            else "the server answered with a redirect: check the URL"
        )
        return PermanentError.one(message, where, fix)
    fix = _PERMANENT_STATUS.get(
        status, "check the request options (url, params, body) against the API"
    )
    return PermanentError.one(message, where, fix)


_RETRIED_STATUS = {
    408: "the server gave up waiting for the request (a slow or interrupted upload)",
    500: "the server failed while answering (an error in the API itself, often passing); if "
    "it persists, check the request (params, body) against the API or its status page",
    502: "a gateway or proxy in front of the API got no valid answer from it (the API is "
    "down or restarting)",
    504: "a gateway or proxy in front of the API timed out waiting for it; if it persists, "
    "ask for smaller pages (the page size or limit in `pagination`)",
}
_OTHER_5XX = "the server reported an error of its own; if it persists, its operators must fix it"
_PERMANENT_STATUS = {
    401: "check the credentials in `auth` (e.g. the ${ENV} variable holding the token)",
    403: "the credentials lack permission for this resource",
    404: "check the URL",
    405: "the endpoint does not accept this method: check `method` against the API",
    501: "the server does not implement this request: check `method` and the URL against the API",
    505: "the server does not speak this HTTP version: check the URL",
}


def request_error(exc: BaseException, where: str) -> QuiverError:
    """A request that got no answer, as Retryable (the network, a timeout, a dropped
    connection) or Permanent (a bad URL, a TLS certificate that fails verification, a broken
    answer the same request would get again), with what to do."""
    said = f"request failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.TooManyRedirects):
        last = f" (the last one pointed to {exc.request.url})" if _has_request(exc) else ""
        return PermanentError.one(
            f"the URL redirects in a loop or more than {MAX_REDIRECTS} times{last}",
            where,
            "open the URL in a browser or with curl -L to see where it leads, and set `url` "
            "to the final address",
        )
    if isinstance(exc, httpx.DecodingError):
        return PermanentError.one(
            f"the answer's body is not encoded as its Content-Encoding header says: {exc}",
            where,
            "the server's compression is broken; ask its operators to fix it, or set "
            "`headers: {Accept-Encoding: identity}` to ask for an uncompressed answer",
        )
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return PermanentError.one(
            said, where, "check the URL: it needs an http:// or https:// scheme and a host"
        )
    if isinstance(exc, httpx.LocalProtocolError):
        return PermanentError.one(
            said,
            where,
            "the request cannot be sent as HTTP: check `headers` and `auth` for values with "
            "line breaks or characters a header cannot hold",
        )
    if isinstance(exc, httpx.ProxyError):
        status = str(exc)[:3]
        if status.isdigit() and (status in ("408", "429") or status.startswith("5")):
            return RetryableError.one(
                said, where, "the proxy could not reach the server; the request is retried"
            )
        return PermanentError.one(
            said,
            where,
            "the proxy refused the connection: check the proxy settings (HTTPS_PROXY, "
            "HTTP_PROXY, ALL_PROXY in the environment) and their credentials",
        )
    tls = _tls_error(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return PermanentError.one(
            f"the server's TLS certificate failed verification: {tls.verify_message or tls}",
            where,
            "a certificate that fails verification fails every retry: fix the server's "
            "certificate, or trust its issuing CA with SSL_CERT_FILE=/path/to/ca.pem",
        )
    if tls is not None and not isinstance(tls, _TLS_TRANSIENT):
        return PermanentError.one(
            f"the TLS handshake failed: {tls}",
            where,
            "check the URL's scheme and port (https:// to a port that serves plain HTTP "
            "fails this way) and that the server accepts a current TLS version",
        )
    if isinstance(exc, httpx.TimeoutException):
        fix = "the server did not answer within `timeout` seconds; raise `timeout` for a slow API"
    elif isinstance(exc, httpx.RemoteProtocolError):
        fix = "the server closed the connection or broke the HTTP protocol while answering"
    elif isinstance(exc, httpx.ConnectError):
        fix = "check that the server is reachable (the host name and port in the URL)"
    else:
        fix = "the connection failed while the request was under way"
    return RetryableError.one(said, where, fix + "; the request is retried with backoff")


#: Redirects followed for one request (httpx's default too).
MAX_REDIRECTS = 20
#: Bytes of an error answer's body read for its message (which quotes its start).
BODY_START = 4096
#: Bytes of an answer whose body is not needed read to keep its connection (see :func:`drain`).
DRAINED = 1 << 20
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _has_request(exc: httpx.RequestError) -> bool:
    try:
        exc.request  # noqa: B018
    except RuntimeError:  # httpx raises when the error was made without one
        return False
    return True


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a connection error (httpx and httpcore re-raise it as theirs)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


async def read_body(response: httpx.Response, limit: int, where: str, setting: str) -> bytes:
    """The body of a streamed ``response`` (decompressed), refused with PermanentError as soon
    as it passes ``limit`` bytes, without reading the rest: a declared Content-Length past
    the limit before a byte is read, else while it arrives. ``setting`` names the option that
    sets the limit, for the fix."""
    declared = response.headers.get("content-length", "")
    if (
        declared.isdigit()
        and int(declared) > limit
        and response.headers.get("content-encoding", "identity") == "identity"
    ):
        raise _too_large(limit, where, setting, f" (its Content-Length is {declared})")
    chunks = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, where, setting, "")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, where: str, setting: str, declared: str) -> QuiverError:
    return PermanentError.one(
        f"the response body is larger than `{setting}` ({limit} bytes){declared}; it was not "
        "read further",
        where,
        f"if such answers are genuine, raise `{setting}` in the options; or ask for smaller "
        "pages (the page size or limit in `pagination`)",
    )


async def body_start(response: httpx.Response, size: int = BODY_START) -> bytes:
    """At most about ``size`` bytes of the start of a streamed response's body (decompressed),
    for an error message; the rest is not read."""
    chunks: list[bytes] = []
    taken = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        taken += len(chunk)
        if taken >= size:
            break
    return b"".join(chunks)[:size]


async def drain(response: httpx.Response, most: int = DRAINED) -> None:
    """Read and drop a streamed response's body, so its connection serves the next request;
    one longer than ``most`` bytes is left unread (closing the response drops the connection
    instead)."""
    taken = 0
    async for chunk in response.aiter_raw():
        taken += len(chunk)
        if taken > most:
            return


class RateLimiter:
    """Spaces requests at least ``1 / rate`` seconds apart, and honours ``Retry-After``.

    A 429 or 503 answer with ``Retry-After`` (seconds or an HTTP date, capped at
    ``MAX_RETRY_AFTER``) holds the next request back until then; the retry itself is still
    scheduled by :mod:`quiver.runtime.delivery`.
    """

    MAX_RETRY_AFTER = 300.0

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if self.next_at > now:
            await asyncio.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.interval

    def observe(self, response: httpx.Response) -> None:
        """Note a ``Retry-After`` header of a 429/503 response."""
        if response.status_code not in (429, 503):
            return
        delay = retry_after_seconds(response.headers.get("retry-after"))
        if delay is not None:
            until = time.monotonic() + min(delay, self.MAX_RETRY_AFTER)
            self.next_at = max(self.next_at, until)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
