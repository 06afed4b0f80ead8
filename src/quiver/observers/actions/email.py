"""The email action: send a message over SMTP (optionally STARTTLS and a login).

The message carries a ``Message-ID`` derived from the idempotency key and an ``Idempotency-Key``
header, the same on every redelivery. SMTP 4xx answers, timeouts and refused connections are
retried; 5xx answers (an unknown recipient, a refused login) fail at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from quiver.observers.event import Job
from quiver.observers.template import Template, parse_template
from quiver.runtime.errors import ErrorDetail, PermanentError, RetryableError

__all__ = ["EmailAction", "EmailConfig", "build_email", "message_id"]

DEFAULT_SUBJECT = "{{ entity }} {{ operation }} {{ key }}"
DEFAULT_BODY = (
    "{{ observer }}: {{ entity }} {{ operation }}\n\nbefore: {{ before }}\nafter: {{ after }}\n"
)


def message_id(idempotency_key: str) -> str:
    """The Message-ID of every send of one delivery (a digest: a key may hold any character)."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@quiver>"


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["email"]
    name: str | None = Field(default=None, description="Name within the observer.")
    host: str = Field(description="SMTP server.")
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(alias="from", description="From address.")
    to: list[str] = Field(min_length=1, description="Recipients.")
    subject: str = Field(default=DEFAULT_SUBJECT, description="Template of the subject.")
    body: str = Field(default=DEFAULT_BODY, description="Template of the text body.")
    starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS.")
    username: str | None = None
    password: str | None = None
    timeout: float = Field(default=10.0, gt=0)


class EmailAction:
    def __init__(self, cfg: EmailConfig, subject: Template, body: Template) -> None:
        self.cfg = cfg
        self.subject = subject
        self.body = body

    async def run(self, job: Job) -> None:
        doc = job.document()
        message = EmailMessage()
        message["From"] = self.cfg.sender
        message["To"] = ", ".join(self.cfg.to)
        message["Subject"] = " ".join(self.subject.render(doc).split())
        message["Message-ID"] = message_id(job.idempotency_key)
        message["Idempotency-Key"] = job.idempotency_key
        message.set_content(self.body.render(doc))
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        where = f"smtp {self.cfg.host}:{self.cfg.port}"
        try:
            with smtplib.SMTP(self.cfg.host, self.cfg.port, timeout=self.cfg.timeout) as smtp:
                if self.cfg.starttls:
                    smtp.starttls()
                if self.cfg.username:
                    smtp.login(self.cfg.username, self.cfg.password or "")
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            detail = ErrorDetail(f"the server answered {exc.smtp_code}: {text}", where, "")
            if 400 <= exc.smtp_code < 500:
                raise RetryableError([detail], code="SMTP_STATUS") from None
            raise PermanentError([detail], code="SMTP_STATUS") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(
                [ErrorDetail(f"recipients refused: {exc.recipients}", where, "check `to`")],
                code="SMTP_RECIPIENTS",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RetryableError(
                [ErrorDetail(f"cannot send: {exc}", where, "")], code="SMTP_UNREACHABLE"
            ) from None

    async def close(self) -> None:
        return None


def build_email(
    cfg: EmailConfig, fields: Iterable[str] | None, where: str, errors: list[ErrorDetail]
) -> EmailAction:
    names = None if fields is None else list(fields)
    subject = parse_template(cfg.subject, f"{where}.subject", names, errors)
    return EmailAction(cfg, subject, parse_template(cfg.body, f"{where}.body", names, errors))
