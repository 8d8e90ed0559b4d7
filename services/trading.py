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

import hashlib
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AccessDenied, AppError, Conflict, InvalidInput, NotFound
from db.models import (
    TradingAccount,
    TradingCashFlow,
    TradingOrder,
    TradingPosition,
    TradingRequest,
    TradingTrade,
    User,
)
from db.models.trading import append_flow, cash_balance, fill
from domain import ledger
from services.market import cached_quote
from services.platform import Platform
from services.schemas.trading import (
    AccountOut,
    CashFlowOut,
    CashMovedOut,
    FillOut,
    OrderOut,
    OrderPlacedOut,
    PositionOut,
    TradeOut,
)

Answer = TypeVar("Answer", bound=BaseModel)


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


async def create_account(
    platform: Platform, user: User, name: str, initial_capital: Decimal | None, slippage_bps: Decimal
) -> AccountOut:
    """An active account; a positive initial capital is its first cash flow, a deposit."""
    capital = None
    if initial_capital is not None and initial_capital != 0:
        try:
            capital = ledger.positive(initial_capital, "initialCapital")
        except ledger.LedgerError as error:
            raise _ledger_error(error) from None
    account = TradingAccount(user_id=user.id, account_name=name, is_active=True, slippage_bps=slippage_bps)
    async with platform.db.session() as session:
        session.add(account)
        await session.flush()
        if capital is not None:
            await append_flow(session, account, capital, ledger.DEPOSIT)
    return AccountOut.model_validate(account)


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
        flow = await append_flow(session, account, checked(ledger.positive, amount, "amount"), ledger.DEPOSIT)
        return CashMovedOut(cash_flow=CashFlowOut.model_validate(flow), cash_balance=flow.balance_after)

    return await _once(platform, user, account_id, "deposit", key, body, CashMovedOut, move)


async def withdraw(platform: Platform, user: User, account_id: str, amount: Decimal, key: str | None) -> CashMovedOut:
    body = {"amount": str(amount)}

    async def move(session: AsyncSession, account: TradingAccount) -> CashMovedOut:
        signed = checked(ledger.withdrawal, amount, await cash_balance(session, account.id))
        flow = await append_flow(session, account, signed, ledger.WITHDRAW)
        return CashMovedOut(cash_flow=CashFlowOut.model_validate(flow), cash_balance=flow.balance_after)

    return await _once(platform, user, account_id, "withdraw", key, body, CashMovedOut, move)


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
    async with platform.db.reading() as session:
        account = await owned_account(session, user, account_id)
    quote, _ = await cached_quote(platform, symbol)
    return ledger.slipped(side, Decimal(str(quote.price)), account.slippage_bps)


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
    """A limit order, pending until the market reaches its price; or a market order, filled now."""
    if price is None:
        filled = await trade(platform, user, account_id, side, symbol, quantity, None, key)
        return OrderPlacedOut(
            order=filled.order,
            trade=filled.trade,
            cash_flow=filled.cash_flow,
            position=filled.position,
            idempotent=filled.idempotent,
        )
    body = {"symbol": symbol, "side": side, "quantity": str(quantity), "price": str(price)}

    async def place(session: AsyncSession, account: TradingAccount) -> OrderPlacedOut:
        order = _new_order(account, symbol, side, quantity, price)
        session.add(order)
        await session.flush()
        return OrderPlacedOut(order=OrderOut.model_validate(order))

    return await _once(platform, user, account_id, "order", key, body, OrderPlacedOut, place)


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
        _, order = await _account_order(session, user, account_id, order_id, lock=True, trades=True)
        if order.status != ledger.PENDING:
            raise _order_transition(order, "changed")
        if quantity is not None:
            order.quantity = checked(ledger.positive, quantity, "quantity")
        if price is not None:
            order.price = checked(ledger.positive, price, "price")
        await session.flush()
        return OrderOut.model_validate(order)


async def cancel_order(platform: Platform, user: User, account_id: str, order_id: str) -> OrderOut:
    async with platform.db.session() as session:
        _, order = await _account_order(session, user, account_id, order_id, lock=True)
        if order.status != ledger.PENDING:
            raise _order_transition(order, "cancelled")
        order.status = ledger.CANCELLED
        await session.flush()
        return OrderOut.model_validate(order)


async def delete_order(platform: Platform, user: User, account_id: str, order_id: str) -> None:
    """An order that never filled; a filled one is part of the ledger (its trade and cash flow) and stays."""
    async with platform.db.session() as session:
        _, order = await _account_order(session, user, account_id, order_id, lock=True)
        if order.status == ledger.FILLED:
            raise _order_transition(order, "deleted")
        await session.delete(order)


async def fill_order(platform: Platform, user: User, account_id: str, order_id: str, price: Decimal | None) -> FillOut:
    """A pending order filled now, at ``price`` or its limit price, through the same checks as any fill."""
    async with platform.db.session() as session:
        account, order = await _account_order(session, user, account_id, order_id, lock=True, trades=True)
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
