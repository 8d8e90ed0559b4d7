"""/strategies/{id}/research: parameter sweeps (``research-<job id>`` workflows) and performance analyses of
the user's strategies, their results and trials. A sweep is cancelled through ``POST /jobs/{taskId}/cancel``;
its recorded trials stay."""

from __future__ import annotations

from typing import Literal

from fastapi import Query

from api.deps import CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import Envelope, Page, errors, ok, page
from api.routing import api_router
from domain.research import OptimizationIn
from services import research
from services.schemas.research import (
    PerformanceIn,
    ResearchResultOut,
    ResearchResultsOut,
    ResearchTaskOut,
    TrialOut,
)

router = api_router(prefix="/strategies", tags=["research"])

START_ERRORS = errors(
    403,
    409,
    422,
    503,
    denied="strategy",
    codes={
        409: "IDEMPOTENCY_CONFLICT",
        422: "RESEARCH_INVALID_PARAMETER_SPACE",
        503: "TASK_ORCHESTRATION_UNAVAILABLE",
    },
)
READ_ERRORS = errors(403, denied="research")


def _accepted(job, created: bool):
    return ok(research.task_view(job), status=202 if created else 200, message="accepted" if created else "ok")


@router.post(
    "/{strategy_id}/research/optimization-task",
    status_code=202,
    response_model=Envelope[ResearchTaskOut],
    responses=START_ERRORS,
)
async def optimize(strategy_id: str, body: OptimizationIn, user: CurrentUser, platform: PlatformDep):
    """Start a sweep of the strategy's parameters; ``{}`` sweeps every parameter around the strategy's own
    with a seeded TPE on the config of its latest backtest."""
    job, created = await research.optimize(platform, user, strategy_id, body)
    return _accepted(job, created)


@router.post(
    "/{strategy_id}/research/performance-task",
    status_code=202,
    response_model=Envelope[ResearchTaskOut],
    responses=START_ERRORS,
)
async def analyze(strategy_id: str, body: PerformanceIn, user: CurrentUser, platform: PlatformDep):
    """Backtest the strategy over its last ``analysisPeriodDays`` days against buy-and-hold on the same symbol
    and its own earlier results."""
    job, created = await research.analyze(platform, user, strategy_id, body.analysis_period_days, body.idempotency_key)
    return _accepted(job, created)


@router.get(
    "/{strategy_id}/research/results",
    response_model=Envelope[ResearchResultsOut],
    responses=errors(403, denied="strategy"),
)
async def results(
    strategy_id: str,
    user: CurrentUser,
    platform: PlatformDep,
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
    method: Literal["grid", "random", "bayesian", "cmaes"] | None = None,
    version: str | None = Query(None, max_length=8),
    limit: int = Query(50, ge=1, le=research.MAX_RESULTS),
):
    """The strategy's sweeps, newest first, with their results (without trials) and progress."""
    items, total = await research.results(
        platform, user, strategy_id, status=status, method=method, version=version, limit=limit
    )
    return ok(ResearchResultsOut(items=items, total=total))


@router.get(
    "/{strategy_id}/research/results/{task_id}",
    response_model=Envelope[ResearchResultOut],
    responses=READ_ERRORS,
)
async def result(strategy_id: str, task_id: str, user: CurrentUser, platform: PlatformDep):
    """One sweep: its progress while it runs, its whole result once it has ended."""
    return ok(await research.result(platform, user, strategy_id, task_id))


@router.get(
    "/{strategy_id}/research/results/{task_id}/trials",
    response_model=Envelope[Page[TrialOut]],
    responses=READ_ERRORS,
)
async def trials(
    strategy_id: str,
    task_id: str,
    user: CurrentUser,
    platform: PlatformDep,
    window: int | None = Query(None, ge=0, le=100),
    feasible: bool | None = None,
    sort: Literal["number", "score"] = "number",
    order: Literal["asc", "desc"] = "asc",
    page_number: PageNumber = 1,
    page_size: PageSize = 50,
):
    """A page of the sweep's trials (recorded so far while it runs), filtered and sorted."""
    rows, total = await research.trials(
        platform,
        user,
        strategy_id,
        task_id,
        window=window,
        feasible=feasible,
        sort=sort,
        descending=order == "desc",
        page=page_number,
        page_size=page_size,
    )
    return page(rows, total, page_number, page_size)
