"""The invoice job: run with `quiver jobs work --app jobs.py` (see quiver.yaml)."""

from __future__ import annotations

from typing import Any

from quiver.observers.jobs import job


@job("send_invoice")
async def send_invoice(payload: dict[str, Any]) -> None:
    # A job runs at least once: the key lets a mail or payment service drop a second run.
    print(f"invoice for order {payload['order']}: {payload['customer']}, {payload['total']}")
    print(f"  (idempotency key {payload['key']})", flush=True)
