"""`quantpoly trading ...`: paper-trading accounts, orders, cash, positions, analytics and ops, through the same
services the /trading routes use. Amounts are read as exact decimals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import click
from pydantic import ValidationError

from cli import context
from cli.jobs import find_user, follow, user_option, wait_option
from cli.output import command_runner, emit
from core.errors import Conflict
from services import jobs, trading
from services import trading_analytics as analytics
from services import trading_ops as ops
from services.platform import Platform
from services.schemas.jobs import JobOut
from services.schemas.trading import AccountIn

key_option = click.option(
    "--idempotency-key", default=None, help="Repeat-safe key: the same key and request answer once."
)


class DecimalType(click.ParamType):
    name = "decimal"

    def convert(self, value: Any, param: Any, ctx: Any) -> Decimal:
        try:
            return value if isinstance(value, Decimal) else Decimal(str(value))
        except InvalidOperation:
            self.fail(f"{value!r} is not a number", param, ctx)


DECIMAL = DecimalType()


def _prices(pairs: tuple[str, ...]) -> dict[str, Decimal]:
    """SYMBOL=PRICE pairs."""
    prices = {}
    for pair in pairs:
        symbol, sep, price = pair.partition("=")
        if not sep or not symbol:
            raise click.BadParameter(f"expected SYMBOL=PRICE, got {pair!r}", param_hint="--price")
        prices[symbol.strip().upper()] = DECIMAL.convert(price, None, None)
    return prices


async def _as_user(email: str, work: Callable[[Platform, Any], Awaitable[Any]], *, temporal: bool = False) -> None:
    """Run ``work(platform, user)`` for the account of ``email`` and print what it returns."""
    async with context.platform(need_temporal=temporal) as platform:
        emit(await work(platform, await find_user(platform, email)))


@click.group("trading")
def trading_group() -> None:
    """Paper trading: accounts, orders and fills, cash, positions, analytics, and the ledger's ops (admins)."""


# --- accounts -------------------------------------------------------------------------------------------------


@trading_group.command("accounts")
@user_option
@command_runner
async def accounts(user_email) -> None:
    """The user's accounts, oldest first."""
    await _as_user(user_email, trading.list_accounts)


@trading_group.command("account-create")
@user_option
@click.option("--name", required=True)
@click.option("--capital", type=DECIMAL, default=None, help="Initial capital, recorded as a deposit (paper only).")
@click.option("--slippage-bps", type=DECIMAL, default=Decimal(0), show_default=True)
@click.option(
    "--broker",
    type=click.Choice(["paper", "alpaca"]),
    default="paper",
    show_default=True,
    help="alpaca: orders go to Alpaca paper trading with the account's own keys (asked for, not echoed).",
)
@command_runner
async def account_create(user_email, name, capital, slippage_bps, broker) -> None:
    """Open an active paper account, or one trading at Alpaca's paper broker."""
    keys: dict[str, str] = {}
    if broker == "alpaca":
        # Prompted, never taken as options: they would stay in the shell's history and the process list.
        keys["apiKey"] = click.prompt("Alpaca paper API key", hide_input=True)
        keys["secretKey"] = click.prompt("Alpaca paper secret key", hide_input=True)
    try:
        request = AccountIn.model_validate(
            {"accountName": name, "initialCapital": capital, "slippageBps": slippage_bps, "broker": broker, **keys}
        )
    except ValidationError as error:  # its message only: the input may be a key
        raise click.UsageError(f"{'.'.join(map(str, error.errors()[0]['loc']))}: {error.errors()[0]['msg']}") from None
    await _as_user(user_email, lambda p, u: trading.create_account(p, u, request))


@trading_group.command("account-show")
@user_option
@click.argument("account_id")
@command_runner
async def account_show(user_email, account_id) -> None:
    """One account."""
    await _as_user(user_email, lambda p, u: trading.get_account(p, u, account_id))


@trading_group.command("account-update")
@user_option
@click.argument("account_id")
@click.option("--name", default=None)
@click.option("--active/--inactive", default=None, help="An inactive account neither trades nor moves cash.")
@click.option("--slippage-bps", type=DECIMAL, default=None)
@command_runner
async def account_update(user_email, account_id, name, active, slippage_bps) -> None:
    """Rename, activate or deactivate, or set the slippage."""
    await _as_user(
        user_email,
        lambda p, u: trading.update_account(p, u, account_id, name=name, is_active=active, slippage_bps=slippage_bps),
    )


# --- orders and fills -----------------------------------------------------------------------------------------


def _fill_command(name: str, side: str) -> None:
    @trading_group.command(
        name,
        help=f"{side.title()} now: the order, its trade, the cash flow and the position (a broker account's order "
        "is sent to the broker, and filled when it says so).",
    )
    @user_option
    @click.argument("account_id")
    @click.argument("symbol")
    @click.argument("quantity", type=DECIMAL)
    @click.option("--price", type=DECIMAL, default=None, help="Without it: the latest quote and the slippage.")
    @key_option
    @command_runner
    async def command(user_email, account_id, symbol, quantity, price, idempotency_key) -> None:
        await _as_user(
            user_email,
            lambda p, u: trading.buy_or_sell(
                p, u, account_id, side, symbol.strip().upper(), quantity, price, idempotency_key
            ),
        )


_fill_command("buy", "BUY")
_fill_command("sell", "SELL")


@trading_group.command("order-create")
@user_option
@click.argument("account_id")
@click.argument("symbol")
@click.argument("side", type=click.Choice(["BUY", "SELL"], case_sensitive=False))
@click.argument("quantity", type=DECIMAL)
@click.option("--price", type=DECIMAL, default=None, help="A limit order's price; without it a market order.")
@key_option
@command_runner
async def order_create(user_email, account_id, symbol, side, quantity, price, idempotency_key) -> None:
    """A limit order, pending until the market reaches its price; or a market order, filled now."""
    await _as_user(
        user_email,
        lambda p, u: trading.place_order(
            p, u, account_id, side.upper(), symbol.strip().upper(), quantity, price, idempotency_key
        ),
    )


@trading_group.command("orders")
@user_option
@click.argument("account_id")
@click.option("--status", type=click.Choice(["pending", "filled", "cancelled", "failed"]), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@command_runner
async def orders(user_email, account_id, status, limit) -> None:
    """The account's orders, newest first."""
    await _as_user(user_email, lambda p, u: trading.orders(p, u, account_id, status=status, limit=limit))


@trading_group.command("order-show")
@user_option
@click.argument("account_id")
@click.argument("order_id")
@command_runner
async def order_show(user_email, account_id, order_id) -> None:
    """One order."""
    await _as_user(user_email, lambda p, u: trading.get_order(p, u, account_id, order_id))


@trading_group.command("order-update")
@user_option
@click.argument("account_id")
@click.argument("order_id")
@click.option("--quantity", type=DECIMAL, default=None)
@click.option("--price", type=DECIMAL, default=None)
@command_runner
async def order_update(user_email, account_id, order_id, quantity, price) -> None:
    """A pending order's quantity or limit price."""
    await _as_user(user_email, lambda p, u: trading.update_order(p, u, account_id, order_id, quantity, price))


@trading_group.command("order-fill")
@user_option
@click.argument("account_id")
@click.argument("order_id")
@click.option("--price", type=DECIMAL, default=None, help="Default: the order's limit price.")
@command_runner
async def order_fill(user_email, account_id, order_id, price) -> None:
    """Fill a pending order now, with a buy's or sell's checks."""
    await _as_user(user_email, lambda p, u: trading.fill_order(p, u, account_id, order_id, price))


@trading_group.command("order-cancel")
@user_option
@click.argument("account_id")
@click.argument("order_id")
@command_runner
async def order_cancel(user_email, account_id, order_id) -> None:
    """Cancel a pending order."""
    await _as_user(user_email, lambda p, u: trading.cancel_order(p, u, account_id, order_id))


@trading_group.command("order-delete")
@user_option
@click.argument("account_id")
@click.argument("order_id")
@command_runner
async def order_delete(user_email, account_id, order_id) -> None:
    """Delete an order that never filled."""

    async def delete(platform: Platform, user: Any) -> dict[str, Any]:
        await trading.delete_order(platform, user, account_id, order_id)
        return {"order_id": order_id, "deleted": True}

    await _as_user(user_email, delete)


# --- cash, positions, trades ----------------------------------------------------------------------------------


def _cash_command(name: str, move: Callable[..., Awaitable[Any]], doc: str) -> None:
    @trading_group.command(name, help=doc)
    @user_option
    @click.argument("account_id")
    @click.argument("amount", type=DECIMAL)
    @key_option
    @command_runner
    async def command(user_email, account_id, amount, idempotency_key) -> None:
        await _as_user(user_email, lambda p, u: move(p, u, account_id, amount, idempotency_key))


_cash_command("deposit", trading.deposit, "Add cash.")
_cash_command("withdraw", trading.withdraw, "Take cash out, at most what the account holds.")


def _read_command(name: str, read: Callable[..., Awaitable[Any]], doc: str, **limit: int) -> None:
    """A command that prints one of the account's reads."""

    @trading_group.command(name, help=doc)
    @user_option
    @click.argument("account_id")
    @command_runner
    async def command(user_email, account_id) -> None:
        await _as_user(user_email, lambda p, u: read(p, u, account_id, **limit))


_read_command("positions", trading.positions, "The open positions, by symbol.")
_read_command("trades", trading.trades, "The account's trades, newest first.", limit=1000)
_read_command("cash-flows", trading.cash_flows, "The account's cash flows, newest first.", limit=1000)
_read_command("cash-flow-summary", analytics.cash_flow_summary, "Inflow, outflow and net flow.")
_read_command("equity-curve", analytics.equity_curve, "One point per cash flow.", limit=analytics.MAX_CURVE_POINTS)
_read_command("risk-assessment", analytics.latest_assessment, "The latest risk assessment.")
_read_command("risk-evaluate", analytics.evaluate_assessment, "Assess the account's risk now and keep it.")


def _book_command(name: str, view: Callable[[analytics.Book], Any], doc: str) -> None:
    """A command that prints a view of the account's book."""

    @trading_group.command(name, help=doc)
    @user_option
    @click.argument("account_id")
    @command_runner
    async def command(user_email, account_id) -> None:
        await _as_user(user_email, lambda p, u: _viewed(p, u, account_id, view))


async def _viewed(platform: Platform, user: Any, account_id: str, view: Callable[[analytics.Book], Any]) -> Any:
    return view(await analytics.book(platform, user, account_id))


_book_command("overview", analytics.overview, "Cash, positions, orders and trades at a glance.")
_book_command("summary", analytics.summary, "The overview with net deposits and the profit over them.")
_book_command("position-summary", analytics.position_summary, "Count, market value and unrealized profit.")
_book_command("position-analysis", analytics.position_analysis, "Each position's value, profit and weight.")
_book_command("trade-stats", analytics.trade_stats, "Trade count, turnover and realized profit.")
_book_command("risk-metrics", analytics.risk_metrics, "The reference's risk score and its parts.")


@trading_group.command("position")
@user_option
@click.argument("account_id")
@click.argument("symbol")
@command_runner
async def position(user_email, account_id, symbol) -> None:
    """The account's position in a symbol."""
    await _as_user(user_email, lambda p, u: trading.position(p, u, account_id, symbol.strip().upper()))


@trading_group.command("aggregate")
@user_option
@command_runner
async def aggregate(user_email) -> None:
    """Totals over the user's accounts."""
    await _as_user(user_email, analytics.aggregate)


@trading_group.command("filter-config")
@user_option
@command_runner
async def filter_config(user_email) -> None:
    """Counts and ranges over the user's accounts."""
    await _as_user(user_email, analytics.filter_config)


@trading_group.command("stats-daily")
@user_option
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Default: today (UTC).")
@click.option("--account", "account_id", default=None)
@command_runner
async def stats_daily(user_email, day, account_id) -> None:
    """The stored daily statistics of the user's accounts."""
    wanted: date | None = day.date() if day else None
    await _as_user(user_email, lambda p, u: ops.daily_stats(p, u, wanted, account_id))


# --- ops (admins) ---------------------------------------------------------------------------------------------


@trading_group.command("ops-pending-orders")
@user_option
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@command_runner
async def ops_pending_orders(user_email, limit) -> None:
    """Every account's pending orders, oldest first."""
    await _as_user(user_email, lambda p, u: ops.pending_orders(p, u, limit))


@trading_group.command("ops-refresh-prices")
@user_option
@click.option("--price", "prices", multiple=True, required=True, metavar="SYMBOL=PRICE")
@click.option("--account", "account_id", default=None, help="Only this account's positions.")
@command_runner
async def ops_refresh_prices(user_email, prices, account_id) -> None:
    """Mark open positions at these prices now."""
    await _as_user(user_email, lambda p, u: ops.refresh_prices(p, u, _prices(prices), account_id))


async def _ops_task(email: str, task_type: str, payload: dict[str, Any], key: str | None, wait: bool) -> None:
    async with context.platform() as platform:
        user = await find_user(platform, email)
        job, _ = await ops.submit(platform, user, task_type, payload, key)
        if wait:
            await follow(platform, user, job.id)
            job = await jobs.get(platform, user, job.id)
    emit(JobOut.of(job))


@trading_group.command("ops-refresh-prices-task")
@user_option
@wait_option
@click.option("--price", "prices", multiple=True, metavar="SYMBOL=PRICE", help="Default: the latest quotes.")
@click.option("--account", "account_id", default=None)
@key_option
@command_runner
async def ops_refresh_prices_task(user_email, wait, prices, account_id, idempotency_key) -> None:
    """Start a trading_refresh_prices job."""
    payload: dict[str, Any] = {"priceUpdates": {s: str(v) for s, v in _prices(prices).items()}} if prices else {}
    if account_id:
        payload["accountId"] = account_id
    await _ops_task(user_email, ops.REFRESH, payload, idempotency_key, wait)


@trading_group.command("ops-pending-process-task")
@user_option
@wait_option
@click.option("--max-trades", type=click.IntRange(1, 10_000), default=100, show_default=True)
@key_option
@command_runner
async def ops_pending_process_task(user_email, wait, max_trades, idempotency_key) -> None:
    """Start a trading_pending_process job."""
    await _ops_task(user_email, ops.PENDING, {"maxTrades": max_trades}, idempotency_key, wait)


@trading_group.command("ops-daily-stats-task")
@user_option
@wait_option
@click.option("--account", "account_ids", multiple=True, help="Default: every account.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Default: today (UTC).")
@key_option
@command_runner
async def ops_daily_stats_task(user_email, wait, account_ids, day, idempotency_key) -> None:
    """Start a trading_daily_stats_calculate job."""
    payload: dict[str, Any] = {}
    if account_ids:
        payload["accountIds"] = list(account_ids)
    if day:
        payload["targetDate"] = day.date().isoformat()
    await _ops_task(user_email, ops.DAILY_STATS, payload, idempotency_key, wait)


def _trade_requests(specs: tuple[str, ...]) -> list[dict[str, Any]]:
    """ACCOUNT_ID:SYMBOL:SIDE:QUANTITY[:PRICE] specs."""
    requests = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (4, 5) or parts[2].upper() not in ("BUY", "SELL"):
            raise click.BadParameter(f"expected ACCOUNT_ID:SYMBOL:BUY|SELL:QUANTITY[:PRICE], got {spec!r}")
        request = {"accountId": parts[0], "symbol": parts[1], "side": parts[2].upper(), "quantity": parts[3]}
        if len(parts) == 5:
            request["price"] = parts[4]
        requests.append(request)
    return requests


@trading_group.command("ops-batch-execute-task")
@user_option
@wait_option
@click.option("--trade", "trades", multiple=True, required=True, metavar="ACCOUNT_ID:SYMBOL:SIDE:QUANTITY[:PRICE]")
@key_option
@command_runner
async def ops_batch_execute_task(user_email, wait, trades, idempotency_key) -> None:
    """Start a trading_batch_execute job: the trades in the order given."""
    await _ops_task(user_email, ops.BATCH, {"tradeRequests": _trade_requests(trades)}, idempotency_key, wait)


@trading_group.command("ops-risk-monitor-task")
@user_option
@wait_option
@click.option("--account", "account_ids", multiple=True, help="Default: every account.")
@key_option
@command_runner
async def ops_risk_monitor_task(user_email, wait, account_ids, idempotency_key) -> None:
    """Start a trading_risk_monitor job."""
    payload = {"accountIds": list(account_ids)} if account_ids else {}
    await _ops_task(user_email, ops.RISK_MONITOR, payload, idempotency_key, wait)


@trading_group.command("ops-account-cleanup-task")
@user_option
@wait_option
@click.option("--account", "account_ids", multiple=True, help="Default: every inactive account.")
@click.option("--days", "days_threshold", type=click.IntRange(1, 36_500), default=90, show_default=True)
@click.option("--yes", is_flag=True, help="Confirm without asking.")
@key_option
@command_runner
async def ops_account_cleanup_task(user_email, wait, account_ids, days_threshold, yes, idempotency_key) -> None:
    """Start a trading_account_cleanup job: inactive accounts without activity for --days deleted, once confirmed."""
    payload: dict[str, Any] = {"daysThreshold": days_threshold}
    if account_ids:
        payload["accountIds"] = list(account_ids)
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        try:
            job, _ = await ops.cleanup(platform, user, payload, None, idempotency_key)
        except Conflict as asked:
            if asked.code != "CONFIRMATION_REQUIRED":
                raise
            if not yes:
                click.confirm("Delete these accounts and their ledgers?", abort=True, err=True)
            token = asked.details["confirmationToken"]
            job, _ = await ops.cleanup(platform, user, payload, token, idempotency_key)
        if wait:
            await follow(platform, user, job.id)
            job = await jobs.get(platform, user, job.id)
    emit(JobOut.of(job))


@trading_group.command("ops-task")
@user_option
@click.argument("task_id")
@command_runner
async def ops_task(user_email, task_id) -> None:
    """One of the ledger's jobs."""
    await _as_user(user_email, lambda p, u: _job(p, u, task_id))


async def _job(platform: Platform, user: Any, task_id: str) -> JobOut:
    return JobOut.of(await ops.task(platform, user, task_id))


def register(cli: click.Group) -> None:
    cli.add_command(trading_group)
