"""/portfolios: a user's strategies at weights, their read model, and evaluation and rebalancing jobs."""

from __future__ import annotations

from typing import Any

from api.deps import CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import Envelope, Page, errors, ok, page
from api.routing import api_router
from domain import portfolios as rules
from services import portfolios
from services.schemas.portfolios import (
    EvaluationTaskIn,
    EvaluationTaskOut,
    MemberIn,
    PortfolioDeletedOut,
    PortfolioIn,
    PortfolioOut,
    PortfolioStatus,
    PortfolioUpdateIn,
    ReadModelOut,
    RebalanceTaskIn,
    RebalanceTaskOut,
)

router = api_router(prefix="/portfolios", tags=["portfolios"])

# A missing or foreign portfolio, or a member strategy that is not the caller's (STRATEGY_ACCESS_DENIED).
DENIED = errors(403, denied="portfolio")
# Weights > 0, each within maxSingleWeight and their sum within maxTotalWeight; constraints in (0, 10] with
# single ≤ total. The code says which (PORTFOLIO_INVALID_WEIGHTS or PORTFOLIO_INVALID_CONSTRAINTS).
INVALID = {422: "PORTFOLIO_INVALID_WEIGHTS"}
# An archived portfolio does not change (PORTFOLIO_ARCHIVED); a status it cannot reach is
# PORTFOLIO_INVALID_TRANSITION.
CHANGE_ERRORS = errors(403, 409, 422, denied="portfolio", codes={409: "PORTFOLIO_ARCHIVED", **INVALID})
# A repeated idempotency key with another request (409), Temporal unreachable (503).
TASK_ERRORS = {
    409: "IDEMPOTENCY_CONFLICT",
    503: "TASK_ORCHESTRATION_UNAVAILABLE",
}


def _repeat(envelope: type) -> dict[int | str, Any]:
    return {200: {"model": envelope, "description": "An idempotent repeat: the job this key already made"}}


def accepted(data: Any, created: bool):
    """202 for a new job; 200 when an idempotent repeat returns the existing one."""
    return ok(data, status=202 if created else 200, message="accepted" if created else "ok")


@router.get("", response_model=Envelope[Page[PortfolioOut]])
async def list_portfolios(
    user: CurrentUser,
    platform: PlatformDep,
    status: PortfolioStatus | None = None,
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    rows, total = await portfolios.list_portfolios(platform, user, status=status, page=page_number, page_size=page_size)
    return page(rows, total, page_number, page_size)


@router.post(
    "",
    status_code=201,
    response_model=Envelope[PortfolioOut],
    responses=errors(403, 422, codes={403: "STRATEGY_ACCESS_DENIED", **INVALID}),
)
async def create(body: PortfolioIn, user: CurrentUser, platform: PlatformDep):
    constraints = body.constraints
    created = await portfolios.create(
        platform,
        user,
        body.name,
        rules.Constraints(constraints.max_total_weight, constraints.max_single_weight)
        if constraints
        else rules.Constraints(),
        [(m.strategy_id, m.weight) for m in body.members],
    )
    return ok(created, status=201)


@router.get("/{portfolio_id}", response_model=Envelope[PortfolioOut], responses=DENIED)
async def get_portfolio(portfolio_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await portfolios.get(platform, user, portfolio_id))


@router.put("/{portfolio_id}", response_model=Envelope[PortfolioOut], responses=CHANGE_ERRORS)
async def update(portfolio_id: str, body: PortfolioUpdateIn, user: CurrentUser, platform: PlatformDep):
    updated = await portfolios.update(
        platform, user, portfolio_id, name=body.name, status=body.status, constraints=body.constraints
    )
    return ok(updated)


@router.delete("/{portfolio_id}", response_model=Envelope[PortfolioDeletedOut], responses=DENIED)
async def delete(portfolio_id: str, user: CurrentUser, platform: PlatformDep):
    await portfolios.delete(platform, user, portfolio_id)
    return ok(PortfolioDeletedOut(portfolio_id=portfolio_id), message="portfolio deleted")


@router.post("/{portfolio_id}/members", response_model=Envelope[PortfolioOut], responses=CHANGE_ERRORS)
async def put_member(portfolio_id: str, body: MemberIn, user: CurrentUser, platform: PlatformDep):
    """Add a strategy at a weight, or change a member's weight."""
    return ok(await portfolios.put_member(platform, user, portfolio_id, body.strategy_id, body.weight))


@router.delete(
    "/{portfolio_id}/members/{strategy_id}",
    response_model=Envelope[PortfolioOut],
    responses=errors(
        403, 404, 409, denied="portfolio", codes={404: "PORTFOLIO_MEMBER_NOT_FOUND", 409: "PORTFOLIO_ARCHIVED"}
    ),
)
async def remove_member(portfolio_id: str, strategy_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await portfolios.remove_member(platform, user, portfolio_id, strategy_id))


@router.get("/{portfolio_id}/read-model", response_model=Envelope[ReadModelOut], responses=DENIED)
async def read_model(portfolio_id: str, user: CurrentUser, platform: PlatformDep):
    """The portfolio combined from each member's latest completed backtest."""
    return ok(await portfolios.read_model(platform, user, portfolio_id))


@router.post(
    "/{portfolio_id}/evaluation-task",
    status_code=202,
    response_model=Envelope[EvaluationTaskOut],
    responses={**_repeat(Envelope[EvaluationTaskOut]), **errors(403, 409, 503, denied="portfolio", codes=TASK_ERRORS)},
)
async def evaluation_task(
    portfolio_id: str, user: CurrentUser, platform: PlatformDep, body: EvaluationTaskIn | None = None
):
    """A ``portfolio_evaluate`` job: the read model with its risk summary, stored as the job's result."""
    key = body.idempotency_key if body else None
    job, created = await portfolios.evaluate(platform, user, portfolio_id, key)
    return accepted(EvaluationTaskOut.of(job), created)


@router.post(
    "/{portfolio_id}/rebalance-task",
    status_code=202,
    response_model=Envelope[RebalanceTaskOut],
    responses={
        **_repeat(Envelope[RebalanceTaskOut]),
        **errors(403, 409, 422, 503, denied="portfolio", codes={**TASK_ERRORS, **INVALID}),
    },
)
async def rebalance_task(
    portfolio_id: str, user: CurrentUser, platform: PlatformDep, body: RebalanceTaskIn | None = None
):
    """A ``portfolio_rebalance`` job: target weights within the constraints (``apply`` also writes them)."""
    request = body or RebalanceTaskIn()
    job, created = await portfolios.rebalance(
        platform,
        user,
        portfolio_id,
        target_weights=request.target_weights,
        method=request.method,
        apply=request.apply,
        idempotency_key=request.idempotency_key,
    )
    return accepted(RebalanceTaskOut.of(job), created)
