"""/backtests: backtest tasks of the user's strategies, each run by its ``backtest-<id>`` workflow."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import Field

from api.deps import CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import ok, page
from api.routing import api_router
from services import backtests
from services.views import JobOut, Schema

router = api_router(prefix="/backtests", tags=["backtests"])

Status = Literal["pending", "running", "completed", "failed", "cancelled"]


class BacktestIn(Schema):
    strategy_id: str = Field(min_length=1, max_length=80)
    config: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    display_name: str | None = Field(default=None, min_length=1, max_length=120)


class CompareIn(Schema):
    task_ids: list[str] = Field(min_length=1, max_length=backtests.MAX_COMPARE)


class NameIn(Schema):
    display_name: str = Field(min_length=1, max_length=120)


class TransitionIn(Schema):
    to_status: Status
    # What a client reports of its own run when it completes; an engine-run backtest's come from its run.
    metrics: dict[Annotated[str, Field(min_length=1, max_length=64)], float] | None = Field(default=None, max_length=64)


def task_body(backtest, job) -> dict[str, Any]:
    """The reference's answer for a backtest started through the job framework."""
    run = JobOut.of(job)
    return {
        "taskId": job.id,
        "taskType": job.task_type,
        "status": job.status,
        "result": job.result,
        "error": run.error,
        "backtestTask": backtests.view(backtest, job),
    }


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


@router.post("", status_code=202)
async def create(body: BacktestIn, user: CurrentUser, platform: PlatformDep):
    backtest, job, created = await _create(body, user, platform)
    return accepted(backtests.view(backtest, job), created)


@router.post("/tasks", status_code=202)
async def create_task(body: BacktestIn, user: CurrentUser, platform: PlatformDep):
    backtest, job, created = await _create(body, user, platform, run_now=True)
    return accepted(task_body(backtest, job), created)


@router.get("")
async def list_backtests(
    user: CurrentUser,
    platform: PlatformDep,
    strategy_id: str | None = Query(None, alias="strategyId", max_length=80),
    status: Status | None = None,
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    rows, total = await backtests.list_backtests(
        platform, user, strategy_id=strategy_id, status=status, page=page_number, page_size=page_size
    )
    return page(rows, total, page_number, page_size)


@router.get("/statistics")
async def statistics(user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.statistics(platform, user))


@router.post("/compare")
async def compare(body: CompareIn, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.compare(platform, user, body.task_ids))


@router.get("/{task_id}/result")
async def result(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.result(platform, user, task_id))


@router.patch("/{task_id}/name")
async def rename(task_id: str, body: NameIn, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.rename(platform, user, task_id, body.display_name))


@router.get("/{task_id}/related")
async def related(
    task_id: str,
    user: CurrentUser,
    platform: PlatformDep,
    status: Status | None = None,
    limit: int = Query(10, ge=1, le=100),
):
    backtest, _ = await backtests.get(platform, user, task_id)
    rows, _ = await backtests.list_backtests(
        platform, user, strategy_id=backtest.strategy_id, status=status, page_size=limit, exclude=backtest.id
    )
    return ok(rows)  # a plain array: the front end maps over it


@router.get("/{task_id}")
async def get_backtest(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(backtests.view(*await backtests.get(platform, user, task_id)))


@router.post("/{task_id}/transition")
async def transition(task_id: str, body: TransitionIn, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.transition(platform, user, task_id, body.to_status, body.metrics))


@router.post("/{task_id}/cancel")
async def cancel(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.cancel(platform, user, task_id))


@router.post("/{task_id}/retry", status_code=202)
async def retry(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await backtests.retry(platform, user, task_id), status=202, message="accepted")


@router.delete("/{task_id}")
async def delete(task_id: str, user: CurrentUser, platform: PlatformDep):
    await backtests.delete(platform, user, task_id)
    return ok({"taskId": task_id}, message="backtest deleted")
