"""The steps of ``BrokerOrderWorkflow``: send a broker account's order, poll it, cancel it, write its end.

Each can run again after a lost worker without effect beyond its first run: the order is sent under our id as
Alpaca's ``client_order_id`` (found, not placed again), polls and cancels are reads and requests Alpaca treats
as repeatable, and the ledger is written in one transaction under the account's lock that first checks the
order is still pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.market_data import heartbeating
from core.errors import UpstreamError
from core.security import SecretBox, SecretUnreadable
from core.settings import Settings
from db.engine import Database
from db.models import TradingAccount, TradingOrder
from db.models.trading import fill
from domain import broker as orders
from domain import ledger
from integrations.broker import AlpacaBroker, BrokerRefused, Ticket, broker_box, open_credentials
from workflows.broker_order import (
    CANCEL_ACTIVITY,
    POLL_ACTIVITY,
    SETTLE_ACTIVITY,
    SUBMIT_ACTIVITY,
    BrokerCall,
    Settle,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class BrokerActivities:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._box: SecretBox | None = None

    def _broker(self, account: TradingAccount) -> AlpacaBroker:
        if account.broker_credentials is None:
            raise SecretUnreadable("the account has no broker keys")
        if self._box is None:
            self._box = broker_box(self._settings)
        return AlpacaBroker(open_credentials(self._box, account.broker_credentials), self._settings)

    async def _at_broker(self, what: str, call: Callable[[], T]) -> T:
        """A blocking broker call in a thread, heartbeating; a failure the broker may get over is retried."""
        try:
            async with heartbeating(what):
                return await asyncio.to_thread(call)
        except UpstreamError as error:
            raise ApplicationError(error.message, type=error.code) from None

    async def _pending(self, order_id: str) -> tuple[TradingAccount, TradingOrder] | None:
        async with self._db.reading() as session:
            order = await session.get(TradingOrder, order_id)
            account = await session.get(TradingAccount, order.account_id) if order is not None else None
        if order is None or account is None or order.status != ledger.PENDING:
            return None
        return account, order

    @activity.defn(name=SUBMIT_ACTIVITY)
    async def submit(self, call: BrokerCall) -> orders.BrokerOrderState:
        """The order at the broker: sent now, or found where an earlier attempt sent it; not sent when a cancel
        came first (``call.send`` false) or the broker refuses the account's keys."""
        found = await self._pending(call.order_id)
        if found is None:
            return orders.BrokerOrderState(orders.SETTLED)
        account, order = found
        if not call.send:
            return await self._unsent(account, call)
        ticket = Ticket(
            order_id=order.id,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            limit_price=order.price if order.order_type == ledger.LIMIT_ORDER else None,
        )
        try:
            broker = self._broker(account)
            state = await self._at_broker("submitting", lambda: broker.submit(ticket))
        except BrokerRefused as refusal:
            return orders.BrokerOrderState(orders.REFUSED, reason=f"refused by the broker: {refusal}")
        except SecretUnreadable:
            return orders.BrokerOrderState(orders.REFUSED, reason="the account's broker keys cannot be opened")
        except ApplicationError as error:
            if error.type != "UPSTREAM_AUTH_FAILED":
                raise
            # Keys revoked or reset: no order can go out with them (retrying would only repeat the refusal).
            return orders.BrokerOrderState(orders.REFUSED, reason="the broker refused the account's keys")
        await self._note(call.order_id, state)
        return state

    async def _unsent(self, account: TradingAccount, call: BrokerCall) -> orders.BrokerOrderState:
        """A cancel came before the order was sent: the order an earlier attempt may have sent, else none."""
        broker = self._broker(account)
        earlier = await self._at_broker("looking up", lambda: broker.by_client_id(call.order_id))
        if earlier is None:
            return orders.BrokerOrderState(orders.NOT_SENT)
        await self._note(call.order_id, earlier)
        return earlier

    @activity.defn(name=POLL_ACTIVITY)
    async def poll(self, call: BrokerCall) -> orders.BrokerOrderState:
        found = await self._pending(call.order_id)
        if found is None:
            return orders.BrokerOrderState(orders.SETTLED)
        broker = self._broker(found[0])
        state = await self._at_broker("polling", lambda: self._read(broker, call))
        await self._note(call.order_id, state)
        return state

    @activity.defn(name=CANCEL_ACTIVITY)
    async def cancel(self, call: BrokerCall) -> orders.BrokerOrderState:
        """The broker asked to cancel the order, and the order as it then stands."""
        found = await self._pending(call.order_id)
        if found is None:
            return orders.BrokerOrderState(orders.SETTLED)
        broker = self._broker(found[0])
        if call.broker_order_id is not None:
            await self._at_broker("cancelling", lambda: broker.cancel(call.broker_order_id or ""))
        state = await self._at_broker("polling", lambda: self._read(broker, call))
        await self._note(call.order_id, state)
        return state

    @staticmethod
    def _read(broker: AlpacaBroker, call: BrokerCall) -> orders.BrokerOrderState:
        if call.broker_order_id is not None:
            return broker.order(call.broker_order_id)
        found = broker.by_client_id(call.order_id)
        if found is None:
            raise UpstreamError("UPSTREAM_UNAVAILABLE", "alpaca order: the submitted order is not found")
        return found

    async def _note(self, order_id: str, state: orders.BrokerOrderState) -> None:
        """The broker's id and status on the order, for the routes that show it; written only on a change."""
        async with self._db.session() as session:
            order = await session.get(TradingOrder, order_id)
            if order is not None and (order.broker_order_id, order.broker_status) != (
                state.broker_order_id,
                state.status,
            ):
                order.broker_order_id, order.broker_status = state.broker_order_id, state.status

    @activity.defn(name=SETTLE_ACTIVITY)
    async def settle(self, settle: Settle) -> str:
        """The ledger written once for the order's end: what it wrote, or that it was written before."""
        async with heartbeating("settling"):
            return await self._settled(settle)

    async def _settled(self, settle: Settle) -> str:
        async with self._db.session() as session:
            found = await _locked(session, settle.order_id)
            if found is None:
                return "gone"
            account, order = found
            if order.status != ledger.PENDING:
                return f"already {order.status}"
            state = settle.state
            if state.status != orders.SETTLED:
                order.broker_status = state.status
                order.broker_order_id = state.broker_order_id or order.broker_order_id
            plan = ledger.settlement(state, order.quantity)
            order.failure_reason = plan.reason
            if plan.outcome != ledger.FILLED or plan.quantity is None or plan.price is None:
                order.status = plan.outcome
                return order.status
            order.quantity = plan.quantity
            try:
                await fill(session, account, order, plan.price)
            except ledger.LedgerError as error:  # refused before it wrote anything
                log.warning("order %s filled at the broker was refused by the ledger: %s", order.id, error.code)
                order.status = ledger.FAILED
                order.failure_reason = f"filled at the broker; the ledger refused it: {error.code}: {error}"[:200]
            return order.status


async def _locked(session: AsyncSession, order_id: str) -> tuple[TradingAccount, TradingOrder] | None:
    """The order and its account, locked in the API's order (account, then order)."""
    order = await session.get(TradingOrder, order_id)
    if order is None:
        return None
    account = await session.get(TradingAccount, order.account_id, with_for_update=True)
    order = await session.get(TradingOrder, order_id, with_for_update=True, populate_existing=True)
    if account is None or order is None:
        return None
    return account, order
