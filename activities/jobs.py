"""Bookkeeping of the job workflow: status transitions, log lines, and repair of the read model."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode

from core.settings import Settings
from db.base import utcnow
from db.engine import Database, serialize
from db.models import Job, JobLogLine
from domain import jobs as lifecycle
from workflows import dispatch
from workflows.job import FINISH_ACTIVITY, RECONCILE_ACTIVITY, START_ACTIVITY, JobOutcome

log = logging.getLogger(__name__)

# How a workflow ended outside our code, and what that makes of its job.
_EXTERNAL_ENDINGS = {
    WorkflowExecutionStatus.TERMINATED: (lifecycle.FAILED, "WORKFLOW_TERMINATED", "the workflow was terminated"),
    WorkflowExecutionStatus.TIMED_OUT: (lifecycle.FAILED, "WORKFLOW_TIMED_OUT", "the workflow timed out"),
    WorkflowExecutionStatus.FAILED: (lifecycle.FAILED, "WORKFLOW_FAILED", "the workflow failed"),
    WorkflowExecutionStatus.CANCELED: (lifecycle.CANCELLED, "JOB_CANCELLED", "the workflow was cancelled"),
}


async def append_log(db: Database, job_id: str, message: str, level: str = "info") -> None:
    async with db.session() as session:
        session.add(JobLogLine(job_id=job_id, message=message, level=level))


async def set_progress(db: Database, job_id: str, fraction: float) -> None:
    async with db.session() as session:
        job = await session.get(Job, job_id)
        if job is not None and job.status == lifecycle.RUNNING:
            job.progress = max(0.0, min(1.0, fraction))


# A queued job younger than this may still be having its workflow started by the process that wrote it.
LOST_START_GRACE = timedelta(seconds=10)


class JobActivities:
    def __init__(self, db: Database, temporal: Client, settings: Settings) -> None:
        self._db = db
        self._temporal = temporal
        self._settings = settings

    @activity.defn(name=START_ACTIVITY)
    async def start_job(self, job_id: str, workflow_id: str, run_id: str) -> bool:
        """queued → running, unless the user's concurrency limit for the task type is reached (then retry)."""
        async with self._db.session() as session:
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None or job.status != lifecycle.QUEUED:
                return False
            # Jobs of one user and task type count their running peers one at a time, or two could both
            # see a free slot.
            await serialize(session, f"job-slot:{job.user_id}:{job.task_type}")
            await session.refresh(job)  # SQLite read it before the lock: read it again under it
            if job.status != lifecycle.QUEUED:
                return False
            limit = lifecycle.REGISTRY[job.task_type].tier.concurrency_limit
            running = await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.user_id == job.user_id, Job.task_type == job.task_type, Job.status == lifecycle.RUNNING)
            )
            if running >= limit:  # stays queued, saying why (committed before the refusal below)
                job.error_code, job.error_message = "CONCURRENCY_LIMIT_EXCEEDED", f"waiting: {running} running"
            else:
                job.status, job.started_at, job.progress = lifecycle.RUNNING, utcnow(), 0.0
                job.error_code = job.error_message = None
                job.executor_name, job.dispatch_id, job.run_id = "temporal", workflow_id, run_id
                session.add(JobLogLine(job_id=job_id, message=f"started (attempt {job.attempt}, run {run_id})"))
        if job.status == lifecycle.QUEUED:
            # Benign: waiting for a slot is expected, so the retries are logged at debug level, not as failures.
            raise ApplicationError(
                f"{running} {job.task_type} jobs running",
                type="CONCURRENCY_LIMIT_EXCEEDED",
                category=ApplicationErrorCategory.BENIGN,
            )
        return True

    @activity.defn(name=FINISH_ACTIVITY)
    async def finish_job(self, job_id: str, outcome: JobOutcome, result: dict[str, Any] | None) -> None:
        async with self._db.session() as session:
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None or not lifecycle.can_transition(job.status, outcome.status):
                return
            _close(job, outcome.status, outcome.error_code, outcome.error_message)
            job.result = result
            if outcome.status == lifecycle.SUCCEEDED:
                job.progress = 1.0
            detail = f": {outcome.error_code} {outcome.error_message}" if outcome.error_code else ""
            session.add(JobLogLine(job_id=job_id, message=f"{outcome.status}{detail}", level=_level(outcome.status)))

    @activity.defn(name=RECONCILE_ACTIVITY)
    async def reconcile_jobs(self) -> int:
        """Jobs still queued or running whose workflow has ended outside our code get the matching status."""
        async with self._db.session() as session:
            open_jobs = list(
                await session.scalars(
                    select(Job).where(
                        Job.status.in_([lifecycle.QUEUED, lifecycle.RUNNING]), Job.dispatch_id.is_not(None)
                    )
                )
            )
        repaired = 0
        for job in open_jobs:
            if await self._restarted(job):
                repaired += 1
                continue
            ending = await self._external_ending(job)
            if ending is not None and await self._repair(job.id, *ending):
                repaired += 1
        return repaired

    async def _restarted(self, job: Job) -> bool:
        """A queued job whose workflow never started (its writer died first) is started, not failed."""
        if job.status != lifecycle.QUEUED or utcnow() - job.created_at < LOST_START_GRACE:
            return False
        started = await dispatch.recover(
            self._temporal,
            job,
            task_queue=self._settings.task_queue,
            heartbeat_timeout_seconds=self._settings.job_heartbeat_timeout_seconds,
        )
        if started:
            await append_log(self._db, job.id, "its workflow had not started: started by the reconciler", "warning")
            log.warning("job %s had lost its workflow start; started it", job.id)
        return started

    async def _external_ending(self, job: Job) -> tuple[str, str, str] | None:
        try:
            description = await self._temporal.get_workflow_handle(job.dispatch_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND and utcnow() - job.updated_at > timedelta(minutes=1):
                return lifecycle.FAILED, "WORKFLOW_NOT_FOUND", "the job's workflow does not exist"
            return None
        return _EXTERNAL_ENDINGS.get(description.status)

    async def _repair(self, job_id: str, status: str, code: str, message: str) -> bool:
        async with self._db.session() as session:
            job = await session.get(Job, job_id, with_for_update=True)
            # A repair may take a queued job straight to failed: its workflow is gone, so it never ran.
            if job is None or job.status not in (lifecycle.QUEUED, lifecycle.RUNNING):
                return False
            _close(job, status, code, message)
            session.add(JobLogLine(job_id=job_id, message=f"{status}: {code} {message}", level="warning"))
        log.warning("job %s repaired to %s (%s)", job_id, status, code)
        return True


def _close(job: Job, status: str, code: str | None, message: str | None) -> None:
    job.status, job.finished_at = status, utcnow()
    job.error_code, job.error_message = code, message


def _level(status: str) -> str:
    return "info" if status == lifecycle.SUCCEEDED else "error" if status == lifecycle.FAILED else "warning"


def activity_error(code: str, message: str, *, retryable: bool) -> ApplicationError:
    """A failure the job records with ``code``; non-retryable ones end the job at once."""
    return ApplicationError(message, type=code, non_retryable=not retryable)
