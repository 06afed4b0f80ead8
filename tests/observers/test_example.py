"""examples/observers runs as its comments say: the paid order reaches a webhook receiver,
signed with the configured secret."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import sqlite3
from pathlib import Path

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.servers import QUIVER
from tests.observers.conftest import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLE = Path(__file__).parents[2] / "examples" / "observers"


async def test_the_observers_example_delivers_a_paid_order(
    receiver: Receiver, tmp_path: Path
) -> None:
    for name in ("quiver.yaml", "app.py", "schema.sql"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        conn.executescript((EXAMPLE / "schema.sql").read_text())
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = await GraphQLEngine.open(
        await reflect_database(url), QuiverSettings.model_validate({"database": {"url": url}})
    )
    try:
        for query in (
            'mutation { createOrder(input: {customer: "Ann", total: "150.00"}) { id } }',
            'mutation { updateOrder(id: 1, set: {status: "paid"}) { id } }',
        ):
            outcome = await engine.execute(engine.prepare(query), None)
            assert outcome.kind == "data", outcome.body
    finally:
        await engine.close()
    env = {**os.environ, "HOOK_URL": receiver.url, "HOOK_SECRET": "example"}
    proc = await asyncio.create_subprocess_exec(
        QUIVER, "observers", "run", "--once", "--app", "app.py", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    [got] = receiver.received
    event = orjson.loads(got.body)
    assert event["after"]["status"] == "paid" and event["observer"] == "big-order-paid"
    expected = hmac.new(b"example", got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-quiver-signature"] == f"sha256={expected}"
    assert "order 1 placed by Ann" in err.decode()
