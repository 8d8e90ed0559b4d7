"""Bookkeeping of the job workflow: status transitions, log lines, and repair of the read model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar, cast

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, Table, and_, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
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
from workflows.steps import (
    CLAIM_ACTIVITY,
    CLAIMED,
    FINISH_ACTIVITY,
    FINISH_AND_HAND_OVER_ACTIVITY,
    NOT_RUNNABLE,
    RECONCILE_ACTIVITY,
    SLOT_FREED_SIGNAL,
    START_ACTIVITY,
    WAITING,
    Claim,
    ClaimInput,
    FinishInput,
    JobBookkeeping,
    JobOutcome,
)

log = logging.getLogger(__name__)

# How a workflow ended outside our code, and what that makes of its job.
_EXTERNAL_ENDINGS = {
    WorkflowExecutionStatus.TERMINATED: (lifecycle.FAILED, "WORKFLOW_TERMINATED", "the workflow was terminated"),
    WorkflowExecutionStatus.TIMED_OUT: (lifecycle.FAILED, "WORKFLOW_TIMED_OUT", "the workflow timed out"),
    WorkflowExecutionStatus.FAILED: (lifecycle.FAILED, "WORKFLOW_FAILED", "the workflow failed"),
    WorkflowExecutionStatus.CANCELED: (lifecycle.CANCELLED, "JOB_CANCELLED", "the workflow was cancelled"),
}


async def append_log(db: Database, job_id: str, message: str, level: str = "info") -> None:
    await append_logs(db, job_id, [message], level)


async def append_logs(db: Database, job_id: str, messages: list[str], level: str = "info") -> None:
    """Log lines in one transaction."""
    async with db.session() as session:
        session.add_all([JobLogLine(job_id=job_id, message=message, level=level) for message in messages])


async def set_progress(db: Database, job_id: str, fraction: float) -> None:
    async with db.session() as session:
        job = await session.get(Job, job_id)
        if job is not None and job.status == lifecycle.RUNNING:
            job.progress = max(0.0, min(1.0, fraction))


class JobRow(NamedTuple):
    """What the bookkeeping of a job's run reads of its row."""

    id: str
    user_id: str | None
    task_type: str
    status: str
    run_id: str | None
    attempt: int
    payload: dict[str, Any]
    error_code: str | None
    error_message: str | None


# The job path's statements, in SQLAlchemy Core on the tables and built once: every backtest runs them, and
# the ORM's unit of work and identity map cost its worker more than the statements themselves.
_JOBS = cast(Table, Job.__table__)
_LOGS = cast(Table, JobLogLine.__table__)
_LOCKED = select(*(_JOBS.c[name] for name in JobRow._fields)).where(_JOBS.c.id == bindparam("job_id")).with_for_update()
_SET = update(_JOBS).where(_JOBS.c.id == bindparam("job_id"))
_SUCCEED = _SET.where(_JOBS.c.status == lifecycle.RUNNING).returning(*(_JOBS.c[name] for name in JobRow._fields))
_LOG = insert(_LOGS)


def _peers_of(platform: bool) -> ColumnElement[bool]:
    """Jobs of the bound ``user_id`` and ``task_type``; the platform's own jobs (no user) are peers of each
    other. Two statements rather than one that also matches NULL: that one no index serves."""
    user = _JOBS.c.user_id.is_(None) if platform else _JOBS.c.user_id == bindparam("user_id")
    return and_(user, _JOBS.c.task_type == bindparam("task_type"))


# Keyed by whether the jobs are the platform's own.
_RUNNING = {
    platform: select(func.count()).where(_peers_of(platform), _JOBS.c.status == lifecycle.RUNNING)
    for platform in (False, True)
}
# The oldest jobs that found no free slot, each row carrying the count of their peers still running.
_WAITING = {
    platform: select(_JOBS.c.dispatch_id, _RUNNING[platform].correlate(None).scalar_subquery())
    .where(_peers_of(platform), _JOBS.c.status == lifecycle.QUEUED)
    .where(_JOBS.c.error_code == "CONCURRENCY_LIMIT_EXCEEDED", _JOBS.c.dispatch_id.is_not(None))
    .order_by(_JOBS.c.created_at, _JOBS.c.id)
    .limit(bindparam("limit"))
    for platform in (False, True)
}


async def locked_job(session: AsyncSession, job_id: str) -> JobRow | None:
    """The job's row, locked until the transaction ends."""
    row = (await (await session.connection()).execute(_LOCKED, {"job_id": job_id})).first()
    return None if row is None else JobRow(*row)


async def claim_slot(session: AsyncSession, job_id: str, workflow_id: str, run_id: str) -> tuple[JobRow | None, str]:
    """queued → running in one of the user's slots for the job's task type (CLAIMED), or the job stays queued
    saying why (WAITING), or it is not this run's to start (NOT_RUNNABLE). Jobs of one user and task type
    count their running peers one at a time, under a lock, or two could both see a free slot."""
    job = await locked_job(session, job_id)
    if job is None:
        return None, NOT_RUNNABLE
    if job.status == lifecycle.RUNNING and job.run_id == run_id:
        return job, CLAIMED  # a retried attempt of the run that claimed it
    if job.status != lifecycle.QUEUED:
        return job, NOT_RUNNABLE
    # The job's row is locked (FOR UPDATE; on SQLite the transaction holds the write lock from its start), so
    # what was read of it stands; the slot's lock is for counting its peers.
    await serialize(session, slot_key(job))
    connection = await session.connection()
    running = await _running(connection, job)
    if running >= lifecycle.REGISTRY[job.task_type].tier.concurrency_limit:
        waiting = job._replace(error_code="CONCURRENCY_LIMIT_EXCEEDED", error_message=f"waiting: {running} running")
        if waiting != job:
            await connection.execute(_SET, {"job_id": job_id, **_changes(waiting, job)})
        return waiting, WAITING
    now = utcnow()
    claimed = job._replace(status=lifecycle.RUNNING, run_id=run_id, error_code=None, error_message=None)
    values = dict(started_at=now, progress=0.0, executor_name="temporal", dispatch_id=workflow_id)
    await connection.execute(_SET, {"job_id": job_id, "updated_at": now, **values, **_changes(claimed, job)})
    await _log(connection, job_id, [(f"started (attempt {job.attempt}, run {run_id})", "info")])
    return claimed, CLAIMED


async def record_outcome(
    session: AsyncSession, job: JobRow | None, outcome: JobOutcome, result: dict[str, Any] | None, lines: list[str]
) -> list[str]:
    """The job's final status, result and log lines, in the caller's transaction (``job`` was read locked);
    the workflow ids of the waiting jobs that the slot it frees (with any other free one) should wake."""
    if job is None or not lifecycle.can_transition(job.status, outcome.status):
        return []
    await serialize(session, slot_key(job))  # counted with the claims, so that no waiting job is missed
    connection = await session.connection()
    await connection.execute(_SET, {"job_id": job.id, **_outcome_values(outcome, result)})
    return await _logged_and_woken(connection, job, outcome, lines)


async def record_success(
    session: AsyncSession, job_id: str, result: dict[str, Any], lines: list[str]
) -> tuple[JobRow | None, list[str]]:
    """running → succeeded, with the result and log lines, in the caller's transaction: the job as it ran
    (None when it no longer runs: cancelled meanwhile, or deleted; nothing is written then) and the jobs to
    wake, as ``record_outcome`` gives them. The update itself locks the row and checks that the job still
    runs, so the transaction reads nothing first; what it writes after the update (a backtest's result)
    is written only if the job succeeded."""
    connection = await session.connection()
    outcome = JobOutcome(lifecycle.SUCCEEDED)
    values = {"job_id": job_id, **_outcome_values(outcome, result)}
    row = (await connection.execute(_SUCCEED, values)).first()
    if row is None:
        return None, []
    ran = JobRow(*row)._replace(status=lifecycle.RUNNING)
    # The slot's lock after the job's own row: as in record_outcome, what matters is that the waiting jobs
    # are read under it (a claim counting its peers under the lock then sees this job ended, or is read here).
    await serialize(session, slot_key(ran))
    return ran, await _logged_and_woken(connection, ran, outcome, lines)


def _outcome_values(outcome: JobOutcome, result: dict[str, Any] | None) -> dict[str, Any]:
    values = _ending(outcome.status, outcome.error_code, outcome.error_message)
    if result is not None:  # else the column stays NULL (None would be stored as JSON null)
        values["result"] = result
    if outcome.status == lifecycle.SUCCEEDED:
        values["progress"] = 1.0
    return values


async def _logged_and_woken(
    connection: AsyncConnection, job: JobRow, outcome: JobOutcome, lines: list[str]
) -> list[str]:
    """The lines and the ending's line in the log; the oldest waiting jobs that the freed slot (with any other
    free one) should wake, when the job held one."""
    detail = f": {outcome.error_code} {outcome.error_message}" if outcome.error_code else ""
    ending = (f"{outcome.status}{detail}", _level(outcome.status))
    await _log(connection, job.id, [*((line, "info") for line in lines), ending])
    if job.status != lifecycle.RUNNING:
        return []
    limit = lifecycle.REGISTRY[job.task_type].tier.concurrency_limit
    params = {"user_id": job.user_id, "task_type": job.task_type, "limit": limit}
    rows = (await connection.execute(_WAITING[job.user_id is None], params)).all()
    free = limit - rows[0][1] if rows else 0
    return [workflow_id for workflow_id, _ in rows[: max(free, 0)]]


async def _running(connection: AsyncConnection, job: JobRow) -> int:
    params = {"user_id": job.user_id, "task_type": job.task_type}
    return int((await connection.execute(_RUNNING[job.user_id is None], params)).scalar_one())


def slot_key(job: JobRow) -> str:
    return f"job-slot:{job.user_id}:{job.task_type}"


def _changes(new: JobRow, old: JobRow) -> dict[str, Any]:
    return {name: value for name, value, was in zip(JobRow._fields, new, old, strict=True) if value != was}


async def _log(connection: AsyncConnection, job_id: str, lines: list[tuple[str, str]]) -> None:
    """Log lines (message, level) of the job, in one statement."""
    await connection.execute(_LOG, [{"job_id": job_id, "message": message, "level": level} for message, level in lines])


# A queued job younger than this may still be having its workflow started by the process that wrote it.
LOST_START_GRACE = timedelta(seconds=10)

# A claim waiting in its worker for a slot heartbeats at least this often.
WAIT_HERE_BEAT_SECONDS = 1.0


class JobActivities(JobBookkeeping):
    def __init__(self, db: Database, temporal: Client, settings: Settings) -> None:
        self._db = db
        self._temporal = temporal
        self._settings = settings
        # Workflow ids of jobs whose claim waits in this worker for a slot (see claimed_here).
        self._waiting_here: dict[str, asyncio.Event] = {}
        # Claims that wait here hold activity slots: at most a quarter of them, so that they never crowd
        # out the work that would free them.
        self._most_waiting_here = max(1, settings.worker_max_concurrent_activities // 4)

    async def claimed_here(self, workflow_id: str, attempt: Callable[[], Awaitable[Claim]]) -> Claim:
        """``attempt`` (a claim) until it claims a slot or finds the job not runnable. Between attempts it
        waits, heartbeating, for a job finishing in this worker to hand over its slot (``hand_over``), or a
        second, then tries again (a slot freed by another worker is so taken within a second). A slot freed
        in this worker costs no workflow task, signal or second activity. After ``job_wait_here_seconds``, or
        when too many claims already wait here, the job is reported waiting, and its workflow waits for the
        ``slot_freed`` signal of whichever worker frees a slot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.job_wait_here_seconds
        while True:
            # Registered before the attempt: a slot freed while its transaction commits is not missed.
            woken = self._waiting_here[workflow_id] = asyncio.Event()
            try:
                claim = await attempt()
                if claim.state != WAITING:
                    return claim
                if woken.is_set():
                    continue  # handed a slot while its transaction committed: try again at once
                left = deadline - loop.time()
                if left <= 0 or len(self._waiting_here) > self._most_waiting_here:
                    return claim
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(left, WAIT_HERE_BEAT_SECONDS))
                if not woken.is_set():  # a wait shorter than a beat costs the server no heartbeat
                    activity.heartbeat("waiting for a slot")
            finally:
                if self._waiting_here.get(workflow_id) is woken:
                    del self._waiting_here[workflow_id]

    @activity.defn(name=START_ACTIVITY)
    async def start_job(self, job_id: str, workflow_id: str, run_id: str) -> bool:
        """queued → running, unless the user's concurrency limit for the task type is reached (then retry).
        The step of ``JobWorkflow`` and ``BacktestWorkflow`` runs; newer runs claim with ``claimed_here``."""
        async with self._db.session() as session:
            job, state = await claim_slot(session, job_id, workflow_id, run_id)
        if state == WAITING and job is not None:
            # Benign: waiting for a slot is expected, so the retries are logged at debug level, not as failures.
            raise ApplicationError(
                job.error_message or "waiting for a slot",
                type="CONCURRENCY_LIMIT_EXCEEDED",
                category=ApplicationErrorCategory.BENIGN,
            )
        return state == CLAIMED

    @activity.defn(name=CLAIM_ACTIVITY)
    async def claim_slot(self, claim: ClaimInput) -> Claim:
        async def attempt() -> Claim:
            async with self._db.session() as session:
                _, state = await claim_slot(session, claim.job_id, claim.workflow_id, claim.run_id)
            return Claim(state)

        return await self.claimed_here(claim.workflow_id, attempt)

    @activity.defn(name=FINISH_AND_HAND_OVER_ACTIVITY)
    async def finish(self, finish: FinishInput) -> None:
        async with self._db.session() as session:
            job = await locked_job(session, finish.job_id)
            waiting = await record_outcome(session, job, finish.outcome, finish.result, finish.log_lines)
        await self.hand_over(waiting)

    async def hand_over(self, waiting: list[str]) -> None:
        """Wake the jobs that can take the freed slots: in this worker when their claim waits here, else by
        signal. A signal that fails is covered by the waiting job's own timer, so it never fails the job
        that finished."""
        for workflow_id in waiting:
            woken = self._waiting_here.pop(workflow_id, None)
            if woken is not None:
                woken.set()
                continue
            try:
                await self._temporal.get_workflow_handle(workflow_id).signal(SLOT_FREED_SIGNAL)
            except RPCError as error:
                log.info("could not wake job workflow %s: %s", workflow_id, error.message)

    @activity.defn(name=FINISH_ACTIVITY)
    async def finish_job(self, job_id: str, outcome: JobOutcome, result: dict[str, Any] | None) -> None:
        """The last step of ``JobWorkflow`` and ``BacktestWorkflow`` runs."""
        async with self._db.session() as session:
            job = await locked_job(session, job_id)
            waiting = await record_outcome(session, job, outcome, result, [])
        await self.hand_over(waiting)

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
        if job.dispatch_id is None:  # the reconciler reads only dispatched jobs
            return None
        try:
            description = await self._temporal.get_workflow_handle(job.dispatch_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND and utcnow() - job.updated_at > timedelta(minutes=1):
                return lifecycle.FAILED, "WORKFLOW_NOT_FOUND", "the job's workflow does not exist"
            return None
        return _EXTERNAL_ENDINGS.get(description.status) if description.status is not None else None

    async def _repair(self, job_id: str, status: str, code: str, message: str) -> bool:
        async with self._db.session() as session:
            job = await locked_job(session, job_id)
            # A repair may take a queued job straight to failed: its workflow is gone, so it never ran.
            if job is None or job.status not in (lifecycle.QUEUED, lifecycle.RUNNING):
                return False
            connection = await session.connection()
            await connection.execute(_SET, {"job_id": job_id, **_ending(status, code, message)})
            await _log(connection, job_id, [(f"{status}: {code} {message}", "warning")])
        log.warning("job %s repaired to %s (%s)", job_id, status, code)
        return True


def _ending(status: str, code: str | None, message: str | None) -> dict[str, Any]:
    """The columns a job's last transition sets."""
    now = utcnow()
    return dict(status=status, finished_at=now, updated_at=now, error_code=code, error_message=message)


def _level(status: str) -> str:
    return "info" if status == lifecycle.SUCCEEDED else "error" if status == lifecycle.FAILED else "warning"


P = TypeVar("P", bound=BaseModel)


async def job_payload(db: Database, job_id: str, model: type[P]) -> tuple[Job, P]:
    """The job's row and its payload as its kind's model reads it; a payload that no longer reads is a
    non-retryable INVALID_ARGUMENT."""
    async with db.reading() as session:
        job = await session.get_one(Job, job_id)
    try:
        return job, model.model_validate(job.payload)
    except ValidationError as error:
        raise activity_error("INVALID_ARGUMENT", str(error), retryable=False) from None


def activity_error(code: str, message: str, *, retryable: bool) -> ApplicationError:
    """A failure the job records with ``code``; non-retryable ones end the job at once."""
    return ApplicationError(message, type=code, non_retryable=not retryable)
