"""Jobs: a long operation's row, its error and its execution log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from domain import schedules as rules
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
    schedule_id: str | None = None  # the schedule that started it, if one did
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
            schedule_id=job.schedule_id,
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


JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobTransitionIn(Schema):
    to_status: JobStatus


class TaskTypeOut(Schema):
    task_type: str
    description: str
    sla_tier: str
    priority: int
    timeout_seconds: int
    max_retries: int
    concurrency_limit: int
    started_by: str  # "user" (POST /jobs), "admin", or "record" (only its record's route)


class IntervalScheduleIn(Schema):
    task_type: str = Field(min_length=1, max_length=64)
    every_seconds: int = Field(ge=rules.MIN_EVERY_SECONDS, le=rules.MAX_EVERY_SECONDS)
    payload: dict[str, Any] = Field(default_factory=dict)


class CronScheduleIn(Schema):
    task_type: str = Field(min_length=1, max_length=64)
    cron_expr: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict)


class ScheduleOut(Schema):
    id: str
    schedule_id: str  # the Temporal Schedule's id
    namespace: str
    task_type: str
    schedule_type: str
    expression: str
    payload: dict[str, Any]
    status: str
    next_runs: list[datetime]
    jobs_started: int
    created_at: datetime
    stopped_at: datetime | None


class SystemTemplateOut(Schema):
    template_id: str
    schedule_id: str
    task_type: str
    schedule_type: str
    expression: str
    description: str
    task_type_available: bool
    exists: bool
    paused: bool
    next_runs: list[datetime]
    recreated: bool = False


class PollerOut(Schema):
    identity: str
    last_access_time: datetime | None
    rate_per_second: float


class ExecutorOut(Schema):
    name: str
    mode: str
    temporal_address: str
    namespace: str
    task_queue: str
    workflow_pollers: list[PollerOut]
    activity_pollers: list[PollerOut]


class SchedulerOut(Schema):
    running: bool
    user_schedules_total: int
    user_schedules_active: int
    system_schedules: list[SystemTemplateOut]


class ExecutionOut(Schema):
    dispatched: int
    by_status: dict[str, int]
    scheduled: int
    last_dispatched_at: datetime | None
    last_finished_at: datetime | None
    last_error_code: str | None


class RecoveryOut(Schema):
    reconciler_schedule_id: str
    reconcile_interval_seconds: int
    reconciler_running: bool
    last_reconciled_at: datetime | None
    next_reconcile_at: datetime | None


class RuntimeOut(Schema):
    executor: ExecutorOut
    scheduler: SchedulerOut
    execution: ExecutionOut
    recovery: RecoveryOut
