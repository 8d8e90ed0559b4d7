"""Jobs: a long operation's row, its error and its execution log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from services.schemas.base import Schema


class JobError(Schema):
    code: str
    message: str | None

    @classmethod
    def of(cls, job: Any) -> JobError | None:
        """The job's failure, if it has one."""
        return cls(code=job.error_code, message=job.error_message) if job.error_code else None


class JobExecutor(Schema):
    name: str | None
    dispatch_id: str | None
    run_id: str | None


class JobLogOut(Schema):
    at: datetime
    level: str
    message: str


class JobOut(Schema):
    task_id: str
    task_type: str
    status: str
    # What the job was asked to do and what it produced: each job kind has its own document.
    payload: dict[str, Any]
    idempotency_key: str
    progress: float
    attempt: int
    result: dict[str, Any] | None
    error: JobError | None
    executor: JobExecutor
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime
    logs: list[JobLogOut] | None = None

    @classmethod
    def of(cls, job: Any, logs: list[Any] | None = None) -> JobOut:
        return cls(
            task_id=job.id,
            task_type=job.task_type,
            status=job.status,
            payload=job.payload,
            idempotency_key=job.idempotency_key,
            progress=job.progress,
            attempt=job.attempt,
            result=job.result,
            error=JobError.of(job),
            executor=JobExecutor(name=job.executor_name, dispatch_id=job.dispatch_id, run_id=job.run_id),
            started_at=job.started_at,
            finished_at=job.finished_at,
            created_at=job.created_at,
            updated_at=job.updated_at,
            logs=[JobLogOut.model_validate(line) for line in logs] if logs is not None else None,
        )


class JobSubmitIn(Schema):
    task_type: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str = Field(min_length=1, max_length=128)
