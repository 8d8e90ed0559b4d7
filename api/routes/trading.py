"""/trading: paper-trading accounts, their orders, fills, trades, cash flows and positions (reference §2.6).

Lists are plain arrays, newest first, at most ``limit`` items (the front end maps over them). A missing or
foreign account is 403 ``ACCOUNT_ACCESS_DENIED``; an order, trade or position missing from one's own account
is 404.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import Query

from api.deps import CurrentUser, PlatformDep
from api.envelope import Envelope, errors, ok
from api.routing import api_router
from domain.market import Symbol
from services import trading
from services import trading_analytics as analytics
from services import trading_ops as ops
from services.schemas.jobs import JobOut
from services.schemas.trading import (
    AccountCleanupTaskIn,
    AccountIn,
    AccountOut,
    AccountUpdateIn,
    AggregateOut,
    BatchExecuteTaskIn,
    CashFlowOut,
    CashFlowSummaryOut,
    CashIn,
    CashMovedOut,
    DailyStatOut,
    DailyStatsTaskIn,
    EquityPointOut,
    FillIn,
    FillOut,
    FilterConfigOut,
    OrderDeletedOut,
    OrderIn,
    OrderOut,
    OrderPlacedOut,
    OrderStatus,
    OrderUpdateIn,
    OverviewOut,
    PendingProcessTaskIn,
    PositionAnalysisOut,
    PositionOut,
    PositionSummaryOut,
    RefreshedOut,
    RefreshPricesIn,
    RefreshPricesTaskIn,
    RiskAssessmentOut,
    RiskMetricsOut,
    RiskMonitorTaskIn,
    SummaryOut,
    TradeIn,
    TradeOut,
    TradeStatsOut,
)

router = api_router(prefix="/trading", tags=["trading"])

DENIED = errors(403, denied="account")
LIMIT = Query(100, ge=1, le=1000)
# What a write that trades or moves cash can answer: a quantity, price or amount that is not > 0 (400), a
# foreign account (403), too little cash or position, an inactive account or a reused idempotency key (409).
LEDGER_ERRORS = errors(400, 403, 409, denied="account", codes={400: "INVALID_ARGUMENT", 409: "INSUFFICIENT_FUNDS"})
ORDER_ERRORS = errors(403, 404, 409, denied="account", codes={404: "ORDER_NOT_FOUND", 409: "ORDER_INVALID_TRANSITION"})


def _order_answer(placed: OrderPlacedOut) -> Any:
    """201 for a new order (filled or pending); 200 when a repeated key answers it again."""
    return ok(placed, status=200 if placed.idempotent else 201)


# --- accounts -------------------------------------------------------------------------------------------------


@router.get("/accounts", response_model=Envelope[list[AccountOut]])
async def list_accounts(user: CurrentUser, platform: PlatformDep):
    return ok(await trading.list_accounts(platform, user))


@router.post(
    "/accounts",
    status_code=201,
    response_model=Envelope[AccountOut],
    responses=errors(400, 502, 503, 504, codes={400: "BROKER_CREDENTIALS_INVALID"}),
)
async def create_account(body: AccountIn, user: CurrentUser, platform: PlatformDep):
    """An active paper account; a positive ``initialCapital`` is recorded as its first deposit. With
    ``broker: "alpaca"``, ``apiKey`` and ``secretKey`` are an Alpaca paper account's: checked there now (400
    ``BROKER_CREDENTIALS_INVALID`` if refused), kept sealed and never shown; its cash there is its first
    deposit, and its orders go to Alpaca."""
    created = await trading.create_account(platform, user, body)
    return ok(created, status=201)


@router.get("/accounts/aggregate", response_model=Envelope[AggregateOut])
async def aggregate(user: CurrentUser, platform: PlatformDep):
    """Totals over the user's accounts."""
    return ok(await analytics.aggregate(platform, user))


@router.get("/accounts/filter-config", response_model=Envelope[FilterConfigOut])
async def filter_config(user: CurrentUser, platform: PlatformDep):
    """Counts and ranges over the user's accounts, for the accounts page's filters."""
    return ok(await analytics.filter_config(platform, user))


@router.get("/accounts/{account_id}", response_model=Envelope[AccountOut], responses=DENIED)
async def get_account(account_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await trading.get_account(platform, user, account_id))


@router.put("/accounts/{account_id}", response_model=Envelope[AccountOut], responses=DENIED)
async def update_account(account_id: str, body: AccountUpdateIn, user: CurrentUser, platform: PlatformDep):
    """Rename, activate or deactivate (an inactive account neither trades nor moves cash), or set slippage."""
    updated = await trading.update_account(
        platform, user, account_id, name=body.account_name, is_active=body.is_active, slippage_bps=body.slippage_bps
    )
    return ok(updated)


# --- fills and orders -----------------------------------------------------------------------------------------


@router.post("/accounts/{account_id}/buy", response_model=Envelope[OrderPlacedOut], responses=LEDGER_ERRORS)
async def buy(account_id: str, body: TradeIn, user: CurrentUser, platform: PlatformDep):
    """Buy now: the order, its trade, the cash flow and the position in one transaction. A broker account's
    order is sent to the broker and answered pending; its fill is written when the broker reports it."""
    placed = await trading.buy_or_sell(
        platform, user, account_id, "BUY", body.symbol, body.quantity, body.price, body.idempotency_key
    )
    return ok(placed)


@router.post(
    "/accounts/{account_id}/sell",
    response_model=Envelope[OrderPlacedOut],
    responses=errors(400, 403, 409, denied="account", codes={400: "INVALID_ARGUMENT", 409: "INSUFFICIENT_POSITION"}),
)
async def sell(account_id: str, body: TradeIn, user: CurrentUser, platform: PlatformDep):
    """Sell now: the order, its trade, the cash flow and the position in one transaction. A broker account's
    order is sent to the broker and answered pending; its fill is written when the broker reports it."""
    placed = await trading.buy_or_sell(
        platform, user, account_id, "SELL", body.symbol, body.quantity, body.price, body.idempotency_key
    )
    return ok(placed)


@router.post(
    "/accounts/{account_id}/orders", status_code=201, response_model=Envelope[OrderPlacedOut], responses=LEDGER_ERRORS
)
async def place_order(account_id: str, body: OrderIn, user: CurrentUser, platform: PlatformDep):
    """A limit order (with ``price``), pending until the market reaches it; or a market order, filled now."""
    placed = await trading.place_order(
        platform, user, account_id, body.side, body.symbol, body.quantity, body.price, body.idempotency_key
    )
    return _order_answer(placed)


@router.get("/accounts/{account_id}/orders", response_model=Envelope[list[OrderOut]], responses=DENIED)
async def list_orders(
    account_id: str, user: CurrentUser, platform: PlatformDep, status: OrderStatus | None = None, limit: int = LIMIT
):
    return ok(await trading.orders(platform, user, account_id, status=status, limit=limit))


@router.get("/accounts/{account_id}/orders/{order_id}", response_model=Envelope[OrderOut], responses=ORDER_ERRORS)
async def get_order(account_id: str, order_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await trading.get_order(platform, user, account_id, order_id))


@router.patch(
    "/accounts/{account_id}/orders/{order_id}",
    response_model=Envelope[OrderOut],
    responses={**ORDER_ERRORS, **errors(400, codes={400: "INVALID_ARGUMENT"})},
)
async def update_order(account_id: str, order_id: str, body: OrderUpdateIn, user: CurrentUser, platform: PlatformDep):
    """A pending order's quantity or limit price."""
    return ok(await trading.update_order(platform, user, account_id, order_id, body.quantity, body.price))


@router.delete(
    "/accounts/{account_id}/orders/{order_id}", response_model=Envelope[OrderDeletedOut], responses=ORDER_ERRORS
)
async def delete_order(account_id: str, order_id: str, user: CurrentUser, platform: PlatformDep):
    """An order that never filled (a filled one is part of the ledger: 409)."""
    await trading.delete_order(platform, user, account_id, order_id)
    return ok(OrderDeletedOut(order_id=order_id), message="order deleted")


@router.post(
    "/accounts/{account_id}/orders/{order_id}/fill",
    response_model=Envelope[FillOut],
    responses={**ORDER_ERRORS, **errors(400, codes={400: "INVALID_ARGUMENT"})},
)
async def fill_order(
    account_id: str, order_id: str, user: CurrentUser, platform: PlatformDep, body: FillIn | None = None
):
    """A pending order filled now (at ``price``, or its limit price), with a buy's or sell's checks and writes."""
    price = body.price if body else None
    return ok(await trading.fill_order(platform, user, account_id, order_id, price))


@router.post(
    "/accounts/{account_id}/orders/{order_id}/cancel", response_model=Envelope[OrderOut], responses=ORDER_ERRORS
)
async def cancel_order(account_id: str, order_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await trading.cancel_order(platform, user, account_id, order_id))


# --- trades, cash and positions -------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/trades", response_model=Envelope[list[TradeOut]], responses=DENIED)
async def list_trades(account_id: str, user: CurrentUser, platform: PlatformDep, limit: int = LIMIT):
    return ok(await trading.trades(platform, user, account_id, limit=limit))


@router.get("/accounts/{account_id}/trades/pending", response_model=Envelope[list[OrderOut]], responses=DENIED)
async def pending_trades(account_id: str, user: CurrentUser, platform: PlatformDep, limit: int = LIMIT):
    """The account's pending orders."""
    return ok(await trading.orders(platform, user, account_id, status="pending", limit=limit))


@router.get(
    "/accounts/{account_id}/trades/{trade_id}",
    response_model=Envelope[TradeOut],
    responses=errors(403, 404, denied="account", codes={404: "TRADE_NOT_FOUND"}),
)
async def get_trade(account_id: str, trade_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await trading.get_trade(platform, user, account_id, trade_id))


@router.get("/accounts/{account_id}/cash-flows", response_model=Envelope[list[CashFlowOut]], responses=DENIED)
async def list_cash_flows(account_id: str, user: CurrentUser, platform: PlatformDep, limit: int = LIMIT):
    return ok(await trading.cash_flows(platform, user, account_id, limit=limit))


@router.post("/accounts/{account_id}/deposit", response_model=Envelope[CashMovedOut], responses=LEDGER_ERRORS)
async def deposit(account_id: str, body: CashIn, user: CurrentUser, platform: PlatformDep):
    return ok(await trading.deposit(platform, user, account_id, body.amount, body.idempotency_key))


@router.post("/accounts/{account_id}/withdraw", response_model=Envelope[CashMovedOut], responses=LEDGER_ERRORS)
async def withdraw(account_id: str, body: CashIn, user: CurrentUser, platform: PlatformDep):
    """At most the cash held (409 ``INSUFFICIENT_FUNDS``)."""
    return ok(await trading.withdraw(platform, user, account_id, body.amount, body.idempotency_key))


@router.get("/accounts/{account_id}/positions", response_model=Envelope[list[PositionOut]], responses=DENIED)
async def list_positions(account_id: str, user: CurrentUser, platform: PlatformDep):
    """The open positions (quantity above zero), by symbol."""
    return ok(await trading.positions(platform, user, account_id))


@router.get(
    "/accounts/{account_id}/positions/{symbol}",
    response_model=Envelope[PositionOut],
    responses=errors(403, 404, 422, denied="account", codes={404: "POSITION_NOT_FOUND"}),
)
async def get_position(account_id: str, symbol: Symbol, user: CurrentUser, platform: PlatformDep):
    return ok(await trading.position(platform, user, account_id, symbol))


# --- analytics ------------------------------------------------------------------------------------------------


@router.get("/accounts/{account_id}/overview", response_model=Envelope[OverviewOut], responses=DENIED)
async def overview(account_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(analytics.overview(await analytics.book(platform, user, account_id)))


@router.get("/accounts/{account_id}/summary", response_model=Envelope[SummaryOut], responses=DENIED)
async def summary(account_id: str, user: CurrentUser, platform: PlatformDep):
    """The overview with the account, its net deposits and its profit over them."""
    return ok(analytics.summary(await analytics.book(platform, user, account_id)))


@router.get("/accounts/{account_id}/position-summary", response_model=Envelope[PositionSummaryOut], responses=DENIED)
async def position_summary(account_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(analytics.position_summary(await analytics.book(platform, user, account_id)))


@router.get(
    "/accounts/{account_id}/position-analysis", response_model=Envelope[list[PositionAnalysisOut]], responses=DENIED
)
async def position_analysis(account_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(analytics.position_analysis(await analytics.book(platform, user, account_id)))


@router.get("/accounts/{account_id}/trade-stats", response_model=Envelope[TradeStatsOut], responses=DENIED)
async def trade_stats(account_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(analytics.trade_stats(await analytics.book(platform, user, account_id)))


@router.get("/accounts/{account_id}/risk-metrics", response_model=Envelope[RiskMetricsOut], responses=DENIED)
async def risk_metrics(account_id: str, user: CurrentUser, platform: PlatformDep):
    """riskScore = min(100, exposureRatio·60 + pnlPenalty·30 + pendingOrderRatio·10); low < 30 ≤ medium < 70."""
    return ok(analytics.risk_metrics(await analytics.book(platform, user, account_id)))


@router.get("/accounts/{account_id}/equity-curve", response_model=Envelope[list[EquityPointOut]], responses=DENIED)
async def equity_curve(
    account_id: str,
    user: CurrentUser,
    platform: PlatformDep,
    limit: int = Query(analytics.MAX_CURVE_POINTS, ge=1, le=analytics.MAX_CURVE_POINTS),
):
    """One point per cash flow, oldest first: cash, positions at their last trade price, equity."""
    return ok(await analytics.equity_curve(platform, user, account_id, limit))


@router.get("/accounts/{account_id}/cash-flows/summary", response_model=Envelope[CashFlowSummaryOut], responses=DENIED)
async def cash_flow_summary(account_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await analytics.cash_flow_summary(platform, user, account_id))


@router.get(
    "/accounts/{account_id}/risk-assessment",
    response_model=Envelope[RiskAssessmentOut],
    responses={**DENIED, **errors(202, codes={202: "RISK_ASSESSMENT_PENDING"})},
)
async def risk_assessment(account_id: str, user: CurrentUser, platform: PlatformDep):
    """The latest assessment; 202 ``RISK_ASSESSMENT_PENDING`` (an error envelope) until one is evaluated."""
    return ok(await analytics.latest_assessment(platform, user, account_id))


@router.post(
    "/accounts/{account_id}/risk-assessment/evaluate", response_model=Envelope[RiskAssessmentOut], responses=DENIED
)
async def evaluate_risk_assessment(account_id: str, user: CurrentUser, platform: PlatformDep):
    """Assess the account now and keep it as its latest assessment."""
    return ok(await analytics.evaluate_assessment(platform, user, account_id))


# --- daily statistics and ops ---------------------------------------------------------------------------------


@router.get("/stats/daily", response_model=Envelope[list[DailyStatOut]], responses=DENIED)
async def daily_stats(
    user: CurrentUser,
    platform: PlatformDep,
    day: date | None = Query(None, alias="date", description="the day (UTC); today when omitted"),
    account_id: str | None = Query(None, alias="accountId", max_length=36),
):
    """The day's stored statistics (``trading_daily_stats_calculate``) of one of the caller's accounts, or of
    each; an account without them that day is absent."""
    return ok(await ops.daily_stats(platform, user, day, account_id))


ADMIN_ONLY = errors(403, codes={403: "ADMIN_REQUIRED"})
# A repeated idempotency key with another request (409), Temporal unreachable (503).
TASK_ERRORS = errors(
    403,
    409,
    422,
    503,
    codes={403: "ADMIN_REQUIRED", 409: "IDEMPOTENCY_CONFLICT", 503: "TASK_ORCHESTRATION_UNAVAILABLE"},
)
TASK_REPEAT: dict[int | str, Any] = {
    200: {"model": Envelope[JobOut], "description": "An idempotent repeat: the job this key already made"}
}


def _accepted(job: Any, created: bool) -> Any:
    """202 for a new job; 200 when a repeated idempotency key answers the job it made."""
    return ok(JobOut.of(job), status=202 if created else 200, message="accepted" if created else "ok")


@router.get("/ops/pending-orders", response_model=Envelope[list[OrderOut]], responses=ADMIN_ONLY)
async def ops_pending_orders(user: CurrentUser, platform: PlatformDep, limit: int = LIMIT):
    """Every account's pending orders, oldest first."""
    return ok(await ops.pending_orders(platform, user, limit))


@router.post(
    "/ops/refresh-prices",
    response_model=Envelope[RefreshedOut],
    responses=errors(400, 403, codes={400: "INVALID_ARGUMENT", 403: "ADMIN_REQUIRED"}),
)
async def ops_refresh_prices(body: RefreshPricesIn, user: CurrentUser, platform: PlatformDep):
    """Open positions in these symbols marked at these prices now (in ``accountId``, or in every account)."""
    return ok(await ops.refresh_prices(platform, user, body.price_updates, body.account_id))


@router.post(
    "/ops/refresh-prices/task",
    status_code=202,
    response_model=Envelope[JobOut],
    responses={**TASK_REPEAT, **TASK_ERRORS},
)
async def ops_refresh_prices_task(body: RefreshPricesTaskIn, user: CurrentUser, platform: PlatformDep):
    """A ``trading_refresh_prices`` job: these prices, or the latest quote of every symbol held."""
    payload = body.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"}, exclude_none=True)
    return _accepted(*await ops.submit(platform, user, ops.REFRESH, payload, body.idempotency_key))


@router.post(
    "/ops/pending/process-task",
    status_code=202,
    response_model=Envelope[JobOut],
    responses={**TASK_REPEAT, **TASK_ERRORS},
)
async def ops_pending_process_task(user: CurrentUser, platform: PlatformDep, body: PendingProcessTaskIn | None = None):
    """A ``trading_pending_process`` job: pending limit orders filled where the market reached their price."""
    request = body or PendingProcessTaskIn()
    payload = request.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
    return _accepted(*await ops.submit(platform, user, ops.PENDING, payload, request.idempotency_key))


@router.post(
    "/ops/daily-stats/calculate-task",
    status_code=202,
    response_model=Envelope[JobOut],
    responses={**TASK_REPEAT, **TASK_ERRORS},
)
async def ops_daily_stats_task(user: CurrentUser, platform: PlatformDep, body: DailyStatsTaskIn | None = None):
    """A ``trading_daily_stats_calculate`` job: each account's book at the end of the day, stored."""
    request = body or DailyStatsTaskIn()
    payload = request.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"}, exclude_none=True)
    return _accepted(*await ops.submit(platform, user, ops.DAILY_STATS, payload, request.idempotency_key))


@router.post(
    "/ops/batch/execute-task",
    status_code=202,
    response_model=Envelope[JobOut],
    responses={**TASK_REPEAT, **TASK_ERRORS},
)
async def ops_batch_execute_task(body: BatchExecuteTaskIn, user: CurrentUser, platform: PlatformDep):
    """A ``trading_batch_execute`` job: trades on any accounts, each filled or failed (with why) in its account's
    transaction, in the order given."""
    payload = body.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
    return _accepted(*await ops.submit(platform, user, ops.BATCH, payload, body.idempotency_key))


@router.post(
    "/ops/risk/monitor-task",
    status_code=202,
    response_model=Envelope[JobOut],
    responses={**TASK_REPEAT, **TASK_ERRORS},
)
async def ops_risk_monitor_task(user: CurrentUser, platform: PlatformDep, body: RiskMonitorTaskIn | None = None):
    """A ``trading_risk_monitor`` job: each account's risk assessed and stored as its latest."""
    request = body or RiskMonitorTaskIn()
    payload = request.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"}, exclude_none=True)
    return _accepted(*await ops.submit(platform, user, ops.RISK_MONITOR, payload, request.idempotency_key))


@router.post(
    "/ops/accounts/cleanup-task",
    status_code=202,
    response_model=Envelope[JobOut],
    responses={**TASK_REPEAT, **TASK_ERRORS},
)
async def ops_account_cleanup_task(user: CurrentUser, platform: PlatformDep, body: AccountCleanupTaskIn | None = None):
    """A ``trading_account_cleanup`` job: inactive accounts without activity for ``daysThreshold`` days deleted
    with their ledger. Destructive, so confirmed: the first request answers 409 ``CONFIRMATION_REQUIRED`` with a
    ``confirmationToken`` (single use, this admin and this request, five minutes); the same request with it
    starts the job."""
    request = body or AccountCleanupTaskIn()
    payload = request.model_dump(
        mode="json", by_alias=True, exclude={"idempotency_key", "confirmation_token"}, exclude_none=True
    )
    job, created = await ops.cleanup(platform, user, payload, request.confirmation_token, request.idempotency_key)
    return _accepted(job, created)


@router.get(
    "/ops/tasks/{task_id}",
    response_model=Envelope[JobOut],
    responses=errors(403, 404, codes={403: "ADMIN_REQUIRED", 404: "TASK_NOT_FOUND"}),
)
async def ops_task(task_id: str, user: CurrentUser, platform: PlatformDep):
    """A job of the ledger's kinds, whoever started it."""
    return ok(JobOut.of(await ops.task(platform, user, task_id)))
