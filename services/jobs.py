"""Jobs (reference §2.5): submit with idempotency, read with logs, cancel and retry through Temporal."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.errors import AccessDenied, AppError, Conflict, InvalidInput, ServiceUnavailable
from db.base import utcnow
from db.models import Job, JobLogLine, User
from domain import jobs as lifecycle
from domain import market as market_limits
from services.platform import Platform
from services.schemas.jobs import TaskTypeOut
from services.users import require_admin
from workflows import dispatch

log = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 5.0


def invalid_transition(job: Job, target: str) -> Conflict:
    return Conflict(f"a {job.status} job cannot become {target}", code="INVALID_TRANSITION")


def normalize_payload(
    user: User, task_type: str, payload: dict[str, Any], limits: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The payload as its kind's model reads it; a kind the caller may not start through /jobs is refused."""
    kind = lifecycle.task_type(task_type)
    if kind is None:
        raise InvalidInput(f"unknown task type {task_type!r}", code="INVALID_ARGUMENT")
    if kind.started_by == lifecycle.RECORD_ROUTE:
        raise InvalidInput(f"{task_type} jobs are created by {kind.created_by}", code="INVALID_ARGUMENT")
    if kind.started_by == lifecycle.ADMIN:
        require_admin(user)
    try:
        return kind.payload.model_validate(payload, context=limits).model_dump(mode="json", by_alias=True)
    except ValidationError as error:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
        raise AppError("invalid payload", code="VALIDATION_ERROR", status=422, details=fields) from None


def validation_limits(platform: Platform) -> dict[str, Any]:
    """The settings payload models bound their requests by (pydantic validation context)."""
    return {market_limits.MAX_BARS: platform.settings.market_max_bars_per_request}


async def submit(
    platform: Platform, user: User, task_type: str, payload: dict[str, Any], idempotency_key: str
) -> tuple[Job, bool]:
    """The job for this key: a new one (True), or the existing one when the payload is the same (False)."""
    payload = normalize_payload(user, task_type, payload, validation_limits(platform))
    async with platform.db.session() as session:
        existing = await session.scalar(
            select(Job).where(Job.user_id == user.id, Job.idempotency_key == idempotency_key)
        )
    if existing is not None:
        job = same_request(existing, task_type, payload)
        await recover_if_lost(platform, job)
        return job, False
    try:
        async with platform.db.session() as session:
            job = Job(user_id=user.id, task_type=task_type, payload=payload, idempotency_key=idempotency_key)
            session.add(job)
            await session.flush()
            job.dispatch_id = dispatch.workflow_id(job)
            session.add(JobLogLine(job_id=job.id, message=f"queued {task_type}"))
    except IntegrityError:  # a concurrent submit with the same key won the race
        return await submit(platform, user, task_type, payload, idempotency_key)
    await start(platform, job)
    return job, True


async def submit_for_record(
    platform: Platform,
    user: User,
    task_type: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
    message: str,
    rows: Callable[[Job], list[Any]] = lambda job: [],
) -> tuple[Job, bool]:
    """``submit`` for the kinds that only their record's route starts: the job for this key (a new one, True;
    the existing one for the same request, False), written in one transaction with its first log line and
    the record's ``rows``, then its workflow started."""
    key = idempotency_key or f"{task_type}:{uuid.uuid4()}"
    existing = await job_by_key(platform, user, key)
    if existing is not None:
        job = same_request(existing, task_type, payload)
        await recover_if_lost(platform, job)
        return job, False
    job = Job(id=str(uuid.uuid4()), user_id=user.id, task_type=task_type, payload=payload, idempotency_key=key)
    job.dispatch_id = dispatch.workflow_id(job)
    try:
        async with platform.db.session() as session:
            session.add(job)
            await session.flush()  # the job's row first: the others reference it
            session.add_all([JobLogLine(job_id=job.id, message=message), *rows(job)])
    except IntegrityError:  # a concurrent request with the same key won the race
        existing = await job_by_key(platform, user, key)
        if existing is None:
            raise
        job = same_request(existing, task_type, payload)
        return job, False
    await start(platform, job)
    return job, True


async def job_by_key(platform: Platform, user: User, key: str) -> Job | None:
    """The user's job of this idempotency key, if there is one."""
    async with platform.db.reading() as session:
        return await session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == key))


def same_request(job: Job, task_type: str, payload: dict[str, Any]) -> Job:
    """The job of a repeated idempotency key, when it was asked for the same work; else a 409."""
    if job.task_type != task_type or _canonical(job.payload) != _canonical(payload):
        raise Conflict("this idempotency key was used for another request", code="IDEMPOTENCY_CONFLICT")
    return job


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True)


async def start(platform: Platform, job: Job) -> None:
    """Start the job's workflow; a job Temporal does not take is failed at once, and the caller told."""
    try:
        await dispatch.start(
            platform.temporal,
            job,
            task_queue=platform.settings.task_queue,
            heartbeat_timeout_seconds=platform.settings.job_heartbeat_timeout_seconds,
            # A rerun supersedes a run of the same workflow id (a cancelled one) that is still winding down.
            supersede=job.attempt > 1,
        )
    except Exception:
        log.exception("could not start the workflow of job %s", job.id)
        async with platform.db.session() as session:
            row = await session.get_one(Job, job.id)
            row.status, row.finished_at = lifecycle.FAILED, utcnow()
            row.error_code, row.error_message = "EXECUTOR_DISPATCH_FAILED", "the job could not be handed to Temporal"
        raise ServiceUnavailable("the job executor is unavailable", code="TASK_ORCHESTRATION_UNAVAILABLE") from None


async def recover_if_lost(platform: Platform, job: Job) -> None:
    """A queued job found again (an idempotent repeat) whose workflow never started is started now: a
    process killed between writing the job and starting its workflow loses nothing it accepted."""
    if job.status != lifecycle.QUEUED or job.dispatch_id is None:
        return
    try:
        await dispatch.recover(
            platform.temporal,
            job,
            task_queue=platform.settings.task_queue,
            heartbeat_timeout_seconds=platform.settings.job_heartbeat_timeout_seconds,
        )
    except Exception:  # the reconciler tries again; the caller still gets the job it asked for
        log.warning("could not check the workflow of job %s", job.id, exc_info=True)


async def get(platform: Platform, user: User, job_id: str) -> Job:
    async with platform.db.reading() as session:
        job = await session.get(Job, job_id)
    if job is None or job.user_id != user.id:
        raise AccessDenied("job")
    return job


async def logs(platform: Platform, job_id: str) -> list[JobLogLine]:
    async with platform.db.reading() as session:
        rows = await session.scalars(
            select(JobLogLine).where(JobLogLine.job_id == job_id).order_by(JobLogLine.at, JobLogLine.id)
        )
        return list(rows)


async def list_jobs(
    platform: Platform, user: User, *, status: str | None, task_type: str | None, page: int, page_size: int
) -> tuple[list[Job], int]:
    conditions = [Job.user_id == user.id]
    if status:
        conditions.append(Job.status == status)
    if task_type:
        conditions.append(Job.task_type == task_type)
    async with platform.db.session() as session:
        total = await session.scalar(select(func.count()).select_from(Job).where(*conditions))
        rows = await session.scalars(
            select(Job)
            .where(*conditions)
            .order_by(Job.created_at.desc(), Job.id)
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        return list(rows), int(total or 0)


async def cancel(platform: Platform, user: User, job_id: str) -> Job:
    """Cancel through Temporal; the workflow records ``cancelled``. Waits briefly so the answer is current."""
    job = await get(platform, user, job_id)
    if not lifecycle.can_transition(job.status, lifecycle.CANCELLED):
        raise invalid_transition(job, lifecycle.CANCELLED)
    if job.status == lifecycle.FAILED:  # its workflow has ended: only the read model changes
        async with platform.db.session() as session:
            row = await session.get_one(Job, job_id, with_for_update=True)
            row.status, row.finished_at = lifecycle.CANCELLED, utcnow()
            session.add(JobLogLine(job_id=job_id, message="cancelled after failure", level="warning"))
        return await get(platform, user, job_id)
    if job.dispatch_id is None:  # a run its client reports (a recorded backtest): its record's route moves it
        raise Conflict("this job has no workflow; change it through its record's route", code="INVALID_TRANSITION")
    handle = platform.temporal.get_workflow_handle(job.dispatch_id)
    await handle.cancel()
    if await _cancel_if_queued(platform, job_id):
        return await get(platform, user, job_id)
    try:
        await asyncio.wait_for(handle.result(), CANCEL_WAIT_SECONDS)
    except Exception:  # cancelled (expected), or still winding down: the read model tells
        pass
    return await get(platform, user, job_id)


async def _cancel_if_queued(platform: Platform, job_id: str) -> bool:
    """A job that has not started is cancelled at once, without waiting for a worker: its workflow, when it
    runs, finds the job no longer queued (or the cancel request first) and does nothing more."""
    async with platform.db.session() as session:
        row = await session.get_one(Job, job_id, with_for_update=True)
        if row.status != lifecycle.QUEUED:
            return False
        row.status, row.finished_at = lifecycle.CANCELLED, utcnow()
        row.error_code, row.error_message = "JOB_CANCELLED", "cancelled on request"
        session.add(JobLogLine(job_id=job_id, message="cancelled before it started", level="warning"))
    return True


async def retry(platform: Platform, user: User, job_id: str) -> Job:
    """failed → queued, and a new run of the job's workflow."""
    job = await get(platform, user, job_id)
    if lifecycle.REGISTRY[job.task_type].started_by == lifecycle.RECORD_ROUTE:
        # Its record decides what a new run is (a backtest's is a new job of the same workflow id).
        raise Conflict(f"{job.task_type} jobs are retried through their own routes", code="INVALID_TRANSITION")
    if not lifecycle.can_transition(job.status, lifecycle.QUEUED):
        raise invalid_transition(job, lifecycle.QUEUED)
    async with platform.db.session() as session:
        row = await session.get_one(Job, job_id, with_for_update=True)
        if row.status != lifecycle.FAILED:
            raise invalid_transition(row, lifecycle.QUEUED)
        row.status, row.attempt, row.progress = lifecycle.QUEUED, row.attempt + 1, 0.0
        row.result = row.error_code = row.error_message = row.finished_at = row.started_at = None
        session.add(JobLogLine(job_id=job_id, message=f"retry requested (attempt {row.attempt})"))
    await start(platform, row)
    return await get(platform, user, job_id)


async def transition(platform: Platform, user: User, job_id: str, to_status: str) -> Job:
    """The reference's manual transition, where the workflow still owns every transition it can: cancelled
    is a cancel through Temporal, queued (from failed) a retry; running, succeeded and failed are reached
    only by running."""
    job = await get(platform, user, job_id)
    if to_status == lifecycle.CANCELLED:
        return await cancel(platform, user, job_id)
    if to_status == lifecycle.QUEUED:
        return await retry(platform, user, job_id)
    if not lifecycle.can_transition(job.status, to_status):
        raise invalid_transition(job, to_status)
    raise Conflict(f"a job becomes {to_status} by running; its workflow records it", code="INVALID_TRANSITION")


def task_types() -> list[TaskTypeOut]:
    return [
        TaskTypeOut(
            task_type=t.name,
            description=t.description,
            sla_tier=t.tier.name,
            priority=t.tier.priority,
            timeout_seconds=t.tier.timeout_seconds,
            max_retries=t.tier.max_retries,
            concurrency_limit=t.tier.concurrency_limit,
            started_by=t.started_by,
        )
        for t in lifecycle.REGISTRY.values()
    ]


async def counts_by_status(platform: Platform) -> dict[tuple[str, str], int]:
    """(task type, status) → number of jobs, over all users: for operators' metrics."""
    async with platform.db.session() as session:
        rows = await session.execute(
            select(Job.task_type, Job.status, func.count()).group_by(Job.task_type, Job.status)
        )
        return {(task_type, status): count for task_type, status, count in rows}
