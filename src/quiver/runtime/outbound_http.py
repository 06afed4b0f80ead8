"""Outbound HTTP: how every HTTP client of the product (the ``rest`` source and sink, the
webhook and Slack actions of observers, the ``otlp`` sink) sorts a failed request into a
retryable or a permanent error with an accurate hint, and reads answers only up to a bound.

A failed request is permanent when the same request would fail again: a bad URL or scheme, a
TLS certificate that fails verification, a failed TLS handshake, a redirect loop, a body that
does not match its Content-Encoding, a header value HTTP cannot carry, a proxy refusing, HTTP
4xx but 408 and 429, 501 and 505. Timeouts, refused or dropped connections, a server closing
the connection mid-answer, 408, 429 and the other 5xx are retryable. Each caller names its
own options (:class:`HttpSettings`) so the hint points at what the user can change; a caller
bound by a protocol's own rules (OTLP/HTTP retries 429, 502, 503 and 504 only) says which
statuses it retries.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator

from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = [
    "BODY_START",
    "DRAINED",
    "MAX_REDIRECTS",
    "MAX_RETRY_AFTER",
    "HttpAddress",
    "HttpSettings",
    "body_start",
    "checked_url",
    "drain",
    "http_error",
    "read_body",
    "request_error",
    "retry_after_seconds",
    "server_wait",
    "url_problem",
]

#: Redirects followed for one request (httpx's default too).
MAX_REDIRECTS = 20
#: Bytes of an error answer's body read for its message (which quotes its start).
BODY_START = 4096
#: Bytes of an answer whose body is not needed read to keep its connection (see :func:`drain`).
DRAINED = 1 << 20
#: Longest wait a server's ``Retry-After`` (or gRPC ``RetryInfo``) can impose, in seconds.
MAX_RETRY_AFTER = 300.0
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
#: Not failures: the TLS layer waiting for more bytes (seen in the context of a timeout).
_TLS_WAITING = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


@dataclass(frozen=True)
class HttpSettings:
    """The caller's own words for what a hint tells the user to change.

    ``peer`` is what answers (the API, the receiver, the collector); ``url``, ``timeout``
    and ``headers`` name options, ``header_values`` the options header values come from;
    ``credentials`` says where credentials are set; ``trust`` how to trust a private CA.
    ``method`` and ``pace`` name the options that choose the method and space the requests,
    when the caller has them; ``smaller`` says how to ask for smaller answers, when the
    caller can. ``retried`` (with ``why_not``, the
    reason the others are not) replaces the general rule of which statuses are retried.
    """

    peer: str = "the API"
    url: str = "url"
    timeout: str = "timeout"
    headers: str = "headers"
    header_values: str = "`headers` and `auth`"
    credentials: str = "`auth` (e.g. the ${ENV} variable holding the token)"
    trust: str = "trust its issuing CA with SSL_CERT_FILE=/path/to/ca.pem"
    method: str | None = "method"
    pace: str | None = "rate_limit"
    smaller: str | None = "ask for smaller pages (the page size or limit in `pagination`)"
    request: str = "check the request options (url, params, body) against the API"
    retried: frozenset[int] | None = None
    why_not: str = ""


#: The ``rest`` source's and sink's options.
REST = HttpSettings()


def http_error(
    exc: BaseException | None,
    response: httpx.Response | None,
    where: str,
    body: bytes = b"",
    settings: HttpSettings = REST,
) -> QuiverError:
    """Map a transport failure or a non-2xx response onto Retryable / Permanent errors; the
    message quotes the start of ``body``, the response's (streamed: see :func:`body_start`)."""
    if response is None:
        assert exc is not None
        return request_error(exc, where, settings)
    return status_error(
        response.status_code,
        response.reason_phrase,
        response.headers,
        body.decode(response.encoding or "utf-8", "replace"),
        where,
        settings,
    )


def status_error(
    status: int,
    reason: str,
    headers: httpx.Headers | dict[str, str],
    text: str,
    where: str,
    settings: HttpSettings = REST,
) -> QuiverError:
    """An answer of ``status`` (with its ``headers`` and the start of its body, ``text``) as a
    typed error; a retryable one carries the server's ``Retry-After`` (see
    :func:`server_wait`) as ``retry_after``."""
    snippet = text[:200].strip()
    message = f"HTTP {status} {reason}".rstrip() + (f": {snippet}" if snippet else "")
    after = _header(headers, "retry-after") if status in (429, 503) else None
    if after:
        message += f" (Retry-After: {after})"
    retried = (
        status in settings.retried
        if settings.retried is not None
        else status in _RETRIED_STATUS
        or status in (429, 503)
        or (status >= 500 and status not in _PERMANENT_STATUS)
    )
    if status in (429, 503):
        cause = "the server is overloaded or rate limiting"
        if settings.pace is not None:
            cause += f"; set `{settings.pace}` to send fewer requests per second"
    elif status in _RETRIED_STATUS:
        cause = _RETRIED_STATUS[status].format(peer=settings.peer)
        if status == 504 and settings.smaller is not None:
            cause += f"; if it persists, {settings.smaller}"
    elif 300 <= status < 400:
        location = _header(headers, "location")
        cause = (
            f"the server redirects to {location}: set `{settings.url}` to that address"
            if location
            else f"the server answered with a redirect: check `{settings.url}`"
        )
    elif status in _PERMANENT_STATUS:
        cause = _PERMANENT_STATUS[status].format(
            credentials=settings.credentials,
            url=settings.url,
            method=f"check `{settings.method}`" if settings.method else "check",
        )
    elif status >= 500:
        cause = _OTHER_5XX
    else:
        cause = settings.request
    if not retried:
        fix = cause + (f"; not retried: {settings.why_not}" if settings.why_not else "")
        return PermanentError.one(message, where, fix)
    wait = server_wait(status, headers)
    if status in (429, 503) and settings.pace is not None:
        fix = cause
    elif wait is not None:
        fix = cause + f"; the request is retried after the {wait:.0f}s the server asked for"
        if wait >= MAX_RETRY_AFTER:
            fix += f" (a longer Retry-After is cut to {MAX_RETRY_AFTER:.0f}s)"
    else:
        fix = cause + "; the request is retried with backoff"
    error = RetryableError.one(message, where, fix)
    error.retry_after = wait  # type: ignore[attr-defined]
    return error


def server_wait(status: int, headers: httpx.Headers | dict[str, str]) -> float | None:
    """The wait a 429 or 503 answer asks for with ``Retry-After`` (seconds or an HTTP date),
    at most :data:`MAX_RETRY_AFTER`; None without one (or for another status)."""
    if status not in (429, 503):
        return None
    delay = retry_after_seconds(_header(headers, "retry-after"))
    return None if delay is None else min(delay, MAX_RETRY_AFTER)


def _header(headers: httpx.Headers | dict[str, str], name: str) -> str | None:
    if isinstance(headers, httpx.Headers):
        value: str | None = headers.get(name)
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


_RETRIED_STATUS = {
    408: "the server gave up waiting for the request (a slow or interrupted upload)",
    500: "the server failed while answering (an error in {peer} itself, often passing); if "
    "it persists, check the request against {peer}, or {peer}'s status page",
    502: "a gateway or proxy in front of {peer} got no valid answer from it ({peer} is down "
    "or restarting)",
    504: "a gateway or proxy in front of {peer} timed out waiting for it",
}
_OTHER_5XX = "the server reported an error of its own; if it persists, its operators must fix it"
_PERMANENT_STATUS = {
    401: "check the credentials in {credentials}",
    403: "the credentials lack permission for this resource",
    404: "check `{url}`",
    405: "the endpoint does not accept this method: {method} and `{url}`",
    501: "the server does not implement this request: {method} and `{url}`",
    505: "the server does not speak this HTTP version: check `{url}`",
}


def request_error(exc: BaseException, where: str, settings: HttpSettings = REST) -> QuiverError:
    """A request that got no answer, as Retryable (the network, a timeout, a dropped
    connection) or Permanent (a bad URL, a TLS certificate that fails verification, a broken
    answer the same request would get again), with what to do."""
    said = f"request failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.TooManyRedirects):
        last = f" (the last one pointed to {exc.request.url})" if _has_request(exc) else ""
        return PermanentError.one(
            f"the URL redirects in a loop or more than {MAX_REDIRECTS} times{last}",
            where,
            "open the URL in a browser or with curl -L to see where it leads, and set "
            f"`{settings.url}` to the final address",
        )
    if isinstance(exc, httpx.DecodingError):
        return PermanentError.one(
            f"the answer's body is not encoded as its Content-Encoding header says: {exc}",
            where,
            "the server's compression is broken; ask its operators to fix it, or set "
            f"`{settings.headers}: {{Accept-Encoding: identity}}` to ask for an uncompressed "
            "answer",
        )
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return PermanentError.one(
            said,
            where,
            f"check `{settings.url}`: it needs an http:// or https:// scheme and a host",
        )
    if isinstance(exc, httpx.LocalProtocolError):
        return PermanentError.one(
            said,
            where,
            f"the request cannot be sent as HTTP: check {settings.header_values} for values with "
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
            f"certificate, or {settings.trust}",
        )
    if tls is not None and not isinstance(tls, _TLS_TRANSIENT):
        return PermanentError.one(
            f"the TLS handshake failed: {tls}",
            where,
            f"check the scheme and port of `{settings.url}` (https:// to a port that serves "
            "plain HTTP fails this way) and that the server accepts a current TLS version",
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        fix = (
            f"the server did not answer within `{settings.timeout}` seconds; raise "
            f"`{settings.timeout}` for a slow server"
        )
    elif isinstance(exc, httpx.RemoteProtocolError):
        fix = "the server closed the connection or broke the HTTP protocol while answering"
    elif isinstance(exc, httpx.ConnectError):
        fix = f"check that the server is reachable (the host name and port of `{settings.url}`)"
    else:
        fix = "the connection failed while the request was under way"
    return RetryableError.one(said, where, fix + "; the request is retried with backoff")


def url_problem(url: str, schemes: Collection[str] = ("http", "https")) -> str | None:
    """What is wrong with ``url`` as the address of requests (None when nothing is): for a
    config validator, so a bad URL is refused when the config is read, naming its option."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        return f"{url!r} is not a valid URL: {exc}"
    if parts.scheme not in schemes:
        wanted = " or ".join(f"{s}://" for s in schemes)
        return f"{url!r} does not start with {wanted}"
    if not parts.hostname:
        return f"{url!r} has no host"
    if any(c.isspace() for c in url):
        return f"{url!r} holds white space"
    return None


def checked_url(url: str) -> str:
    """``url`` when it is an http(s) address (see :func:`url_problem`), else ValueError: a
    pydantic ``AfterValidator`` of the options that hold one."""
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


#: An option holding an http(s) address, checked when the config is read.
HttpAddress = Annotated[str, AfterValidator(checked_url)]


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
        if isinstance(current, ssl.SSLError) and not isinstance(current, _TLS_WAITING):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


async def read_body(
    response: httpx.Response,
    limit: int,
    where: str,
    setting: str,
    fix: str = "ask for smaller pages (the page size or limit in `pagination`)",
) -> bytes:
    """The body of a streamed ``response`` (decompressed), refused with PermanentError as soon
    as it passes ``limit`` bytes, without reading the rest: a declared Content-Length past
    the limit before a byte is read, else while it arrives. ``setting`` names the option that
    sets the limit, for the fix; ``fix`` says what else to do."""
    declared = response.headers.get("content-length", "")
    if (
        declared.isdigit()
        and int(declared) > limit
        and response.headers.get("content-encoding", "identity") == "identity"
    ):
        raise _too_large(limit, where, setting, f" (its Content-Length is {declared})", fix)
    chunks = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, where, setting, "", fix)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, where: str, setting: str, declared: str, fix: str) -> QuiverError:
    return PermanentError.one(
        f"the response body is larger than `{setting}` ({limit} bytes){declared}; it was not "
        "read further",
        where,
        f"if such answers are genuine, raise `{setting}` in the options; or {fix}",
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
