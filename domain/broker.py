"""Orders at a broker (Alpaca paper trading): what the follow workflow knows of one. What its end writes is the
ledger's rule (``domain.ledger.settlement``); this module stays free of it, and of what it imports, since the
workflow imports this one.

An order of a broker account is sent with our order id as Alpaca's ``client_order_id``, so sending it again
finds the first one rather than placing a second. The workflow follows it until Alpaca's status is terminal;
then the ledger is written once: a fill of the quantity filled at its average price (a partial fill ended by a
cancel or an expiry included), otherwise the order cancelled or failed with Alpaca's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

PAPER, ALPACA = "paper", "alpaca"
BROKERS = (PAPER, ALPACA)

# Alpaca's order statuses after which nothing more happens to an order.
FILLED, CANCELED, EXPIRED, REJECTED, REPLACED = "filled", "canceled", "expired", "rejected", "replaced"
ALPACA_TERMINAL = frozenset({FILLED, CANCELED, EXPIRED, REJECTED, REPLACED})
# Ours: Alpaca refused to take the order at all (a 4xx answer or the account's keys refused); the order was
# cancelled before it was sent; Alpaca no longer knows an order it took (its paper account reset); the ledger's
# order is no longer pending (settled before, or deleted with its account).
REFUSED, NOT_SENT, UNKNOWN, SETTLED = "refused", "not_sent", "unknown_at_broker", "settled"
TERMINAL = ALPACA_TERMINAL | {REFUSED, NOT_SENT, UNKNOWN, SETTLED}


@dataclass
class BrokerOrderState:
    """An order as the broker last reported it; decimals as text, so that it crosses Temporal as JSON."""

    status: str
    broker_order_id: str | None = None
    filled_quantity: str = "0"
    filled_avg_price: str | None = None
    reason: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def state_of(raw: object) -> BrokerOrderState:
    """Alpaca's order object (``id``, ``status``, ``filled_qty``, ``filled_avg_price``) read leniently."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not isinstance(raw.get("status"), str):
        raise TypeError("order: an object with an id and a status was expected")
    filled = _decimal(raw.get("filled_qty")) or Decimal(0)
    price = _decimal(raw.get("filled_avg_price"))
    return BrokerOrderState(
        status=raw["status"],
        broker_order_id=raw["id"],
        filled_quantity=str(filled),
        filled_avg_price=None if price is None else str(price),
    )


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    return number if number.is_finite() else None
