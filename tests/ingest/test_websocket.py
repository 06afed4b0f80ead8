"""The websocket receiver: a real server on a free port of 127.0.0.1, real clients."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from quiver.ingest.websocket import WebSocketReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext

from .conftest import build, eventually


def receiver(**options: Any) -> WebSocketReceiver:
    r: WebSocketReceiver = build(WebSocketReceiver, {"port": 0, "batch_seconds": 0.2, **options})
    return r


async def started(r: WebSocketReceiver, ctx: RunContext) -> tuple[Any, asyncio.Future[Any]]:
    """The receiver's batches, read in the background until it drains; listening already."""
    stream = r.batches(ctx)
    batches: list[pa.RecordBatch] = []

    async def read() -> list[pa.RecordBatch]:
        async for b in stream:
            batches.append(b)
        return batches

    reading = asyncio.ensure_future(read())
    await eventually(lambda: r._server is not None)
    return batches, reading


async def test_json_lines_are_acknowledged_to_the_client_after_commit(run_ctx: RunContext) -> None:
    from websockets.asyncio.client import connect

    r = receiver(client_field="client")
    batches, reading = await started(r, run_ctx)
    async with connect(f"ws://127.0.0.1:{r.port}/") as ws:
        await ws.send('{"n": 1}\n{"n": 2}\n')
        await ws.send(b'{"n": 3}')
        await eventually(lambda: sum(b.num_rows for b in batches) == 3)
        r.drain()
        await reading
        with pytest.raises(TimeoutError):  # nothing acknowledged before the commit
            await asyncio.wait_for(ws.recv(), 0.3)
        await r.commit()
        assert orjson.loads(await ws.recv()) == {"acked": 2}
    await r.close()
    table = pa.Table.from_batches(batches)
    assert table.column("n").to_pylist() == [1, 2, 3]
    assert table.column(LINE_COLUMN).to_pylist() == [1, 2, 3]
    assert all(c.startswith("127.0.0.1:") for c in table.column("client").to_pylist())


async def test_bad_lines_are_named_in_a_rejected_reply(run_ctx: RunContext) -> None:
    from websockets.asyncio.client import connect

    r = receiver(schema={"n": "int"})
    batches, reading = await started(r, run_ctx)
    async with connect(f"ws://127.0.0.1:{r.port}/") as ws:
        await ws.send('{"n": 1}')
        await ws.send('{"n": "many"}')
        await ws.send("{oops")
        await ws.send('{"n": 4}')
        await eventually(lambda: r.rejected == 2 and sum(b.num_rows for b in batches) == 2)
        r.drain()
        await reading
        errors = r.take_errors()
        await r.commit()
        assert orjson.loads(await ws.recv()) == {"rejected": [2, 3]}
        assert orjson.loads(await ws.recv()) == {"acked": 4}
    await r.close()
    reasons = sorted(e.reason for e in errors)  # named by client and message number
    assert "#2: record 2 field 'n': " in reasons[0] and "not a whole number" in reasons[0]
    assert "#3: unreadable jsonl body" in reasons[1]


async def test_api_keys_are_required_when_configured(run_ctx: RunContext) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    r = receiver(api_keys=["s3cret"], path="/ingest")
    batches, reading = await started(r, run_ctx)
    url = f"ws://127.0.0.1:{r.port}/ingest"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as elsewhere:
        async with connect(f"ws://127.0.0.1:{r.port}/other"):
            pass
    assert elsewhere.value.response.status_code == 404
    async with connect(url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        await ws.send('{"ok": true}')
        await eventually(lambda: sum(b.num_rows for b in batches) == 1)
    async with connect(url, additional_headers={"X-API-Key": "s3cret"}) as ws:
        await ws.send('{"ok": false}')
        await eventually(lambda: sum(b.num_rows for b in batches) == 2)
    r.drain()
    await reading
    await r.commit()
    await r.close()


async def test_a_port_in_use_is_a_clear_error(run_ctx: RunContext) -> None:
    from quiver.runtime.errors import QuiverError

    first = receiver()
    _, reading = await started(first, run_ctx)
    second = receiver(port=first.port)
    reason = "Address already in use \\(EADDRINUSE\\)"
    with pytest.raises(QuiverError, match=f"cannot listen on 127.0.0.1:{first.port}: {reason}"):
        await anext(second.batches(run_ctx))
    first.drain()
    await reading
    await first.close()
    await second.close()


async def test_wss_with_the_servers_certificate(certificates: Path, run_ctx: RunContext) -> None:
    import ssl

    from websockets.asyncio.client import connect

    r = receiver(
        tls={
            "cert_file": str(certificates / "server.pem"),
            "key_file": str(certificates / "server.key"),
        }
    )
    batches, reading = await started(r, run_ctx)
    trust = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust it
        async with connect(f"wss://127.0.0.1:{r.port}/", ssl=ssl.create_default_context()):
            pass
    async with connect(f"wss://127.0.0.1:{r.port}/", ssl=trust) as ws:
        await ws.send('{"secure": true}')
        await eventually(lambda: sum(b.num_rows for b in batches) == 1)
        r.drain()
        await reading
        await r.commit()
        assert orjson.loads(await ws.recv()) == {"acked": 1}
    await r.close()


async def test_the_receiver_says_where_it_listens_at_the_default_verbosity(
    run_ctx: RunContext,
) -> None:
    r = receiver(path="/ingest")
    _, reading = await started(r, run_ctx)
    logs = run_ctx.logs  # type: ignore[attr-defined]
    assert ("notice", f"WebSocket receiver listening on ws://127.0.0.1:{r.port}/ingest") in logs
    r.drain()
    await reading
    await r.close()
