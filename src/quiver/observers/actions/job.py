"""The job action: enqueue a named job with a JSON payload, run later by ``quiver jobs work``.

The job's idempotency key is the action's (event id, observer, action): an action delivered
twice enqueues one job. The payload is the event document, or the JSON a template renders::

    - type: job
      job: send_invoice
      payload: '{"order": {{ after.id | json }}, "total": {{ after.total | json }}}'

The queue is a table of the observed database (see :mod:`quiver.observers.jobqueue`), or
Redis with ``queue: redis://host:6379/0`` (see :mod:`quiver.observers.redisqueue`); the
dispatcher attaches it when it opens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from quiver.observers.event import Job
from quiver.observers.jobqueue import DEFAULT_JOBS_TABLE, JobQueue, NewJob
from quiver.observers.redisqueue import default_key_prefix, redis_url_problem
from quiver.observers.template import Template, parse_template
from quiver.runtime.errors import ErrorDetail, PermanentError, RetryableError
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
        description="The queue's table in the observed database; in Redis, the queue's name"
        " (the last word of its default key prefix).",
    )
    queue: str | None = Field(
        default=None,
        description="A Redis URL (redis://host:6379/0, rediss:// for TLS) to keep the jobs in"
        " Redis instead of the observed database's table.",
    )
    key_prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Redis: the first part of every key of the queue; default"
        " `quiver:jobs:<table>`.",
    )

    def queue_prefix(self) -> str | None:
        """The Redis queue's key prefix; None for the database table."""
        if self.queue is None:
            return None
        return self.key_prefix or default_key_prefix(self.table)


class JobAction:
    def __init__(self, cfg: JobConfig, payload: Template | None) -> None:
        self.cfg = cfg
        self.template = payload
        self.queue: JobQueue | None = None
        self._owned = False

    def attach(self, queue: JobQueue, *, owned: bool = False) -> None:
        """Enqueue into ``queue``; closed with the action when ``owned`` (a Redis client,
        not the dispatcher's database)."""
        self.queue = queue
        self._owned = owned

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
        except Exception as exc:
            # Any queue's error (a MariaDB deadlock, a lost Redis connection) is retried with
            # backoff; what keeps failing is dead-lettered.
            raise RetryableError(
                [ErrorDetail(f"cannot enqueue: {exc}", f"job {self.cfg.job}", "")],
                code="JOB_ENQUEUE",
            ) from None

    async def close(self) -> None:
        if self._owned and self.queue is not None:
            await self.queue.close()


def build_job(
    cfg: JobConfig, fields: Iterable[str] | None, where: str, errors: list[ErrorDetail]
) -> JobAction:
    payload = (
        None
        if cfg.payload is None
        else parse_template(cfg.payload, f"{where}.payload", fields, errors)
    )
    if cfg.queue is not None:
        problem = redis_url_problem(cfg.queue)
        if problem is not None:
            errors.append(ErrorDetail(problem[0], f"{where}.queue", problem[1]))
    elif cfg.key_prefix is not None:
        errors.append(
            ErrorDetail(
                "key_prefix names the keys of a Redis queue, and this job has none",
                f"{where}.key_prefix",
                "set queue: redis://host:6379/0, or remove key_prefix",
            )
        )
    return JobAction(cfg, payload)
