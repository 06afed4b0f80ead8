"""The job action: enqueue a named job with a JSON payload, run later by ``quiver jobs work``.

The job's idempotency key is the action's (event id, observer, action): an action delivered
twice enqueues one job. The payload is the event document, or the JSON a template renders::

    - type: job
      job: send_invoice
      payload: '{"order": {{ after.id | json }}, "total": {{ after.total | json }}}'

The queue is a table of the observed database (see :mod:`quiver.observers.jobqueue`); the
dispatcher attaches it when it opens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quiver.observers.event import Job
from quiver.observers.jobqueue import DEFAULT_JOBS_TABLE, JobQueue, NewJob
from quiver.observers.template import Template, parse_template
from quiver.runtime.errors import ErrorDetail, PermanentError, QuiverError, RetryableError
from quiver.sql.changelog import json_value

__all__ = ["JobAction", "JobConfig", "build_job"]


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["job"]
    name: str | None = Field(default=None, description="Name within the observer.")
    job: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$",
        max_length=200,
        description='The job function to run (`@job("name")` in the worker\'s --app file).',
    )
    payload: str | None = Field(
        default=None,
        description="Template of the job's JSON payload; default: the event document.",
    )
    table: str = Field(
        default=DEFAULT_JOBS_TABLE,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=60,
        description="The queue's table, in the observed database.",
    )


class JobAction:
    def __init__(self, cfg: JobConfig, payload: Template | None) -> None:
        self.cfg = cfg
        self.template = payload
        self.queue: JobQueue | None = None

    def attach(self, queue: JobQueue) -> None:
        """Enqueue into ``queue`` (the dispatcher's database)."""
        self.queue = queue

    def _payload(self, job: Job) -> Any:
        if self.template is None:
            return job.document()
        text = self.template.render(job.document())
        try:
            return json_value(text)  # a JSON field's numbers past a double stay exact
        except ValueError as exc:
            raise PermanentError(
                [
                    ErrorDetail(
                        f"the payload template rendered invalid JSON ({exc}): {text[:200]}",
                        f"job {self.cfg.job}.payload",
                        'write JSON values with | json, e.g. {"id": {{ after.id | json }}}',
                    )
                ],
                code="JOB_PAYLOAD",
            ) from None

    async def run(self, job: Job) -> None:
        if self.queue is None:
            raise PermanentError(
                [ErrorDetail("no job queue attached", f"job {self.cfg.job}", "")],
                code="JOB_QUEUE",
            )
        new = NewJob(
            name=self.cfg.job,
            idempotency_key=job.idempotency_key,
            payload=self._payload(job),
            event=job.payload,
            event_id=job.event_id,
            observer=job.observer,
            action=job.action,
        )
        try:
            await self.queue.enqueue(new)
        except RetryableError:
            raise
        except (QuiverError, OSError) as exc:  # the database: a later attempt may succeed
            raise RetryableError(
                [ErrorDetail(f"cannot enqueue: {exc}", f"job {self.cfg.job}", "")],
                code="JOB_ENQUEUE",
            ) from None

    async def close(self) -> None:
        return None


def build_job(
    cfg: JobConfig, fields: Iterable[str] | None, where: str, errors: list[ErrorDetail]
) -> JobAction:
    payload = (
        None
        if cfg.payload is None
        else parse_template(cfg.payload, f"{where}.payload", fields, errors)
    )
    return JobAction(cfg, payload)
