"""Backtests (reference §2.4): each one a ``backtest_run`` job whose workflow is ``backtest-<id>``.

A backtest's status is its current job's, named as the reference names it (queued is pending, succeeded is
completed): the workflow owns every transition, and the reconciler's repairs reach backtests too.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AccessDenied, AppError, Conflict, NotFound
from core.security import digest
from db.base import new_id, utcnow
from db.models import Backtest, Job, JobLogLine, Strategy, User
from domain import jobs as job_states
from domain import strategies as strategy_rules
from domain.backtest import BacktestConfig
from services import jobs
from services.platform import Platform
from services.schemas.backtests import (
    BacktestOut,
    BacktestResultOut,
    BacktestStatisticsOut,
    ClientResultOut,
    ComparisonOut,
    EngineResultOut,
)
from workflows import dispatch

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = "pending", "running", "completed", "failed", "cancelled"
STATUSES = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
STATUS_OF_JOB = {
    job_states.QUEUED: PENDING,
    job_states.RUNNING: RUNNING,
    job_states.SUCCEEDED: COMPLETED,
    job_states.FAILED: FAILED,
    job_states.CANCELLED: CANCELLED,
}
JOB_STATUS_OF = {status: job_status for job_status, status in STATUS_OF_JOB.items()}
ACTIVE = (PENDING, RUNNING)
DELETABLE = (COMPLETED, FAILED, CANCELLED)
TASK_TYPE = "backtest_run"
# The executor of a backtest that its client runs and reports: the reference's recorded tasks.
CLIENT = "client"


def invalid_state(message: str) -> Conflict:
    return Conflict(message, code="BACKTEST_INVALID_STATE")


def view(backtest: Backtest, job: Job) -> BacktestOut:
    return BacktestOut.of(backtest, job, STATUS_OF_JOB[job.status])


def _config(config: dict[str, Any], display_name: str | None) -> tuple[BacktestConfig, str | None]:
    try:
        parsed = BacktestConfig.model_validate(config)
    except ValidationError as error:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
        raise AppError("invalid backtest config", code="BACKTEST_INVALID_CONFIG", status=422, details=fields) from None
    return parsed, display_name or parsed.display_name


def _runnable(strategy: Strategy) -> dict[str, Any]:
    if strategy.status != strategy_rules.ACTIVE:
        raise Conflict(f"the strategy is {strategy.status}; activate it to backtest", code="BACKTEST_STRATEGY_INACTIVE")
    try:
        return strategy_rules.validate_parameters(strategy.template, strategy.parameters)
    except strategy_rules.ParameterError as error:
        raise AppError(
            "the strategy's parameters cannot run",
            code="BACKTEST_INVALID_PARAMETERS",
            status=422,
            details=error.problems,
        ) from None


async def create(
    platform: Platform,
    user: User,
    strategy_id: str,
    config: dict[str, Any],
    *,
    idempotency_key: str | None = None,
    display_name: str | None = None,
    context: str = "backtest",
    run_now: bool = False,
) -> tuple[Backtest, Job, bool]:
    """A new backtest and its job, in one transaction, then its workflow (True); or, for a repeated
    idempotency key with the same request, the existing one (False).

    Our engine runs it when the strategy is active and the config names a symbol. Otherwise, as the
    reference recorded such requests, it is recorded ``pending`` for its client to run and report through
    ``/transition``; ``run_now`` (``POST /backtests/tasks``) refuses that instead."""
    parsed, name = _config(config, display_name)
    request = request_digest(strategy_id, config, display_name)
    if idempotency_key is not None:
        existing = await _by_key(platform, user, idempotency_key)
        if existing is not None:
            return *await _repeated(platform, existing, request), False
    try:
        async with platform.db.session() as session:
            strategy = await locked_strategy(session, strategy_id)
            if strategy is None or strategy.user_id != user.id:
                raise AccessDenied(context)
            by_engine = run_now or (strategy.status == strategy_rules.ACTIVE and parsed.runnable)
            if by_engine and not parsed.runnable:
                raise AppError(
                    "the config names no symbol to run on",
                    code="BACKTEST_INVALID_CONFIG",
                    status=422,
                    details=[{"field": "symbol", "message": "a symbol (or symbols) is required to run"}],
                )
            if strategy.status == strategy_rules.ARCHIVED:
                raise Conflict("the strategy is archived", code="BACKTEST_STRATEGY_INACTIVE")
            backtest = Backtest(
                id=new_id(),
                user_id=user.id,
                strategy_id=strategy.id,
                template=strategy.template,
                parameters=_runnable(strategy) if by_engine else strategy.parameters,
                config=parsed.stored(),
                idempotency_key=idempotency_key,
                request_digest=request,
                display_name=name,
            )
            job = await new_job(session, backtest, attempt=1, by_client=not by_engine)
            session.add(backtest)
    except IntegrityError:
        if idempotency_key is None:
            raise
        # A concurrent request with the same key won the race: answer as for a repeat.
        existing = await _by_key(platform, user, idempotency_key)
        if existing is None:  # the row broke another constraint
            raise
        return *await _repeated(platform, existing, request), False
    if by_engine:
        await jobs.start(platform, job)
    return backtest, job, True


def request_digest(strategy_id: str, config: dict[str, Any], display_name: str | None) -> str:
    """What a repeated idempotency key must match: the request as sent, not as resolved (a default end date
    moves with the calendar)."""
    return digest(json.dumps({"strategyId": strategy_id, "config": config, "name": display_name}, sort_keys=True))


async def locked_strategy(session, strategy_id: str) -> Strategy | None:
    """The strategy, read under its lock: creating, retrying and deleting its backtests, and deleting it,
    run one at a time, so that no backtest starts on a strategy being deleted or deactivated. The row's lock
    (FOR UPDATE; on SQLite the transaction's write lock) is the only one needed: a strategy that does not
    exist has no backtests to serialize."""
    return await session.get(Strategy, strategy_id, with_for_update=True)


async def new_job(session, backtest: Backtest, attempt: int, *, by_client: bool = False) -> Job:
    job = Job(
        id=new_id(),
        user_id=backtest.user_id,
        task_type=TASK_TYPE,
        payload={"backtestId": backtest.id, "strategyId": backtest.strategy_id},
        idempotency_key=f"backtest:{backtest.id}:{attempt}",
        attempt=attempt,
    )
    if by_client:  # no workflow: its client moves it through /transition
        job.executor_name = CLIENT
    else:
        job.dispatch_id = dispatch.workflow_id(job)
    session.add(job)
    await session.flush()  # the job row first: the backtest references it
    backtest.job_id = job.id
    runner = "its client" if by_client else "our engine"
    session.add(JobLogLine(job_id=job.id, message=f"queued backtest {backtest.id} (run {attempt}, by {runner})"))
    return job


def run_by_client(job: Job) -> bool:
    return job.executor_name == CLIENT


async def _by_key(platform: Platform, user: User, key: str) -> tuple[Backtest, Job] | None:
    async with platform.db.session() as session:
        row = (
            await session.execute(
                select(Backtest, Job)
                .join(Job, Job.id == Backtest.job_id)
                .where(Backtest.user_id == user.id, Backtest.idempotency_key == key)
            )
        ).first()
    return None if row is None else (row[0], row[1])


async def _repeated(platform: Platform, existing: tuple[Backtest, Job], request_digest: str) -> tuple[Backtest, Job]:
    """The answer to a repeated request: the same backtest, whose run is started now if its start was lost."""
    if existing[0].request_digest != request_digest:
        raise Conflict("this idempotency key was used for another backtest", code="BACKTEST_IDEMPOTENCY_CONFLICT")
    await jobs.recover_if_lost(platform, existing[1])
    return existing


async def get(platform: Platform, user: User, backtest_id: str) -> tuple[Backtest, Job]:
    """The backtest and its job, read in one statement: on PostgreSQL each statement of a read sees its own
    snapshot, and a job read after its backtest could be completed while the backtest read before it had no
    result yet."""
    async with platform.db.reading() as session:
        found = (
            await session.execute(
                select(Backtest, Job).join(Job, Job.id == Backtest.job_id).where(Backtest.id == backtest_id)
            )
        ).one_or_none()
    if found is None or found[0].user_id != user.id:
        raise AccessDenied("backtest")
    return found[0], found[1]


async def _locked(session: AsyncSession, backtest_id: str) -> Backtest:
    """The backtest's row, locked for the rest of the transaction; its owner was checked by `get`."""
    backtest = await session.get(Backtest, backtest_id, with_for_update=True)
    if backtest is None:  # deleted since
        raise AccessDenied("backtest")
    return backtest


def _conditions(user: User, strategy_id: str | None, status: str | None) -> list[Any]:
    conditions = [Backtest.user_id == user.id]
    if strategy_id:
        conditions.append(Backtest.strategy_id == strategy_id)
    if status:
        conditions.append(Job.status == JOB_STATUS_OF[status])
    return conditions


async def list_backtests(
    platform: Platform,
    user: User,
    *,
    strategy_id: str | None = None,
    status: str | None = None,
    page: int = 1,
    page_size: int = 20,
    exclude: str | None = None,
) -> tuple[list[BacktestOut], int]:
    conditions = _conditions(user, strategy_id, status)
    if exclude:
        conditions.append(Backtest.id != exclude)
    joined = select(Backtest, Job).join(Job, Job.id == Backtest.job_id).where(*conditions)
    async with platform.db.reading() as session:
        total = await session.scalar(
            select(func.count()).select_from(Backtest).join(Job, Job.id == Backtest.job_id).where(*conditions)
        )
        rows = await session.execute(
            joined.order_by(Backtest.created_at.desc(), Backtest.id).offset((page - 1) * page_size).limit(page_size)
        )
        return [view(b, j) for b, j in rows], int(total or 0)


async def statistics(platform: Platform, user: User, strategy_id: str | None = None) -> BacktestStatisticsOut:
    """Counts by status, and the averages of the completed backtests' headline metrics."""
    conditions = _conditions(user, strategy_id, None)
    counted = {
        status: func.sum(case((Job.status == job_status, 1), else_=0)) for status, job_status in JOB_STATUS_OF.items()
    }
    async with platform.db.session() as session:
        counts = (
            await session.execute(
                select(*counted.values(), func.count())
                .select_from(Backtest)
                .join(Job, Job.id == Backtest.job_id)
                .where(*conditions)
            )
        ).one()
        completed = list(
            await session.scalars(
                select(Backtest.metrics)
                .join(Job, Job.id == Backtest.job_id)
                .where(*conditions, Job.status == job_states.SUCCEEDED, Backtest.metrics.is_not(None))
            )
        )
    stats: dict[str, int | float | None] = {
        f"{status}Count": int(count or 0) for status, count in zip(counted, counts[:-1], strict=True)
    }
    stats["totalCount"] = int(counts[-1] or 0)
    for metric in ("returnRate", "maxDrawdown", "winRate", "sharpeRatio"):
        values = [m[metric] for m in completed if m.get(metric) is not None]
        # The front end formats these as numbers: with nothing completed yet they are 0 (the counts say why).
        stats[f"average{metric[0].upper()}{metric[1:]}"] = sum(values) / len(values) if values else 0.0
    return BacktestStatisticsOut.model_validate(stats)


async def compare(platform: Platform, user: User, task_ids: list[str]) -> ComparisonOut:
    """The metrics of several of the user's backtests side by side, with the best and worst return."""
    tasks: list[dict[str, Any]] = []
    for task_id in dict.fromkeys(task_ids):
        backtest, job = await get(platform, user, task_id)
        tasks.append(
            {
                "taskId": backtest.id,
                "strategyId": backtest.strategy_id,
                "displayName": backtest.display_name,
                "template": backtest.template,
                "status": STATUS_OF_JOB[job.status],
                "metrics": backtest.metrics,
            }
        )
    ranked = sorted(
        (t for t in tasks if t["metrics"] and t["metrics"].get("returnRate") is not None),
        key=lambda t: t["metrics"]["returnRate"],
    )
    summary = {
        "comparedCount": len(tasks),
        "completedCount": len(ranked),
        "bestReturnRate": ranked[-1]["metrics"]["returnRate"] if ranked else None,
        "worstReturnRate": ranked[0]["metrics"]["returnRate"] if ranked else None,
        "bestTaskId": ranked[-1]["taskId"] if ranked else None,
        "worstTaskId": ranked[0]["taskId"] if ranked else None,
    }
    # One flat metric object per requested id, in the request's order: the front end's comparison table.
    by_id = {t["taskId"]: t for t in tasks}
    metrics = [by_id[i]["metrics"] or {} for i in task_ids]
    return ComparisonOut.model_validate({"tasks": tasks, "metrics": metrics, "summary": summary})


_RESULT = TypeAdapter(BacktestResultOut)


async def result(platform: Platform, user: User, backtest_id: str) -> EngineResultOut | ClientResultOut:
    backtest, job = await get(platform, user, backtest_id)
    async with platform.db.reading() as session:
        body = await session.scalar(select(Backtest.result).where(Backtest.id == backtest_id))
    if job.status == job_states.SUCCEEDED and run_by_client(job):
        # What its client reported: metrics only, never dressed up as a run of our engine.
        body = {"taskId": backtest.id, "strategyId": backtest.strategy_id, "metrics": backtest.metrics or {}}
    if job.status != job_states.SUCCEEDED or body is None:
        raise NotFound(
            f"the backtest is {STATUS_OF_JOB[job.status]}; its result exists once it has completed",
            code="BACKTEST_RESULT_NOT_READY",
        )
    answer = {**body, "runBy": view(backtest, job).run_by, "displayName": backtest.display_name, "status": COMPLETED}
    return _RESULT.validate_python(answer)


async def rename(platform: Platform, user: User, backtest_id: str, display_name: str) -> BacktestOut:
    await get(platform, user, backtest_id)
    async with platform.db.session() as session:
        backtest = await _locked(session, backtest_id)
        backtest.display_name = display_name
    return view(*await get(platform, user, backtest_id))


async def cancel(platform: Platform, user: User, backtest_id: str) -> BacktestOut:
    """Cancels the workflow; its job, and so the backtest, ends cancelled."""
    backtest, job = await get(platform, user, backtest_id)
    if STATUS_OF_JOB[job.status] not in ACTIVE:
        raise invalid_state(f"a {STATUS_OF_JOB[job.status]} backtest cannot be cancelled")
    if run_by_client(job):
        return await _reported(platform, user, backtest_id, CANCELLED, None)
    await jobs.cancel(platform, user, job.id)
    return view(*await get(platform, user, backtest_id))


async def retry(platform: Platform, user: User, backtest_id: str) -> BacktestOut:
    """A failed or cancelled backtest runs again as a new job of the same workflow id, from a clean slate."""
    known, _ = await get(platform, user, backtest_id)
    try:
        async with platform.db.session() as session:
            strategy = await locked_strategy(session, known.strategy_id)
            backtest = await _locked(session, backtest_id)
            if strategy is None:  # deleted since, and its backtests with it
                raise AccessDenied("backtest")
            current = await session.get_one(Job, backtest.job_id)
            if STATUS_OF_JOB[current.status] not in (FAILED, CANCELLED):
                raise invalid_state(f"a {STATUS_OF_JOB[current.status]} backtest cannot be retried")
            by_client = run_by_client(current)
            if not by_client:
                _runnable(strategy)  # the snapshot reruns, but only while the strategy is active
            backtest.result = backtest.metrics = None
            job = await new_job(session, backtest, attempt=current.attempt + 1, by_client=by_client)
    except IntegrityError:  # a concurrent retry created this run first
        raise invalid_state("the backtest is already being retried") from None
    if not by_client:
        await jobs.start(platform, job)
    return view(*await get(platform, user, backtest_id))


async def transition(
    platform: Platform, user: User, backtest_id: str, to_status: str, metrics: dict[str, float] | None = None
) -> BacktestOut:
    """The reference's state machine. → cancelled cancels a run and → pending (from failed or cancelled) runs
    it again. A backtest its client runs also moves to running, completed (with the metrics it reports) and
    failed this way; one our engine runs reaches those by running only."""
    backtest, job = await get(platform, user, backtest_id)
    if to_status == CANCELLED:
        return await cancel(platform, user, backtest_id)
    if to_status == PENDING:
        return await retry(platform, user, backtest_id)
    if not run_by_client(job):
        raise invalid_state(f"a backtest becomes {to_status} by running; it is {STATUS_OF_JOB[job.status]}")
    return await _reported(platform, user, backtest_id, to_status, metrics)


# What a client may report of its own run, from each status.
_REPORTED = {PENDING: (RUNNING, CANCELLED), RUNNING: (COMPLETED, FAILED, CANCELLED)}


async def _reported(
    platform: Platform, user: User, backtest_id: str, to_status: str, metrics: dict[str, float] | None
) -> BacktestOut:
    async with platform.db.session() as session:
        backtest = await _locked(session, backtest_id)
        job = await session.get_one(Job, backtest.job_id, with_for_update=True)
        current = STATUS_OF_JOB[job.status]
        if to_status not in _REPORTED.get(current, ()):
            raise invalid_state(f"a {current} backtest cannot become {to_status}")
        now = utcnow()
        job.status = JOB_STATUS_OF[to_status]
        if to_status == RUNNING:
            job.started_at = now
        else:
            job.finished_at = now
        if to_status == COMPLETED:
            job.progress, backtest.metrics = 1.0, dict(metrics or {})
        elif to_status == FAILED:
            job.error_code, job.error_message = "BACKTEST_REPORTED_FAILED", "its client reported the run failed"
        elif to_status == CANCELLED:
            job.error_code, job.error_message = "JOB_CANCELLED", "cancelled on request"
        session.add(JobLogLine(job_id=job.id, message=f"{to_status} (reported by its client)"))
    return view(*await get(platform, user, backtest_id))


async def delete(platform: Platform, user: User, backtest_id: str) -> None:
    await get(platform, user, backtest_id)
    async with platform.db.session() as session:
        backtest = await _locked(session, backtest_id)
        job = await session.get_one(Job, backtest.job_id)
        if STATUS_OF_JOB[job.status] not in DELETABLE:
            raise Conflict(
                f"a {STATUS_OF_JOB[job.status]} backtest cannot be deleted; cancel it first",
                code="BACKTEST_DELETE_INVALID_STATE",
            )
        await session.delete(backtest)


async def running_count(session, strategy_id: str) -> int:
    """Backtests of the strategy still pending or running: while any is, the strategy cannot be deleted."""
    return await session.scalar(
        select(func.count())
        .select_from(Backtest)
        .join(Job, Job.id == Backtest.job_id)
        .where(Backtest.strategy_id == strategy_id, Job.status.in_([JOB_STATUS_OF[s] for s in ACTIVE]))
    )
