"""Research (reference §2.3): parameter sweeps of a strategy and performance analyses, each a job; the
results listing, one result and its trials.

A sweep's request is resolved against the strategy when it is made (its space, objective, constraints, config
and windows): a request that cannot be searched is a 422 and creates nothing. The job, the sweep's row and its
first log line are one transaction; the workflow starts after it (a start lost between the two is recovered
by an idempotent repeat or by the reconciler, as for every job).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, func, select

from core.errors import AccessDenied, AppError
from db.models import Job, ResearchSweep, ResearchTrial, Strategy, User
from db.models.backtests import latest_symbol_config
from domain import research as rules
from domain import strategies as strategy_rules
from domain.backtest import BacktestConfig
from domain.research_result import trial_id
from services import jobs
from services.platform import Platform
from services.schemas.jobs import JobError
from services.schemas.research import (
    OptimizationResultOut,
    ResearchResultOut,
    ResearchTaskOut,
    SweepProgressOut,
    TrialOut,
)

OPTIMIZE, ANALYZE = "strategy_optimization_suggest", "strategy_performance_analyze"
MAX_RESULTS = 200
TRIAL_SORTS = {"number": ResearchTrial.number, "score": ResearchTrial.score}


def invalid_space(problems: list[str]) -> AppError:
    return AppError(
        "the parameter space cannot be searched",
        code="RESEARCH_INVALID_PARAMETER_SPACE",
        status=422,
        details=[{"field": "parameterSpace", "message": problem} for problem in problems],
    )


async def owned_strategy(platform: Platform, user: User, strategy_id: str) -> Strategy:
    async with platform.db.reading() as session:
        strategy = await session.get(Strategy, strategy_id)
    if strategy is None or strategy.user_id != user.id:
        raise AccessDenied("strategy")
    return strategy


async def optimize(platform: Platform, user: User, strategy_id: str, request: rules.OptimizationIn) -> tuple[Job, bool]:
    """The sweep's job: a new one (True), or the existing one for a repeated idempotency key (False)."""
    strategy = await owned_strategy(platform, user, strategy_id)
    asked = request.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
    payload = {"strategyId": strategy.id, "request": asked}
    plan = _plan(strategy, request, await _config(platform, strategy, request.config))
    planned = sum(plan.planned(i) for i in range(len(plan.windows)))

    def sweep(job: Job) -> list[ResearchSweep]:
        stored = plan.model_dump(mode="json", by_alias=True)
        return [
            ResearchSweep(
                job_id=job.id,
                user_id=user.id,
                strategy_id=strategy.id,
                method=plan.method,
                plan=stored,
                trials_planned=planned,
                trials_done=0,
            )
        ]

    message = f"queued {plan.method} sweep of {planned} trials ({plan.validation.mode} validation)"
    return await jobs.submit_for_record(platform, user, OPTIMIZE, payload, request.idempotency_key, message, sweep)


def _plan(strategy: Strategy, request: rules.OptimizationIn, config: BacktestConfig) -> rules.Plan:
    try:
        own = strategy_rules.validate_parameters(strategy.template, strategy.parameters)
    except strategy_rules.ParameterError as error:
        raise AppError(
            "the strategy's parameters cannot run",
            code="STRATEGY_INVALID_PARAMETERS",
            status=422,
            details=error.problems,
        ) from None
    try:
        return rules.plan_of(request, strategy.template, own, config.stored())
    except rules.InvalidSweep as error:
        raise invalid_space(error.problems) from None


async def _config(platform: Platform, strategy: Strategy, given: dict[str, Any] | None) -> BacktestConfig:
    """The request's config; else the config of the strategy's latest backtest that names a symbol; else the
    platform's default symbol over the last year."""
    if given is None:
        async with platform.db.reading() as session:
            latest = await latest_symbol_config(session, strategy.id)
        given = latest or {"symbol": platform.settings.research_default_symbol}
    try:
        config = BacktestConfig.model_validate(given)
    except ValidationError as error:
        fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
        raise AppError("invalid backtest config", code="BACKTEST_INVALID_CONFIG", status=422, details=fields) from None
    if not config.runnable or config.prices is not None:
        raise AppError(
            "a sweep runs on stored bars: its config names a symbol and no inline prices",
            code="BACKTEST_INVALID_CONFIG",
            status=422,
            details=[{"field": "config.symbol", "message": "a symbol is required; prices are not accepted"}],
        )
    return config


async def analyze(platform: Platform, user: User, strategy_id: str, days: int, key: str | None) -> tuple[Job, bool]:
    """A performance analysis of the strategy over its last ``days`` days, as a job."""
    strategy = await owned_strategy(platform, user, strategy_id)
    payload = {"strategyId": strategy.id, "request": {"analysisPeriodDays": days}}
    message = f"queued performance analysis over {days} days"
    return await jobs.submit_for_record(platform, user, ANALYZE, payload, key, message)


def task_view(job: Job) -> ResearchTaskOut:
    return ResearchTaskOut(
        task_id=job.id,
        task_type=job.task_type,
        status=job.status,
        result=job.result,
        error=JobError.of(job),
        created_at=job.created_at,
    )


# --- results ------------------------------------------------------------------------------------------------


def _results_query(user: User, strategy_id: str, status: str | None, method: str | None) -> Select:
    conditions = [ResearchSweep.user_id == user.id, ResearchSweep.strategy_id == strategy_id]
    if status:
        conditions.append(Job.status == status)
    if method:
        conditions.append(ResearchSweep.method == method)
    return select(ResearchSweep, Job).join(Job, Job.id == ResearchSweep.job_id).where(*conditions)


async def results(
    platform: Platform,
    user: User,
    strategy_id: str,
    *,
    status: str | None = None,
    method: str | None = None,
    version: str | None = None,
    limit: int = 50,
) -> tuple[list[ResearchResultOut], int]:
    """The strategy's sweeps, newest first; each result without its trials (one result has them)."""
    await owned_strategy(platform, user, strategy_id)
    if version not in (None, "v3"):
        return [], 0
    query = _results_query(user, strategy_id, status, method)
    async with platform.db.reading() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        rows = (await session.execute(query.order_by(ResearchSweep.created_at.desc(), Job.id).limit(limit))).all()
    return [result_view(sweep, job, with_trials=False) for sweep, job in rows], int(total or 0)


async def result(platform: Platform, user: User, strategy_id: str, task_id: str) -> ResearchResultOut:
    sweep, job = await _sweep(platform, user, strategy_id, task_id)
    return result_view(sweep, job, with_trials=True)


async def _sweep(platform: Platform, user: User, strategy_id: str, task_id: str) -> tuple[ResearchSweep, Job]:
    async with platform.db.reading() as session:
        row = (
            await session.execute(
                select(ResearchSweep, Job)
                .join(Job, Job.id == ResearchSweep.job_id)
                .where(ResearchSweep.job_id == task_id)
            )
        ).first()
    if row is None or row[0].user_id != user.id or row[0].strategy_id != strategy_id:
        raise AccessDenied("research")
    return row[0], row[1]


def result_view(sweep: ResearchSweep, job: Job, *, with_trials: bool) -> ResearchResultOut:
    found = (job.result or {}).get("optimizationResult")
    optimization = OptimizationResultOut.model_validate(found) if found else None
    if optimization is not None and not with_trials:
        optimization = optimization.model_copy(update={"trials": []})
    return ResearchResultOut(
        task_id=job.id,
        task_type=job.task_type,
        strategy_id=sweep.strategy_id,
        method=sweep.method,
        version="v3",
        status=job.status,
        progress=SweepProgressOut(
            trials_done=sweep.trials_done,
            trials_planned=sweep.trials_planned,
            best_score=sweep.best_score,
            best_trial_id=sweep.best_trial,
        ),
        created_at=job.created_at,
        updated_at=max(job.updated_at, sweep.updated_at),
        finished_at=job.finished_at,
        optimization_result=optimization,
        error=JobError.of(job),
    )


async def trials(
    platform: Platform,
    user: User,
    strategy_id: str,
    task_id: str,
    *,
    window: int | None = None,
    feasible: bool | None = None,
    sort: str = "number",
    descending: bool = False,
    page: int = 1,
    page_size: int = 50,
) -> tuple[list[TrialOut], int]:
    """A page of a sweep's trials, recorded so far (a running sweep's too)."""
    sweep, _ = await _sweep(platform, user, strategy_id, task_id)
    conditions = [ResearchTrial.job_id == task_id]
    if window is not None:
        conditions.append(ResearchTrial.window == window)
    if feasible is not None:
        conditions.append(ResearchTrial.feasible.is_(feasible))
    column = TRIAL_SORTS[sort]
    # Trials without a score sort last either way.
    order: list[Any] = [
        column.is_(None),
        column.desc() if descending else column.asc(),
        ResearchTrial.window,
        ResearchTrial.number,
    ]
    async with platform.db.reading() as session:
        total = await session.scalar(select(func.count()).select_from(ResearchTrial).where(*conditions))
        rows = await session.scalars(
            select(ResearchTrial).where(*conditions).order_by(*order).offset((page - 1) * page_size).limit(page_size)
        )
        plan = rules.Plan.model_validate(sweep.plan)
        return [_trial_view(row, plan) for row in rows], int(total or 0)


def _trial_view(row: ResearchTrial, plan: rules.Plan) -> TrialOut:
    return TrialOut(
        trial_id=trial_id(row.window, row.number),
        number=row.number,
        window=row.window,
        method=plan.method,
        parameters=row.parameters,
        metric=plan.metric,
        score=row.score,
        feasible=row.feasible,
        violations=row.violations if row.state == "complete" else [row.error or "failed"],
        state=row.state,  # "complete" or "failed", as recorded
        metrics=row.metrics,
        test_metrics=row.test_metrics,
    )
