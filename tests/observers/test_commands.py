"""``quiver observers run|check`` and ``quiver dlq ...`` as a user runs them: the real CLI in a
subprocess, against a receiver in the test. A dispatcher killed with SIGKILL between delivering
and writing its ledger row delivers again, with the same idempotency key."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.graphql.servers import QUIVER, free_port
from tests.observers.conftest import Receiver, Shop, mutate_over_http, quiver_serve

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def quiver(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        QUIVER, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _config(tmp_path: Path, shop: Shop, observers: list[dict[str, Any]]) -> str:
    path = tmp_path / "quiver.yaml"
    retry = {"max_attempts": 2, "initial_delay": 0.01, "max_delay": 0.02}
    doc = {
        "database": {"url": shop.url},
        "observers": observers,
        "dispatcher": {"retry": retry, "poll_interval": 0.05},
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _hook(receiver: Receiver, **kw: Any) -> dict[str, Any]:
    return {
        "name": "renamed",
        "entity": "Author",
        "on": ["update"],
        "when": "changed(name)",
        "actions": [{"type": "webhook", "name": "crm", "url": receiver.url, "secret": "k"}],
        **kw,
    }


async def test_check_reports_an_unknown_field_with_its_location(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    cfg = _config(tmp_path, shop, [_hook(receiver, when="changed(nme) && name != ''")])
    code, _, err = await quiver("observers", "check", "-c", cfg)
    assert code == 1
    assert "observers[0] (renamed).when: Author has no field 'nme' (column 9" in err
    # Placed in the file: the line and column of the condition's value.
    when_line = Path(cfg).read_text().splitlines().index("  when: changed(nme) && name != ''") + 1
    assert f"{cfg}:{when_line}:9 observers[0] (renamed).when" in err
    assert "Traceback" not in err
    code, _, err = await quiver("check", "-c", cfg)
    assert code == 1 and "Author has no field 'nme'" in err
    good = _config(tmp_path, shop, [_hook(receiver)])
    code, out, _ = await quiver("observers", "check", "-c", good)
    assert code == 0 and "renamed: Author on update when changed(name) -> crm" in out


async def test_a_killed_dispatcher_redelivers_with_the_same_idempotency_key(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    cfg = _config(tmp_path, shop, [_hook(receiver)])
    await shop.mutate('mutation { createAuthor(input: {name: "A", email: "a@x"}) { id } }')
    await shop.mutate('mutation { updateAuthor(id: 1, set: {name: "Z"}) { id } }')
    receiver.hold = True
    proc = await asyncio.create_subprocess_exec(
        QUIVER, "observers", "run", "-c", cfg, "--lease", "1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.wait_for(receiver.arrived.wait(), 60)
    proc.send_signal(signal.SIGKILL)  # delivered; the ledger row is never written
    assert await proc.wait() == -signal.SIGKILL
    await asyncio.sleep(1.2)  # its claim on the event expires
    receiver.hold = False
    receiver.release.set()
    code, _, err = await quiver("observers", "run", "--once", "-c", cfg)
    assert code == 0, err
    assert len(receiver.received) == 2
    first, again = receiver.received
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"]
    assert first.body == again.body
    assert orjson.loads(again.body)["after"]["name"] == "Z"
    code, _, _ = await quiver("observers", "run", "--once", "-c", cfg)
    assert code == 0 and len(receiver.received) == 2


async def test_dlq_list_show_retry_and_purge(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("the commands are shared; the dialects are covered by test_dispatch")
    cfg = _config(tmp_path, shop, [_hook(receiver)])
    await shop.mutate('mutation { createAuthor(input: {name: "A", email: "a@x"}) { id } }')
    receiver.statuses = [500, 502]
    await shop.mutate('mutation { updateAuthor(id: 1, set: {name: "Z"}) { id } }')
    code, _, err = await quiver("observers", "run", "--once", "-c", cfg)
    assert code == 0, err
    assert len(receiver.received) == 2
    code, out, err = await quiver("dlq", "list", "-c", cfg)
    assert code == 0 and "1 dead letter" in err
    [line] = out.splitlines()
    dead_id = line.split("\t")[0]
    assert "renamed.crm" in line and "2 attempts" in line and "502" in line
    code, out, _ = await quiver("dlq", "show", dead_id, "-c", cfg)
    shown = json.loads(out)
    assert shown["payload"]["after"]["name"] == "Z"
    assert shown["idempotency_key"] == receiver.received[0].headers["idempotency-key"]
    code, out, _ = await quiver("dlq", "retry", dead_id, "-c", cfg)
    assert code == 0 and f"{dead_id}: delivered" in out
    assert len(receiver.received) == 3
    code, out, err = await quiver("dlq", "list", "-c", cfg)
    assert out == "" and "0 dead letters" in err
    # A second failure, purged: it is never delivered again.
    receiver.statuses = [500, 500]
    await shop.mutate('mutation { updateAuthor(id: 1, set: {name: "Y"}) { id } }')
    await quiver("observers", "run", "--once", "-c", cfg)
    code, out, _ = await quiver("dlq", "purge", "--all", "-c", cfg)
    assert code == 0 and "purged 1 dead letter" in out
    await quiver("observers", "run", "--once", "-c", cfg)
    assert len(receiver.received) == 5
    code, _, err = await quiver("dlq", "show", "999", "-c", cfg)
    assert code == 1 and "no dead letter 999" in err
    # Listing needs no valid observer: it works while quiver.yaml's observers are being fixed.
    broken = _config(tmp_path, shop, [_hook(receiver, when="changed(nme)")])
    code, _, err = await quiver("dlq", "list", "-c", broken)
    assert code == 0 and "0 dead letters" in err


async def test_quiver_serve_dispatches_in_process_when_asked(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("the same dispatcher as quiver observers run, tested on every dialect")
    port = free_port()
    cfg = Path(_config(tmp_path, shop, [_hook(receiver)]))
    doc = yaml.safe_load(cfg.read_text())
    doc["dispatcher"]["in_process"] = True
    doc["server"] = {"port": port, "host": "127.0.0.1"}
    cfg.write_text(yaml.safe_dump(doc))
    async with quiver_serve(str(cfg), port) as served:
        await mutate_over_http(
            served,
            'mutation { createAuthor(input: {name: "A", email: "a@x"}) { id } }',
            'mutation { updateAuthor(id: 1, set: {name: "Z"}) { id } }',
        )
        await asyncio.wait_for(receiver.arrived.wait(), 30)
        [got] = receiver.received
        assert orjson.loads(got.body)["after"]["name"] == "Z"
    assert served.proc.returncode == 0, served.output
    assert "Observers: 1 dispatched in this process" in served.output
