"""The webhook and Slack actions against a receiver that answers badly (tests/hostile_server.py),
over plain http:// (the poster's own client) and https:// (httpx): each failure is retryable
or permanent as for the REST connector, says why and what to do, and no answer is read past
a bound. A permanent failure goes to the dead-letter table at once, saying why."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from quiver.observers.actions.slack import SlackConfig
from quiver.observers.actions.webhook import WebhookConfig
from quiver.observers.posting import Poster
from quiver.runtime.errors import PermanentError, QuiverError, RetryableError
from quiver.runtime.outbound_http import MAX_RETRY_AFTER
from tests.hostile_server import Hostile, hostile_server
from tests.ingest.certs import make_pki
from tests.observers.conftest import Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")

MIB = 1 << 20


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", params=["http", "https"])
def hostile(request: pytest.FixtureRequest, pki: Any) -> Iterator[Hostile]:
    """The receiver over plain HTTP, and over TLS with a certificate of a CA the poster trusts
    (SSL_CERT_FILE, read by httpx when it opens its client)."""
    if request.param == "http":
        with hostile_server() as server:
            yield server
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SSL_CERT_FILE", str(pki.ca))
        with hostile_server(pki.server_cert, pki.server_key) as server:
            server.url = server.url.replace("127.0.0.1", "localhost")
            yield server


async def post(url: str, timeout: float = 5.0) -> None:
    poster = Poster(timeout)
    try:
        await poster.post(url, b'{"a": 1}', {"Content-Type": "application/json"}, "webhook")
    finally:
        await poster.close()


async def failure(url: str, kind: type[QuiverError], timeout: float = 5.0) -> QuiverError:
    with pytest.raises(kind) as caught:
        await post(url, timeout)
    return caught.value


async def test_a_redirect_is_permanent_and_names_where_it_leads(hostile: Hostile) -> None:
    err = await failure(f"{hostile.url}/redirect", PermanentError)
    assert "HTTP 302" in str(err)
    assert "redirects to /redirect: set `url` to that address" in err.details[0].fix
    assert hostile.calls("/redirect") >= 1


@pytest.mark.parametrize(
    ("code", "kind", "fix"),
    [
        (500, RetryableError, "the server failed while answering"),
        (502, RetryableError, "a gateway or proxy in front of the receiver"),
        (501, PermanentError, "the server does not implement this request"),
        (505, PermanentError, "the server does not speak this HTTP version"),
        (404, PermanentError, "check `url`"),
        (401, PermanentError, "check the credentials"),
        (408, RetryableError, "the server gave up waiting for the request"),
    ],
)
async def test_statuses_are_sorted_as_for_the_rest_connector(
    hostile: Hostile, code: int, kind: type[QuiverError], fix: str
) -> None:
    err = await failure(f"{hostile.url}/status/{code}", kind)
    assert f"HTTP {code}" in str(err) and "told to fail" in str(err)
    assert err.details[0].fix.startswith(fix), err.details[0].fix


async def test_retry_after_far_in_the_future_is_honoured_up_to_the_cap(hostile: Hostile) -> None:
    err = await failure(f"{hostile.url}/status/503?retry-after=86400", RetryableError)
    assert err.retry_after == MAX_RETRY_AFTER  # type: ignore[attr-defined]
    assert "(Retry-After: 86400)" in str(err)
    assert f"cut to {MAX_RETRY_AFTER:.0f}s" in err.details[0].fix
    err = await failure(f"{hostile.url}/status/429?retry-after=3", RetryableError)
    assert err.retry_after == 3.0  # type: ignore[attr-defined]


async def test_a_body_not_matching_its_content_encoding_does_not_undo_the_status(
    hostile: Hostile,
) -> None:
    await post(f"{hostile.url}/gzip/200")  # delivered: the receiver said so
    err = await failure(f"{hostile.url}/gzip/500", RetryableError)
    assert "HTTP 500" in str(err)


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_200_mb_answer_is_not_read(hostile: Hostile, chunked: bool) -> None:
    query = "?chunked" if chunked else ""
    before = hostile.sent
    await post(f"{hostile.url}/big/200{query}")
    err = await failure(f"{hostile.url}/big/500{query}", RetryableError)
    assert "HTTP 500 Whatever: xxxx" in str(err)
    assert hostile.sent - before < 32 * MIB  # what the socket buffers took, not 400 MB


async def test_an_answer_that_never_ends_is_cut_off(hostile: Hostile) -> None:
    await post(f"{hostile.url}/endless/200", timeout=0.5)  # the status is what counts
    err = await failure(f"{hostile.url}/endless/503", RetryableError, timeout=0.5)
    assert "HTTP 503" in str(err)


async def test_a_204_without_content_length_is_delivered_at_once(hostile: Hostile) -> None:
    started = time.monotonic()
    poster = Poster(3)
    try:
        for _ in range(2):  # the second on the same connection
            await poster.post(f"{hostile.url}/nothing", b"{}", {}, "webhook")
    finally:
        await poster.close()
    assert time.monotonic() - started < 2


async def test_no_answer_is_a_timeout_naming_the_option(hostile: Hostile) -> None:
    err = await failure(f"{hostile.url}/silent", RetryableError, timeout=0.3)
    assert "raise `timeout`" in err.details[0].fix


async def test_bytes_that_are_not_http_are_a_broken_answer(hostile: Hostile) -> None:
    err = await failure(f"{hostile.url}/garbage", RetryableError)
    assert "broke the HTTP protocol" in err.details[0].fix, str(err)


async def test_a_refused_connection_is_retryable_naming_the_url() -> None:
    err = await failure("http://127.0.0.1:9/hook", RetryableError)
    assert "check that the server is reachable" in err.details[0].fix


async def test_a_header_http_cannot_carry_is_permanent(hostile: Hostile) -> None:
    poster = Poster(5)
    try:
        with pytest.raises(PermanentError) as caught:
            await poster.post(f"{hostile.url}/x", b"{}", {"X-A": "b\r\nX-Evil: 1"}, "webhook")
    finally:
        await poster.close()
    assert "check `headers`" in caught.value.details[0].fix


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrusted(pki: Any) -> Iterator[Hostile]:
    with hostile_server(pki.server_cert, pki.server_key) as server:
        yield server


async def test_a_certificate_that_fails_verification_is_permanent(
    untrusted: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    err = await failure(f"{untrusted.url}/x", PermanentError)
    assert "the server's TLS certificate failed verification" in str(err)
    assert "fails every retry" in err.details[0].fix


async def test_https_to_a_port_that_is_not_tls_is_permanent() -> None:
    with hostile_server() as plain:
        url = plain.url.replace("http://", "https://")
        err = await failure(f"{url}/x", PermanentError)
    assert "the TLS handshake failed" in str(err)
    assert "https:// to a port that serves plain HTTP" in err.details[0].fix


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://", "https:///hook", "http://exa mple.com/hook", "http://host:port/hook", "ftp://x"],
)
@pytest.mark.parametrize("config", [WebhookConfig, SlackConfig])
async def test_an_invalid_url_is_a_config_error_naming_the_setting(
    url: str, config: type[WebhookConfig | SlackConfig]
) -> None:
    kind = "webhook" if config is WebhookConfig else "slack"
    with pytest.raises(ValidationError) as caught:
        config.model_validate({"type": kind, "url": url})
    [error] = caught.value.errors()
    assert error["loc"] == ("url",)
    assert repr(url) in error["msg"], error["msg"]


# -- dead letters ------------------------------------------------------------------------------


def _observer(url: str) -> dict[str, Any]:
    action = {"type": "webhook", "url": url, "timeout": 2}
    return {"name": "paid", "entity": "Author", "on": ["update"], "actions": [action]}


async def _update(shop: Shop) -> None:
    await shop.mutate('mutation { createAuthor(input: {name: "Ann", email: "a@x"}) { id } }')
    await shop.mutate('mutation { updateAuthor(id: 1, set: {bio: "hi"}) { id } }')


@pytest.mark.parametrize(
    ("path", "attempts", "why"),
    [
        ("/status/501", 1, "the server does not implement this request"),
        ("/redirect", 1, "redirects to /redirect"),
        ("/status/500", 3, "the server failed while answering"),
    ],
)
async def test_a_permanent_failure_is_dead_lettered_at_once_saying_why(
    shop: Shop, path: str, attempts: int, why: str
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("delivery errors do not depend on the dialect")
    with hostile_server() as server:
        dispatcher = await shop.dispatcher([_observer(f"{server.url}{path}")])
        try:
            await _update(shop)
            await dispatcher.run_once()
            [dead] = await dispatcher.store.dead_letters()
        finally:
            await dispatcher.close()
        assert server.calls(path) == attempts
    assert dead.attempts == attempts
    assert why in dead.error, dead.error
