"""An observer written in Python: run with `quiver observers run --app app.py`."""

from __future__ import annotations

import logging
from typing import Any

import quiver

log = logging.getLogger("quiver.observers.example")


@quiver.observer(entity="Order", on=["insert"], when="customer != ''")
async def order_placed(event: dict[str, Any]) -> None:
    order = event["after"]
    log.info("order %s placed by %s (%s)", order["id"], order["customer"], event["idempotency_key"])
