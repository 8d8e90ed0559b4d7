"""What the API and the CLI show of our records: one view per record, camelCase on the wire
(the API) and snake_case in Python (the CLI's JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.schemas.base import Schema
from services.schemas.jobs import JobError, JobExecutor, JobLogOut, JobOut

__all__ = ["Schema", "JobError", "JobExecutor", "JobLogOut", "JobOut"]


class UserOut(Schema):
    id: str
    email: str
    display_name: str | None
    is_active: bool
    email_verified: bool
    role: str
    level: int
    created_at: datetime | None = None


class AuditEventOut(Schema):
    id: str
    event: str
    outcome: str
    user_id: str | None
    email_digest: str | None
    actor_id: str | None
    client_address: str | None
    user_agent: str | None
    request_id: str | None
    created_at: datetime


class StrategyOut(Schema):
    id: str
    user_id: str
    name: str
    template: str
    parameters: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime


class BacktestOut(Schema):
    """A backtest task as the reference shows it; ``taskId`` is its id, ``jobId`` its current run's job."""

    id: str
    task_id: str
    user_id: str
    strategy_id: str
    job_id: str
    template: str
    parameters: dict[str, Any]
    config: dict[str, Any]
    idempotency_key: str | None
    status: str
    progress: float
    metrics: dict[str, Any]
    # "engine" when our engine runs it; "client" when its client runs it and reports its metrics.
    run_by: str
    display_name: str | None
    error: JobError | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, backtest: Any, job: Any, status: str) -> BacktestOut:
        return cls(
            id=backtest.id,
            task_id=backtest.id,
            user_id=backtest.user_id,
            strategy_id=backtest.strategy_id,
            job_id=job.id,
            template=backtest.template,
            parameters=backtest.parameters,
            config=backtest.config,
            idempotency_key=backtest.idempotency_key,
            status=status,
            progress=job.progress,
            metrics=backtest.metrics or {},
            run_by="client" if job.executor_name == "client" else "engine",
            display_name=backtest.display_name,
            error=JobError.of(job),
            created_at=backtest.created_at,
            updated_at=max(backtest.updated_at, job.updated_at),
            started_at=job.started_at,
            finished_at=job.finished_at,
        )
