"""Events: one committed change-log row, as observers see it and as actions send it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from quiver.observers.condition import Images
from quiver.sql.changelog import image_document, json_text

__all__ = ["Action", "Event", "Job"]


@dataclass(frozen=True)
class Event:
    """One change-log row: ``id`` is the change's id, the event id of every delivery."""

    id: int
    entity: str
    operation: str
    key: Mapping[str, Any]
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    changed_fields: tuple[str, ...]
    actor: str | None
    tenant_id: str | None
    transaction_id: str
    changed_at: str

    def documented(self, json_fields: Collection[str]) -> Event:
        """The event with its images as documents show them: of ``json_fields`` (the entity's
        fields that may hold the JSON value null), one holding SQL NULL is absent, one holding
        JSON null is null (see :func:`quiver.sql.changelog.image_document`)."""
        return replace(
            self,
            before=image_document(self.before, json_fields),
            after=image_document(self.after, json_fields),
        )

    def images(self) -> Images:
        return Images(self.before, self.after, frozenset(self.changed_fields))

    def payload(self, observer: str) -> dict[str, Any]:
        """The JSON document actions send."""
        return {
            "event_id": self.id,
            "observer": observer,
            "entity": self.entity,
            "operation": self.operation,
            "key": dict(self.key),
            "before": None if self.before is None else dict(self.before),
            "after": None if self.after is None else dict(self.after),
            "changed_fields": list(self.changed_fields),
            "actor": self.actor,
            "tenant_id": self.tenant_id,
            "transaction_id": self.transaction_id,
            "changed_at": self.changed_at,
        }


@dataclass(frozen=True)
class Job:
    """One action to run for one event: what the ledger and the dead-letter table record."""

    event_id: int
    observer: str
    action: str
    payload: Mapping[str, Any]

    @property
    def idempotency_key(self) -> str:
        """Stable across redeliveries: the same event, observer and action give the same key."""
        return f"{self.event_id}:{self.observer}:{self.action}"

    def body(self) -> bytes:
        return json_text(self.payload, option=orjson.OPT_SORT_KEYS)

    def document(self) -> dict[str, Any]:
        """What templates read: the event document and the idempotency key."""
        return {**self.payload, "idempotency_key": self.idempotency_key}


class Action(Protocol):
    """What an action does with one job. It raises RetryableError when a later attempt may
    succeed and PermanentError when none will; it never retries or sleeps itself."""

    async def run(self, job: Job) -> None: ...

    async def close(self) -> None: ...
