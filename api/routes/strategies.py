"""/strategies: templates, the user's strategies and their lifecycle."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Query
from pydantic import Field

from api.deps import CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import ok, page
from api.routing import api_router
from domain import strategies as rules
from services import backtests, strategies
from services.views import Schema, StrategyOut

router = api_router(prefix="/strategies", tags=["strategies"])


class StrategyIn(Schema):
    name: str = Field(min_length=1, max_length=120)
    template: str = Field(min_length=1, max_length=32)
    parameters: dict[str, Any] = Field(default_factory=dict)


class FromTemplateIn(Schema):
    name: str = Field(min_length=1, max_length=120)
    template_id: str = Field(min_length=1, max_length=32)
    parameters: dict[str, Any] = Field(default_factory=dict)


class StrategyUpdateIn(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    parameters: dict[str, Any] | None = None


class StrategyBacktestIn(Schema):
    config: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    display_name: str | None = Field(default=None, min_length=1, max_length=120)


class ValidateIn(Schema):
    parameters: dict[str, Any] | None = None


def view(strategy) -> StrategyOut:
    return StrategyOut.model_validate(strategy)


@router.get("/templates")
async def templates(_user: CurrentUser):
    return ok(rules.catalog())


@router.get("")
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


@router.post("", status_code=201)
async def create(body: StrategyIn, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.create(platform, user, body.name, body.template, body.parameters)), status=201)


@router.post("/from-template", status_code=201)
async def from_template(body: FromTemplateIn, user: CurrentUser, platform: PlatformDep):
    created = await strategies.create(platform, user, body.name, body.template_id, body.parameters)
    return ok(view(created), status=201)


@router.get("/{strategy_id}")
async def get_strategy(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.get(platform, user, strategy_id)))


@router.put("/{strategy_id}")
async def update(strategy_id: str, body: StrategyUpdateIn, user: CurrentUser, platform: PlatformDep):
    updated = await strategies.update(platform, user, strategy_id, name=body.name, parameters=body.parameters)
    return ok(view(updated))


@router.post("/{strategy_id}/validate-execution")
async def validate_execution(strategy_id: str, body: ValidateIn, user: CurrentUser, platform: PlatformDep):
    strategy = await strategies.get(platform, user, strategy_id)
    return ok(strategies.check_execution(strategy, body.parameters))


@router.post("/{strategy_id}/activate")
async def activate(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.transition(platform, user, strategy_id, rules.ACTIVE)))


@router.post("/{strategy_id}/deactivate")
async def deactivate(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.transition(platform, user, strategy_id, rules.INACTIVE)))


@router.post("/{strategy_id}/archive")
async def archive(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(view(await strategies.transition(platform, user, strategy_id, rules.ARCHIVED)))


@router.post("/{strategy_id}/backtests", status_code=202)
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


@router.get("/{strategy_id}/backtests")
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


@router.get("/{strategy_id}/backtest-stats")
async def backtest_stats(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    await strategies.get(platform, user, strategy_id)
    return ok({"strategyId": strategy_id, **await backtests.statistics(platform, user, strategy_id)})


@router.delete("/{strategy_id}")
async def delete(strategy_id: str, user: CurrentUser, platform: PlatformDep):
    await strategies.delete(platform, user, strategy_id)
    return ok({"strategyId": strategy_id}, message="strategy deleted")
