"""Paper-trading accounts and their ledger (reference §2.6): orders, fills, trades, cash flows and positions.

Every write to an account is one transaction under the account's row lock (FOR UPDATE; on SQLite the
transaction's write lock), so writes to one account are serialized: a fill reads the cash and the position,
checks them (``domain.ledger``) and writes the order, the trade, the cash flow and the position together, or
nothing. Unlike the reference, a fill from any route moves the position and checks funds.

A request with an idempotency key is answered once: its answer is stored in the same transaction as its
writes, and the same key with the same body gets that answer again (``idempotent: true``); with another body,
409 ``IDEMPOTENCY_CONFLICT``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AccessDenied, AppError, Conflict, InvalidInput, NotFound, ServiceUnavailable, UpstreamError
from db.models import (
    TradingAccount,
    TradingCashFlow,
    TradingOrder,
    TradingPosition,
    TradingRequest,
    TradingTrade,
    User,
)
from db.models.trading import affordable, append_flow, cash_balance, fill
from domain import broker, ledger
from integrations.alpaca_http import Credentials
from integrations.broker import AlpacaBroker, broker_box, seal_credentials
from services.market import cached_quote
from services.platform import Platform
from services.schemas.trading import (
    AccountIn,
    AccountOut,
    CashFlowOut,
    CashMovedOut,
    FillOut,
    OrderOut,
    OrderPlacedOut,
    PositionOut,
    TradeOut,
)
from workflows.dispatch import follow_order

Answer = TypeVar("Answer", bound=BaseModel)
log = logging.getLogger(__name__)


def _ledger_error(error: ledger.LedgerError) -> AppError:
    if isinstance(error, ledger.InvalidAmount):
        return InvalidInput(str(error))
    return Conflict(str(error), code=error.code)


def _order_transition(order: TradingOrder, action: str) -> Conflict:
    return Conflict(f"a {order.status} order cannot be {action}", code="ORDER_INVALID_TRANSITION")


# --- accounts -------------------------------------------------------------------------------------------------


async def owned_account(session: AsyncSession, user: User, account_id: str, *, lock: bool = False) -> TradingAccount:
    account = await session.get(TradingAccount, account_id, with_for_update=lock)
    if account is None or account.user_id != user.id:
        raise AccessDenied("account")
    return account


async def _active(session: AsyncSession, user: User, account_id: str) -> TradingAccount:
    """The caller's account, locked for a write that trades or moves cash; an inactive one does neither."""
    account = await owned_account(session, user, account_id, lock=True)
    if not account.is_active:
        raise Conflict("the account is inactive: activate it to trade or move cash", code="ACCOUNT_INACTIVE")
    return account


async def create_account(platform: Platform, user: User, request: AccountIn) -> AccountOut:
    """An active account. A paper account's positive initial capital is its first cash flow, a deposit; a broker
    account's keys are checked with the broker, sealed, and its cash at the broker is its first deposit."""
    capital, sealed = None, None
    if request.broker == broker.ALPACA:
        credentials = _broker_credentials(request)
        sealed = seal_credentials(broker_box(platform.settings), credentials)
        capital = await _broker_cash(platform, credentials)
    elif request.api_key is not None or request.secret_key is not None:
        raise InvalidInput("apiKey and secretKey belong to broker accounts only")
    elif request.initial_capital is not None and request.initial_capital != 0:
        capital = checked(ledger.positive, request.initial_capital, "initialCapital")
    account = TradingAccount(
        user_id=user.id,
        account_name=request.account_name,
        is_active=True,
        slippage_bps=request.slippage_bps,
        broker=request.broker,
        broker_credentials=sealed,
    )
    async with platform.db.session() as session:
        session.add(account)
        await session.flush()
        if capital is not None and capital > 0:
            await append_flow(session, account, capital, ledger.DEPOSIT)
    return AccountOut.model_validate(account)


def _broker_credentials(request: AccountIn) -> Credentials:
    if request.api_key is None or request.secret_key is None:
        raise InvalidInput("a broker account needs the apiKey and secretKey of its Alpaca paper account")
    if request.initial_capital is not None and request.initial_capital != 0:
        raise InvalidInput("a broker account's cash is its cash at the broker: initialCapital does not apply")
    return Credentials(request.api_key.get_secret_value(), request.secret_key.get_secret_value())


async def _broker_cash(platform: Platform, credentials: Credentials) -> Decimal:
    """The cash of the paper account the keys open; keys the broker refuses are a 400."""
    try:
        found = await asyncio.to_thread(lambda: AlpacaBroker(credentials, platform.settings).account())
    except UpstreamError as error:
        if error.code == "UPSTREAM_AUTH_FAILED":
            raise InvalidInput(
                "Alpaca refused these keys: give the API key and secret of an Alpaca paper trading account",
                code="BROKER_CREDENTIALS_INVALID",
            ) from None
        raise
    return found.cash


async def accounts_of(session: AsyncSession, user: User) -> list[TradingAccount]:
    """The user's accounts, oldest first."""
    rows = await session.scalars(
        select(TradingAccount)
        .where(TradingAccount.user_id == user.id)
        .order_by(TradingAccount.created_at, TradingAccount.id)
    )
    return list(rows)


async def list_accounts(platform: Platform, user: User) -> list[AccountOut]:
    async with platform.db.reading() as session:
        return [AccountOut.model_validate(row) for row in await accounts_of(session, user)]


async def get_account(platform: Platform, user: User, account_id: str) -> AccountOut:
    async with platform.db.reading() as session:
        return AccountOut.model_validate(await owned_account(session, user, account_id))


async def update_account(
    platform: Platform,
    user: User,
    account_id: str,
    *,
    name: str | None,
    is_active: bool | None,
    slippage_bps: Decimal | None,
) -> AccountOut:
    async with platform.db.session() as session:
        account = await owned_account(session, user, account_id, lock=True)
        if name is not None:
            account.account_name = name
        if is_active is not None:
            account.is_active = is_active
        if slippage_bps is not None:
            account.slippage_bps = slippage_bps
        await session.flush()
        return AccountOut.model_validate(account)


# --- cash -----------------------------------------------------------------------------------------------------


async def deposit(platform: Platform, user: User, account_id: str, amount: Decimal, key: str | None) -> CashMovedOut:
    body = {"amount": str(amount)}

    async def move(session: AsyncSession, account: TradingAccount) -> CashMovedOut:
        _paper_cash(account)
        flow = await append_flow(session, account, checked(ledger.positive, amount, "amount"), ledger.DEPOSIT)
        return CashMovedOut(cash_flow=CashFlowOut.model_validate(flow), cash_balance=flow.balance_after)

    return await _once(platform, user, account_id, "deposit", key, body, CashMovedOut, move)


async def withdraw(platform: Platform, user: User, account_id: str, amount: Decimal, key: str | None) -> CashMovedOut:
    body = {"amount": str(amount)}

    async def move(session: AsyncSession, account: TradingAccount) -> CashMovedOut:
        _paper_cash(account)
        signed = checked(ledger.withdrawal, amount, await cash_balance(session, account.id))
        flow = await append_flow(session, account, signed, ledger.WITHDRAW)
        return CashMovedOut(cash_flow=CashFlowOut.model_validate(flow), cash_balance=flow.balance_after)

    return await _once(platform, user, account_id, "withdraw", key, body, CashMovedOut, move)


def _paper_cash(account: TradingAccount) -> None:
    if account.broker != broker.PAPER:
        raise Conflict("a broker account's cash moves at the broker, not here", code="BROKER_MANAGED_CASH")


def checked(rule: Callable[..., Any], *args: Any) -> Any:
    """``rule(*args)``, a refusal of the ledger's turned into its 400 or 409 answer."""
    try:
        return rule(*args)
    except ledger.LedgerError as error:
        raise _ledger_error(error) from None


# --- fills ----------------------------------------------------------------------------------------------------


async def _fill(session: AsyncSession, account: TradingAccount, order: TradingOrder, price: Decimal) -> FillOut:
    """The order filled at ``price`` (the caller holds the account's lock); a refusal writes nothing."""
    try:
        filled = await fill(session, account, order, price)
    except ledger.LedgerError as error:
        raise _ledger_error(error) from None
    return FillOut(
        order=OrderOut.model_validate(filled.order),
        trade=TradeOut.model_validate(filled.trade),
        cash_flow=CashFlowOut.model_validate(filled.flow),
        position=PositionOut.model_validate(filled.position),
    )


def _new_order(
    account: TradingAccount, symbol: str, side: str, quantity: Decimal, price: Decimal | None
) -> TradingOrder:
    return TradingOrder(
        account_id=account.id,
        user_id=account.user_id,
        symbol=symbol,
        side=side,
        order_type=ledger.MARKET if price is None else ledger.LIMIT_ORDER,
        quantity=checked(ledger.positive, quantity, "quantity"),
        price=None if price is None else checked(ledger.positive, price, "price"),
        status=ledger.PENDING,
    )


async def trade(
    platform: Platform,
    user: User,
    account_id: str,
    side: str,
    symbol: str,
    quantity: Decimal,
    price: Decimal | None,
    key: str | None,
) -> FillOut:
    """A buy or sell filled now, at ``price`` or at the market: order, trade, cash flow and position at once."""
    body = {"symbol": symbol, "quantity": str(quantity), "price": None if price is None else str(price)}
    at = price if price is not None else await _quoted(platform, user, account_id, symbol, side)

    async def fill(session: AsyncSession, account: TradingAccount) -> FillOut:
        order = _new_order(account, symbol, side, quantity, price)
        session.add(order)
        await session.flush()
        return await _fill(session, account, order, at)

    return await _once(platform, user, account_id, side.lower(), key, body, FillOut, fill)


async def _quoted(platform: Platform, user: User, account_id: str, symbol: str, side: str) -> Decimal:
    """A market order's price, the latest quote moved by the account's slippage: read before the account's
    lock is taken (a quote may call the provider)."""
    account = await _account_of(platform, user, account_id)
    quote, _ = await cached_quote(platform, symbol)
    return ledger.slipped(side, Decimal(str(quote.price)), account.slippage_bps)


async def buy_or_sell(
    platform: Platform,
    user: User,
    account_id: str,
    side: str,
    symbol: str,
    quantity: Decimal,
    price: Decimal | None,
    key: str | None,
) -> OrderPlacedOut:
    """A paper account's buy or sell filled now (``trade``); a broker account's sent to the broker."""
    if (await _account_of(platform, user, account_id)).broker != broker.PAPER:
        return await _broker_order(platform, user, account_id, side.lower(), side, symbol, quantity, price, key)
    return _placed(await trade(platform, user, account_id, side, symbol, quantity, price, key))


async def place_order(
    platform: Platform,
    user: User,
    account_id: str,
    side: str,
    symbol: str,
    quantity: Decimal,
    price: Decimal | None,
    key: str | None,
) -> OrderPlacedOut:
    """A paper account's limit order, pending until the market reaches its price, or its market order, filled
    now; a broker account's order of either kind, sent to the broker."""
    if (await _account_of(platform, user, account_id)).broker != broker.PAPER:
        return await _broker_order(platform, user, account_id, "order", side, symbol, quantity, price, key)
    if price is None:
        return _placed(await trade(platform, user, account_id, side, symbol, quantity, None, key))
    body = {"symbol": symbol, "side": side, "quantity": str(quantity), "price": str(price)}

    async def place(session: AsyncSession, account: TradingAccount) -> OrderPlacedOut:
        order = _new_order(account, symbol, side, quantity, price)
        session.add(order)
        await session.flush()
        return OrderPlacedOut(order=OrderOut.model_validate(order))

    return await _once(platform, user, account_id, "order", key, body, OrderPlacedOut, place)


def _placed(filled: FillOut) -> OrderPlacedOut:
    return OrderPlacedOut(
        order=filled.order,
        trade=filled.trade,
        cash_flow=filled.cash_flow,
        position=filled.position,
        idempotent=filled.idempotent,
    )


async def _account_of(platform: Platform, user: User, account_id: str) -> TradingAccount:
    async with platform.db.reading() as session:
        return await owned_account(session, user, account_id)


# --- a broker account's orders --------------------------------------------------------------------------------


async def _broker_order(
    platform: Platform,
    user: User,
    account_id: str,
    action: str,
    side: str,
    symbol: str,
    quantity: Decimal,
    price: Decimal | None,
    key: str | None,
) -> OrderPlacedOut:
    """The order written pending, if the account could pay for it (or hold it) at its limit price or the latest
    quote once its other pending orders have filled; then its workflow sends it to the broker and writes its
    fill when the broker reports one."""
    body = {"symbol": symbol, "side": side, "quantity": str(quantity), "price": None if price is None else str(price)}
    estimate = price if price is not None else Decimal(str((await cached_quote(platform, symbol))[0].price))

    async def place(session: AsyncSession, account: TradingAccount) -> OrderPlacedOut:
        order = _new_order(account, symbol, side, quantity, price)
        order.estimated_price = checked(ledger.positive, estimate, "price")
        try:
            await affordable(session, account, side, symbol, order.quantity, order.estimated_price)
        except ledger.LedgerError as error:
            raise _ledger_error(error) from None
        session.add(order)
        await session.flush()
        return OrderPlacedOut(order=OrderOut.model_validate(order))

    placed = await _once(platform, user, account_id, action, key, body, OrderPlacedOut, place)
    await _follow(platform, placed.order.id, user.id)
    return placed


async def _follow(platform: Platform, order_id: str, user_id: str, *, cancel: bool = False) -> None:
    """Start the order's workflow (kept if it runs). A lost start is made good by ``trading_pending_process``;
    a cancel that cannot reach Temporal is refused."""
    try:
        await follow_order(platform.temporal, platform.settings, order_id, user_id, cancel=cancel)
    except Exception:
        if cancel:
            log.exception("could not ask the workflow of broker order %s to cancel it", order_id)
            raise ServiceUnavailable(
                "the order's workflow cannot be reached; try again", code="TASK_ORCHESTRATION_UNAVAILABLE"
            ) from None
        log.warning("could not start the workflow of broker order %s; the pending-order job will", order_id)


def _at_broker(account: TradingAccount, order: TradingOrder, action: str) -> None:
    """A pending order sent to the broker ends as the broker says: here it can only be cancelled."""
    if account.broker != broker.PAPER and order.status == ledger.PENDING:
        raise Conflict(
            f"an order sent to the broker cannot be {action} here: cancel it (and place another)",
            code="ORDER_INVALID_TRANSITION",
        )


async def _account_order(
    session: AsyncSession, user: User, account_id: str, order_id: str, *, lock: bool = False, trades: bool = False
) -> tuple[TradingAccount, TradingOrder]:
    """The order of the caller's account, both locked for a change; an order that would trade (a fill, a new
    quantity or price) needs an active account, a cancel or a delete does not."""
    if trades:
        account = await _active(session, user, account_id)
    else:
        account = await owned_account(session, user, account_id, lock=lock)
    order = await session.get(TradingOrder, order_id, with_for_update=lock)
    if order is None or order.account_id != account.id:
        raise NotFound("no such order in this account", code="ORDER_NOT_FOUND")
    return account, order


async def get_order(platform: Platform, user: User, account_id: str, order_id: str) -> OrderOut:
    async with platform.db.reading() as session:
        _, order = await _account_order(session, user, account_id, order_id)
        return OrderOut.model_validate(order)


async def update_order(
    platform: Platform, user: User, account_id: str, order_id: str, quantity: Decimal | None, price: Decimal | None
) -> OrderOut:
    """A pending limit order's quantity or price."""
    async with platform.db.session() as session:
        account, order = await _account_order(session, user, account_id, order_id, lock=True, trades=True)
        _at_broker(account, order, "changed")
        if order.status != ledger.PENDING:
            raise _order_transition(order, "changed")
        if quantity is not None:
            order.quantity = checked(ledger.positive, quantity, "quantity")
        if price is not None:
            order.price = checked(ledger.positive, price, "price")
        await session.flush()
        return OrderOut.model_validate(order)


async def cancel_order(platform: Platform, user: User, account_id: str, order_id: str) -> OrderOut:
    """A pending order cancelled; one sent to the broker is cancelled there, and stays pending until the
    broker says it is (a fill that came first stands)."""
    async with platform.db.session() as session:
        account, order = await _account_order(session, user, account_id, order_id, lock=True)
        if order.status != ledger.PENDING:
            raise _order_transition(order, "cancelled")
        if account.broker == broker.PAPER:
            order.status = ledger.CANCELLED
            await session.flush()
        answer = OrderOut.model_validate(order)
    if account.broker != broker.PAPER:
        await _follow(platform, order_id, user.id, cancel=True)
    return answer


async def delete_order(platform: Platform, user: User, account_id: str, order_id: str) -> None:
    """An order that never filled; a filled one is part of the ledger (its trade and cash flow) and stays."""
    async with platform.db.session() as session:
        account, order = await _account_order(session, user, account_id, order_id, lock=True)
        _at_broker(account, order, "deleted")
        if order.status == ledger.FILLED:
            raise _order_transition(order, "deleted")
        await session.delete(order)


async def fill_order(platform: Platform, user: User, account_id: str, order_id: str, price: Decimal | None) -> FillOut:
    """A pending order filled now, at ``price`` or its limit price, through the same checks as any fill."""
    async with platform.db.session() as session:
        account, order = await _account_order(session, user, account_id, order_id, lock=True, trades=True)
        _at_broker(account, order, "filled")
        if order.status != ledger.PENDING:
            raise _order_transition(order, "filled")
        at = price if price is not None else order.price
        if at is None:  # a market order is filled when placed; none waits without a price
            raise _order_transition(order, "filled without a price")
        return await _fill(session, account, order, checked(ledger.positive, at, "price"))


# --- idempotency ----------------------------------------------------------------------------------------------


def _fingerprint(scope: str, body: dict[str, Any]) -> str:
    text = json.dumps({"scope": scope, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


async def _once(
    platform: Platform,
    user: User,
    account_id: str,
    action: str,
    key: str | None,
    body: dict[str, Any],
    answer: type[Answer],
    write: Callable[[AsyncSession, TradingAccount], Awaitable[Answer]],
) -> Answer:
    """``write`` in one transaction under the active account's lock; with a key, answered once (see above)."""
    scope = f"{action}:{account_id}"
    fingerprint = _fingerprint(scope, body)
    try:
        async with platform.db.session() as session:
            account = await _active(session, user, account_id)
            if key is not None:
                earlier = await _earlier(session, user, scope, key, fingerprint, answer)
                if earlier is not None:
                    return earlier
            result = await write(session, account)
            if key is not None:
                session.add(
                    TradingRequest(
                        user_id=user.id,
                        scope=scope,
                        key=key,
                        fingerprint=fingerprint,
                        status=200,
                        response=result.model_dump(mode="json"),
                    )
                )
                await session.flush()
            return result
    except IntegrityError:
        if key is None:
            raise
    # The same key's first request committed meanwhile: this one's writes rolled back, its answer is that one's.
    async with platform.db.reading() as session:
        earlier = await _earlier(session, user, scope, key, fingerprint, answer)
    if earlier is None:
        raise Conflict("the request conflicted with another; try again", code="LEDGER_TRANSACTION_FAILED")
    return earlier


async def _earlier(
    session: AsyncSession, user: User, scope: str, key: str, fingerprint: str, answer: type[Answer]
) -> Answer | None:
    stored = await session.get(TradingRequest, (user.id, scope, key))
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise Conflict("this idempotency key was used with another request", code="IDEMPOTENCY_CONFLICT")
    return answer.model_validate({**stored.response, "idempotent": True})


# --- reads ----------------------------------------------------------------------------------------------------


async def positions(platform: Platform, user: User, account_id: str) -> list[PositionOut]:
    """The account's open positions (quantity > 0), by symbol."""
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        rows = await session.scalars(
            select(TradingPosition).where(TradingPosition.account_id == account_id).order_by(TradingPosition.symbol)
        )
        return [PositionOut.model_validate(row) for row in rows if row.quantity > 0]


async def position(platform: Platform, user: User, account_id: str, symbol: str) -> PositionOut:
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        row = await session.scalar(
            select(TradingPosition).where(TradingPosition.account_id == account_id, TradingPosition.symbol == symbol)
        )
        if row is None:
            raise NotFound(f"the account holds no position in {symbol}", code="POSITION_NOT_FOUND")
        return PositionOut.model_validate(row)


async def orders(
    platform: Platform, user: User, account_id: str, *, status: str | None = None, limit: int
) -> list[OrderOut]:
    """The account's orders, newest first."""
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        query = select(TradingOrder).where(TradingOrder.account_id == account_id)
        if status is not None:
            query = query.where(TradingOrder.status == status)
        rows = await session.scalars(query.order_by(TradingOrder.created_at.desc(), TradingOrder.id).limit(limit))
        return [OrderOut.model_validate(row) for row in rows]


async def trades(platform: Platform, user: User, account_id: str, *, limit: int) -> list[TradeOut]:
    """The account's trades, newest first."""
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        rows = await session.scalars(
            select(TradingTrade)
            .where(TradingTrade.account_id == account_id)
            .order_by(TradingTrade.created_at.desc(), TradingTrade.id)
            .limit(limit)
        )
        return [TradeOut.model_validate(row) for row in rows]


async def get_trade(platform: Platform, user: User, account_id: str, trade_id: str) -> TradeOut:
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        row = await session.get(TradingTrade, trade_id)
        if row is None or row.account_id != account_id:
            raise NotFound("no such trade in this account", code="TRADE_NOT_FOUND")
        return TradeOut.model_validate(row)


async def cash_flows(platform: Platform, user: User, account_id: str, *, limit: int) -> list[CashFlowOut]:
    """The account's cash flows, newest first."""
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        rows = await session.scalars(
            select(TradingCashFlow)
            .where(TradingCashFlow.account_id == account_id)
            .order_by(TradingCashFlow.sequence.desc())
            .limit(limit)
        )
        return [CashFlowOut.model_validate(row) for row in rows]
