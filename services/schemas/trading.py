"""Paper trading (reference §2.6): accounts, orders, trades, cash flows and positions, as the front end reads
them. Money, prices and quantities are exact decimals in the ledger and JSON numbers here (front-end contract
§1.7); a request's are read as decimals, so 0.1 is 0.1."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field

from domain.market import Symbol
from services.schemas.base import Schema

Side = Literal["BUY", "SELL"]
OrderStatus = Literal["pending", "filled", "cancelled", "failed"]
FlowType = Literal["deposit", "withdraw", "trade_buy", "trade_sell"]
# Whether a value is > 0 and within the ledger's range is the ledger's to say (400 INVALID_ARGUMENT).
Amount = Decimal
KEY_LENGTH = 128


class AccountIn(Schema):
    account_name: str = Field(min_length=1, max_length=120)
    # Recorded as a deposit when positive.
    initial_capital: Amount | None = None
    slippage_bps: Decimal = Field(default=Decimal(0), ge=0, le=1000)


class AccountUpdateIn(Schema):
    account_name: str | None = Field(default=None, min_length=1, max_length=120)
    is_active: bool | None = None
    slippage_bps: Decimal | None = Field(default=None, ge=0, le=1000)


class AccountOut(Schema):
    id: str
    user_id: str
    account_name: str
    is_active: bool
    slippage_bps: float
    created_at: datetime
    updated_at: datetime


class TradeIn(Schema):
    """A buy or sell filled now: at ``price``, or, without one, at the latest quote and the account's slippage."""

    symbol: Symbol
    quantity: Amount
    price: Amount | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class OrderIn(Schema):
    """An order: with a price, a limit order that waits until the market reaches it; without, a market order
    filled now."""

    symbol: Symbol
    side: Side
    quantity: Amount
    price: Amount | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class OrderUpdateIn(Schema):
    """A pending order's new quantity or limit price."""

    quantity: Amount | None = None
    price: Amount | None = None


class FillIn(Schema):
    price: Amount | None = None  # the order's limit price when omitted


class CashIn(Schema):
    amount: Amount
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class OrderOut(Schema):
    id: str
    account_id: str
    user_id: str
    symbol: str
    side: Side
    order_type: Literal["market", "limit"]
    quantity: float
    price: float | None
    status: OrderStatus
    filled_price: float | None
    filled_at: datetime | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


class TradeOut(Schema):
    id: str
    account_id: str
    user_id: str
    order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    realized_pnl: float | None
    created_at: datetime


class CashFlowOut(Schema):
    id: str
    account_id: str
    user_id: str
    amount: float  # signed: withdrawals and buys are negative
    balance_after: float
    flow_type: FlowType
    related_trade_id: str | None
    created_at: datetime


class PositionOut(Schema):
    id: str
    account_id: str
    user_id: str
    symbol: str
    quantity: float
    avg_price: float
    last_price: float | None
    realized_pnl: float
    created_at: datetime
    updated_at: datetime


class FillOut(Schema):
    """What a fill wrote, in one transaction; ``idempotent`` when a repeated key answered it again."""

    order: OrderOut
    trade: TradeOut
    cash_flow: CashFlowOut
    position: PositionOut
    idempotent: bool = False


class OrderPlacedOut(Schema):
    """A new order: filled at once (market) with what the fill wrote, or pending (limit)."""

    order: OrderOut
    trade: TradeOut | None = None
    cash_flow: CashFlowOut | None = None
    position: PositionOut | None = None
    idempotent: bool = False


class CashMovedOut(Schema):
    cash_flow: CashFlowOut
    cash_balance: float
    idempotent: bool = False


class OrderDeletedOut(Schema):
    order_id: str
