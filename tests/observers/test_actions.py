"""Every action against a real local receiver: Slack's incoming webhook (an HTTP server in the
test), email (an aiosmtpd SMTP server in the test), templated webhook bodies."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from quiver.config.settings import ObserverSettings
from quiver.observers.actions.email import message_id
from quiver.observers.catalog import ObserverConfigError, build_observers
from tests.graphql.servers import free_port
from tests.observers.conftest import Receiver, Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)  # SMTP replies to give instead, in turn

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        del server, session
        if self.refuse:
            return self.refuse.pop(0)
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def _observer(actions: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"name": "paid", "entity": "Author", "on": ["update"], "actions": actions, **kw}


async def _update(shop: Shop) -> None:
    await shop.mutate('mutation { createAuthor(input: {name: "Ann", email: "a@x"}) { id } }')
    await shop.mutate('mutation { updateAuthor(id: 1, set: {bio: "hi \\"there\\""}) { id } }')


async def test_slack_email_and_a_templated_webhook_are_delivered(
    shop: Shop, receiver: Receiver, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    actions: list[dict[str, Any]] = [
        {"type": "slack", "url": receiver.url, "text": "{{ after.name }} now {{ after.bio }}"},
        {
            "type": "email", "host": "127.0.0.1", "port": port, "from": "q@example.com",
            "to": ["ops@example.com"], "subject": "{{ entity }} {{ key.id }} changed",
            "body": "bio: {{ before.bio }} -> {{ after.bio }}",
        },
        {
            "type": "webhook", "name": "crm", "url": receiver.url,
            "body": '{"who": {{ after.name | json }}, "bio": {{ after.bio | json }},'
            ' "key": "{{ idempotency_key }}"}',
        },
    ]  # fmt: skip
    dispatcher = await shop.dispatcher([_observer(actions)])
    try:
        await _update(shop)
        await dispatcher.run_once()
        slack, hook = receiver.received
        assert orjson.loads(slack.body) == {"text": 'Ann now hi "there"'}
        assert orjson.loads(hook.body)["bio"] == 'hi "there"'
        assert orjson.loads(hook.body)["key"] == hook.headers["idempotency-key"]
        assert hook.headers["idempotency-key"].endswith(":paid:crm")
        [mail] = box.messages
        assert mail["Subject"] == "Author 1 changed"
        assert mail["To"] == "ops@example.com"
        assert mail["Idempotency-Key"].endswith(":paid:email1")
        assert mail["Message-ID"] == message_id(mail["Idempotency-Key"])
        assert mail.get_content().strip() == 'bio:  -> hi "there"'
    finally:
        await dispatcher.close()


async def test_smtp_refusals_are_retried_or_dead_lettered(
    shop: Shop, smtp: tuple[Mailbox, int]
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("delivery errors do not depend on the dialect")
    box, port = smtp
    box.refuse = ["451 try later", "550 no such user"]
    mail = {"type": "email", "host": "127.0.0.1", "port": port, "from": "q@x", "to": ["a@x"]}
    dispatcher = await shop.dispatcher([_observer([mail])])
    try:
        await _update(shop)
        await dispatcher.run_once()
        [dead] = await dispatcher.store.dead_letters()
        assert dead.attempts == 2 and "550" in dead.error  # 451 retried, 550 final
        assert box.messages == []
        await dispatcher.redeliver(dead)
        assert len(box.messages) == 1
    finally:
        await dispatcher.close()


async def test_templates_are_checked_against_the_entity() -> None:
    cfg = ObserverSettings.model_validate(
        _observer(
            [
                {"type": "slack", "url": "http://x", "text": "{{ after.nmae }} {{ bogus }}"},
                {"type": "webhook", "url": "http://x", "body": "{{ after.name | upper }}"},
                {"type": "email", "host": "h", "to": ["a@x"]},
            ]
        )
    )
    with pytest.raises(ObserverConfigError) as caught:
        build_observers([cfg], {"Author": ["id", "name", "bio"]})
    found = [(d.where, d.message) for d in caught.value.details]
    assert found == [
        ("observers[0] (paid).actions[0].text", "the entity has no field 'nmae' "
         "(in '{{ after.nmae }}')"),
        ("observers[0] (paid).actions[0].text", "unknown name 'bogus' in '{{ bogus }}'"),
        ("observers[0] (paid).actions[1].body",
         "cannot read the placeholder '{{ after.name | upper }}'"),
        ("observers[0] (paid).actions[2].from", "Field required"),
    ]  # fmt: skip
