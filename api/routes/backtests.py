"""/backtests: backtest tasks of the user's strategies, each run by its ``backtest-<id>`` workflow."""

from __future__ import annotations

from typing import Any

from fastapi import Query

from api.deps import CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import Envelope, Page, errors, ok, page
from api.routing import api_router
from services import backtests
from services.schemas.backtests import (
    BacktestDeletedOut,
    BacktestIn,
    BacktestOut,
    BacktestResultOut,
    BacktestRunOut,
    BacktestStatisticsOut,
    BacktestStatus,
    BacktestTaskOut,
    CompareIn,
    ComparisonOut,
    NameIn,
    TransitionIn,
)
from services.schemas.jobs import JobError

router = api_router(prefix="/backtests", tags=["backtests"])

DENIED = errors(403, denied="backtest")
# Creating: the strategy must be the caller's and, to run, active with a runnable config.
CREATE_ERRORS = errors(
    403,
    409,
    422,
    503,
    denied="strategy",
    codes={409: "BACKTEST_STRATEGY_INACTIVE", 422: "BACKTEST_INVALID_CONFIG", 503: "TASK_ORCHESTRATION_UNAVAILABLE"},
)
# Retrying (also → pending) needs an active strategy whose parameters run, and a start of its workflow.
STATE_ERRORS = errors(403, 409, 422, 503, denied="backtest", codes={409: "BACKTEST_INVALID_STATE"})


def task_body(backtest, job) -> BacktestTaskOut:
    """The reference's answer for a backtest started through the job framework."""
    return BacktestTaskOut(
        task_id=job.id,
        task_type=job.task_type,
        status=job.status,
        result=BacktestRunOut.model_validate(job.result) if job.result else None,
        error=JobError.of(job),
        backtest_task=backtests.view(backtest, job),
    )


def accepted(data: Any, created: bool):
    return ok(data, status=202 if created else 200, message="accepted" if created else "ok")


async def _create(body: BacktestIn, user, platform, *, run_now: bool = False):
    return await backtests.create(
        platform,
        user,
        body.strategy_id,
        body.config,
        idempotency_key=body.idempotency_key,
        display_name=body.display_name,
        run_now=run_now,
    )


@router.post("", status_code=202, response_model=Envelope[BacktestOut], responses=CREATE_ERRORS)
async def create(body: BacktestIn, user: CurrentUser, platform: PlatformDep):
    backtest, job, created = await _create(body, user, platform)
    return accepted(backtests.view(backtest, job), created)


@router.post("/tasks", status_code=202, response_model=Envelope[BacktestTaskOut], responses=CREATE_ERRORS)
async def create_task(body: BacktestIn, user: CurrentUser, platform: PlatformDep):
    backtest, job, created = await _create(body, user, platform, run_now=True)
    return accepted(task_body(backtest, job), created)


@router.get("", response_model=Envelope[Page[BacktestOut]])
async def list_backtests(
    user: CurrentUser,
    platform: PlatformDep,
    strategy_id: str | None = Query(None, alias="strategyId", max_length=80),
    status: BacktestStatus | None = None,
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    rows, total = await backtests.list_backtests(
        platform, user, strategy_id=strategy_id, status=status, page=page_number, page_size=page_size
    )
    return page(rows, total, page_number, page_size)


@router.get("/statistics", response_model=Envelope[BacktestStatisticsOut])
async def statistics(user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.statistics(platform, user))


@router.post("/compare", response_model=Envelope[ComparisonOut], responses=DENIED)
async def compare(body: CompareIn, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.compare(platform, user, body.task_ids))


@router.get(
    "/{task_id}/result",
    response_model=Envelope[BacktestResultOut],
    responses=errors(403, 404, denied="backtest", codes={404: "BACKTEST_RESULT_NOT_READY"}),
)
async def result(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.result(platform, user, task_id))


@router.patch("/{task_id}/name", response_model=Envelope[BacktestOut], responses=DENIED)
async def rename(task_id: str, body: NameIn, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.rename(platform, user, task_id, body.display_name))


@router.get("/{task_id}/related", response_model=Envelope[list[BacktestOut]], responses=DENIED)
async def related(
    task_id: str,
    user: CurrentUser,
    platform: PlatformDep,
    status: BacktestStatus | None = None,
    limit: int = Query(10, ge=1, le=100),
):
    backtest, _ = await backtests.get(platform, user, task_id)
    rows, _ = await backtests.list_backtests(
        platform, user, strategy_id=backtest.strategy_id, status=status, page_size=limit, exclude=backtest.id
    )
    return ok(rows)  # a plain array: the front end maps over it


@router.get("/{task_id}", response_model=Envelope[BacktestOut], responses=DENIED)
async def get_backtest(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(backtests.view(*await backtests.get(platform, user, task_id)))


@router.post("/{task_id}/transition", response_model=Envelope[BacktestOut], responses=STATE_ERRORS)
async def transition(task_id: str, body: TransitionIn, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.transition(platform, user, task_id, body.to_status, body.metrics))


@router.post("/{task_id}/cancel", response_model=Envelope[BacktestOut], responses=STATE_ERRORS)
async def cancel(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.cancel(platform, user, task_id))


@router.post("/{task_id}/retry", status_code=202, response_model=Envelope[BacktestOut], responses=STATE_ERRORS)
async def retry(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.retry(platform, user, task_id), status=202, message="accepted")


@router.delete(
    "/{task_id}",
    response_model=Envelope[BacktestDeletedOut],
    responses=errors(403, 409, denied="backtest", codes={409: "BACKTEST_DELETE_INVALID_STATE"}),
)
async def delete(task_id: str, user: CurrentUser, platform: PlatformDep):
    await backtests.delete(platform, user, task_id)
    return ok(BacktestDeletedOut(task_id=task_id), message="backtest deleted")
