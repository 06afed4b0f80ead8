"""examples/observers runs as its comments say: the paid order reaches a webhook receiver,
signed with the configured secret. examples/jobs-redis too: the paid order's invoice job
goes through Redis to the worker."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.servers import QUIVER
from tests.observers.conftest import Receiver, drop_keys

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLES = Path(__file__).parents[2] / "examples"
EXAMPLE = EXAMPLES / "observers"


async def _paid_order(example: Path, files: tuple[str, ...], tmp_path: Path) -> None:
    """The example's files in ``tmp_path``, its shop.db, and an order placed then paid."""
    for name in files:
        shutil.copy(example / name, tmp_path / name)
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        conn.executescript((example / "schema.sql").read_text())
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


async def test_the_observers_example_delivers_a_paid_order(
    receiver: Receiver, tmp_path: Path
) -> None:
    await _paid_order(EXAMPLE, ("quiver.yaml", "app.py", "schema.sql"), tmp_path)
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


async def _run(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        QUIVER, *args, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_the_redis_jobs_example_invoices_a_paid_order(tmp_path: Path) -> None:
    await _paid_order(EXAMPLES / "jobs-redis", ("quiver.yaml", "jobs.py", "schema.sql"), tmp_path)
    prefix = f"quiver_t:{uuid.uuid4().hex[:12]}:shop"
    env = {**os.environ, "JOBS_PREFIX": prefix}
    try:
        await _run(tmp_path, env, "observers", "run", "--once")
        listed = await _run(tmp_path, env, "jobs", "list")
        assert "\tsend_invoice\tqueued\t0 attempts\t" in listed, listed
        out = await _run(tmp_path, env, "jobs", "work", "--once", "--app", "jobs.py")
        assert "invoice for order 1: Ann, 150" in out, out
        assert ":order-paid:invoice)" in out and "1 done, 0 due again later" in out, out
        listed = await _run(tmp_path, env, "jobs", "list", "--status", "done")
        assert "\tsend_invoice\tdone\t1 attempts\t" in listed, listed
    finally:
        await drop_keys(prefix)
