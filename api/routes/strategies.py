"""/strategies: templates, the user's strategies and their lifecycle."""

from __future__ import annotations

from typing import Literal

from fastapi import Query

from api.deps import CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import Envelope, Page, errors, ok, page
from api.routing import api_router
from domain import strategies as rules
from services import backtests, strategies
from services.schemas.backtests import BacktestOut, StrategyBacktestIn, StrategyBacktestStatisticsOut
from services.schemas.strategies import (
    ExecutionCheckOut,
    FromTemplateIn,
    StrategyDeletedOut,
    StrategyIn,
    StrategyOut,
    StrategyUpdateIn,
    TemplateOut,
    ValidateIn,
)

router = api_router(prefix="/strategies", tags=["strategies"])

DENIED = errors(403, denied="strategy")
# Parameters are checked against the template: each problem is named (`missing parameter: longWindow`).
INVALID = {422: "STRATEGY_INVALID_PARAMETERS"}
# Temporal cannot be reached to start the run.
UNSTARTABLE = "TASK_ORCHESTRATION_UNAVAILABLE"
TRANSITION_ERRORS = errors(403, 409, denied="strategy", codes={409: "STRATEGY_INVALID_TRANSITION"})


def view(strategy) -> StrategyOut:
    return StrategyOut.model_validate(strategy)


@router.get("/templates", response_model=Envelope[list[TemplateOut]])
async def templates(_user: CurrentUser):
    return ok(strategies.templates())


@router.get("", response_model=Envelope[Page[StrategyOut]])
async def list_strategies(
    user: CurrentUser,
    platform: PlatformDep,
    status: Literal["draft", "active", "inactive", "archived"] | None = None,
    search: str | None = Query(None, max_length=120),
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    rows, total = await strategies.list_strategies(
        platform, user, status=status, search=search, page=page_number, page_size=page_size
    )
    return page([view(s) for s in rows], total, page_number, page_size)


@router.post("", status_code=201, response_model=Envelope[StrategyOut], responses=errors(422, codes=INVALID))
async def create(body: StrategyIn, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.create(platform, user, body.name, body.template, body.parameters)), status=201)


@router.post(
    "/from-template", status_code=201, response_model=Envelope[StrategyOut], responses=errors(422, codes=INVALID)
)
async def from_template(body: FromTemplateIn, user: CurrentUser, platform: PlatformDep):
    created = await strategies.create(platform, user, body.name, body.template_id, body.parameters)
    return ok(view(created), status=201)


@router.get("/{strategy_id}", response_model=Envelope[StrategyOut], responses=DENIED)
async def get_strategy(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.get(platform, user, strategy_id)))


@router.put(
    "/{strategy_id}",
    response_model=Envelope[StrategyOut],
    responses=errors(403, 409, 422, denied="strategy", codes={409: "STRATEGY_ARCHIVED", **INVALID}),
)
async def update(strategy_id: str, body: StrategyUpdateIn, user: CurrentUser, platform: PlatformDep):
    updated = await strategies.update(platform, user, strategy_id, name=body.name, parameters=body.parameters)
    return ok(view(updated))


@router.post("/{strategy_id}/validate-execution", response_model=Envelope[ExecutionCheckOut], responses=DENIED)
async def validate_execution(strategy_id: str, body: ValidateIn, user: CurrentUser, platform: PlatformDep):
    strategy = await strategies.get(platform, user, strategy_id)
    return ok(strategies.check_execution(strategy, body.parameters))


@router.post("/{strategy_id}/activate", response_model=Envelope[StrategyOut], responses=TRANSITION_ERRORS)
async def activate(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.transition(platform, user, strategy_id, rules.ACTIVE)))


@router.post("/{strategy_id}/deactivate", response_model=Envelope[StrategyOut], responses=TRANSITION_ERRORS)
async def deactivate(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.transition(platform, user, strategy_id, rules.INACTIVE)))


@router.post("/{strategy_id}/archive", response_model=Envelope[StrategyOut], responses=TRANSITION_ERRORS)
async def archive(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.transition(platform, user, strategy_id, rules.ARCHIVED)))


@router.post(
    "/{strategy_id}/backtests",
    status_code=202,
    response_model=Envelope[BacktestOut],
    responses=errors(
        403,
        409,
        422,
        503,
        denied="strategy",
        codes={409: "BACKTEST_STRATEGY_INACTIVE", 422: "BACKTEST_INVALID_CONFIG", 503: UNSTARTABLE},
    ),
)
async def create_backtest(strategy_id: str, body: StrategyBacktestIn, user: CurrentUser, platform: PlatformDep):
    backtest, job, created = await backtests.create(
        platform,
        user,
        strategy_id,
        body.config,
        idempotency_key=body.idempotency_key,
        display_name=body.display_name,
        context="strategy",
    )
    return ok(backtests.view(backtest, job), status=202 if created else 200, message="accepted" if created else "ok")


@router.get("/{strategy_id}/backtests", response_model=Envelope[Page[BacktestOut]], responses=DENIED)
async def list_backtests(
    strategy_id: str,
    user: CurrentUser,
    platform: PlatformDep,
    status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None,
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    await strategies.get(platform, user, strategy_id)
    rows, total = await backtests.list_backtests(
        platform, user, strategy_id=strategy_id, status=status, page=page_number, page_size=page_size
    )
    return page(rows, total, page_number, page_size)


@router.get("/{strategy_id}/backtest-stats", response_model=Envelope[StrategyBacktestStatisticsOut], responses=DENIED)
async def backtest_stats(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    await strategies.get(platform, user, strategy_id)
    stats = await backtests.statistics(platform, user, strategy_id)
    return ok(StrategyBacktestStatisticsOut(strategy_id=strategy_id, **stats.model_dump()))


@router.delete(
    "/{strategy_id}",
    response_model=Envelope[StrategyDeletedOut],
    responses=errors(403, 409, denied="strategy", codes={409: "STRATEGY_IN_USE"}),
)
async def delete(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    await strategies.delete(platform, user, strategy_id)
    return ok(StrategyDeletedOut(strategy_id=strategy_id), message="strategy deleted")
