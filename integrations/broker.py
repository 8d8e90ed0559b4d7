"""Alpaca paper trading through alpaca-py's ``TradingClient``, for accounts opened with ``broker: "alpaca"``.

Each account trades with its owner's own paper keys, which are kept sealed (``core.security.SecretBox``) and
opened only to build a client. The client talks to ``QUANTPOLY_ALPACA_PAPER_TRADING_URL`` (never live trading:
the settings refuse it) with the timeout and retries of ``integrations.alpaca_http``; alpaca-py runs with
``raw_data=True`` and answers are read leniently (``domain.broker.state_of``). Calls are blocking: callers run
them in a thread.

Failures are ``UpstreamError``s with stable codes, except a broker's refusal of an order it will never take (a
4xx answer other than 429, keys refused included), which is :class:`BrokerRefused`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from core.errors import AppError, UpstreamError
from core.security import SecretBox, box_key_file
from core.settings import Settings
from domain import broker as orders
from domain import ledger
from integrations.alpaca_http import MALFORMED, Credentials, Limits, bound, upstream_error, upstream_message

KEY_FILE = "broker-credentials.key"


class BrokerRefused(Exception):
    """The broker will not take this order (its answer says why)."""


def broker_box(settings: Settings) -> SecretBox:
    """The box that seals broker credentials: the configured keys; in development and test, without them, a key
    kept under ``var/``."""
    keys = settings.broker_keys
    if not keys and settings.environment in ("development", "test"):
        keys = [box_key_file(settings.var_dir / KEY_FILE)]
    if not keys:
        raise AppError(
            "broker accounts need QUANTPOLY_BROKER_CREDENTIALS_KEYS on this server",
            code="BROKER_NOT_CONFIGURED",
            status=503,
        )
    return SecretBox(keys)


def seal_credentials(box: SecretBox, credentials: Credentials) -> str:
    return box.seal(json.dumps({"key": credentials.key, "secret": credentials.secret}))


def open_credentials(box: SecretBox, sealed: str) -> Credentials:
    opened = json.loads(box.open(sealed))
    return Credentials(opened["key"], opened["secret"])


@dataclass(frozen=True)
class BrokerAccount:
    cash: Decimal
    status: str


@dataclass(frozen=True)
class Ticket:
    """An order as it is sent: ours, under its id."""

    order_id: str
    symbol: str
    side: str  # ledger.BUY or ledger.SELL
    quantity: Decimal
    limit_price: Decimal | None


class AlpacaBroker:
    def __init__(self, credentials: Credentials, settings: Settings) -> None:
        self._credentials = credentials
        self._limits = Limits(settings.alpaca_timeout_seconds, settings.alpaca_max_retries)
        self._client = TradingClient(
            api_key=credentials.key,
            secret_key=credentials.secret,
            paper=True,
            raw_data=True,
            url_override=settings.alpaca_paper_trading_url.rstrip("/"),
        )
        bound(self._client, self._limits)

    def __repr__(self) -> str:
        return "AlpacaBroker(***)"

    def _failure(self, error: Exception, operation: str) -> UpstreamError:
        return upstream_error(error, f"alpaca {operation}", self._credentials, self._limits)

    def _call(self, operation: str, call: Any) -> Any:
        try:
            return call()
        except (APIError, requests.RequestException, *MALFORMED) as error:
            raise self._failure(error, operation) from None

    def account(self) -> BrokerAccount:
        """The paper account the keys open: a wrong key is ``UPSTREAM_AUTH_FAILED``."""
        raw = self._call("account", self._client.get_account)
        if not isinstance(raw, dict) or raw.get("cash") is None:
            raise UpstreamError("UPSTREAM_UNAVAILABLE", "alpaca account: an object with cash was expected")
        return BrokerAccount(cash=ledger.exact(Decimal(str(raw["cash"]))), status=str(raw.get("status") or ""))

    def submit(self, ticket: Ticket) -> orders.BrokerOrderState:
        """The order sent once: if Alpaca already has an order under its id, that one."""
        earlier = self.by_client_id(ticket.order_id)
        if earlier is not None:
            return earlier
        fields = dict(
            symbol=ticket.symbol,
            qty=float(ticket.quantity),
            side=OrderSide.BUY if ticket.side == ledger.BUY else OrderSide.SELL,
            time_in_force=TimeInForce.DAY,
            client_order_id=ticket.order_id,
        )
        request = (
            MarketOrderRequest(**fields)
            if ticket.limit_price is None
            else LimitOrderRequest(**fields, limit_price=float(ticket.limit_price))
        )
        try:
            return orders.state_of(self._client.submit_order(request))
        except APIError as error:
            status, message = error.status_code or 0, upstream_message(error)
            if 400 <= status < 500 and status != 429:  # Alpaca says 403 for too little buying power
                # Sent before and answered late: the earlier request's order is the one.
                found = self.by_client_id(ticket.order_id)
                if found is not None:
                    return found
                raise BrokerRefused(self._credentials.scrub(message or f"HTTP {status}")) from None
            raise self._failure(error, "submit order") from None
        except (requests.RequestException, *MALFORMED) as error:
            raise self._failure(error, "submit order") from None

    def by_client_id(self, client_order_id: str) -> orders.BrokerOrderState | None:
        try:
            return orders.state_of(self._client.get_order_by_client_id(client_order_id))
        except APIError as error:
            if error.status_code == 404:
                return None
            raise self._failure(error, "order") from None
        except (requests.RequestException, *MALFORMED) as error:
            raise self._failure(error, "order") from None

    def order(self, broker_order_id: str) -> orders.BrokerOrderState:
        """The order as Alpaca has it now; one it no longer knows (its paper account was reset) is ended."""
        try:
            return orders.state_of(self._client.get_order_by_id(broker_order_id))
        except APIError as error:
            if error.status_code == 404:
                reason = "the broker no longer knows the order (was its paper account reset?)"
                return orders.BrokerOrderState(orders.UNKNOWN, broker_order_id, reason=reason)
            raise self._failure(error, "order") from None
        except (requests.RequestException, *MALFORMED) as error:
            raise self._failure(error, "order") from None

    def cancel(self, broker_order_id: str) -> None:
        """Ask Alpaca to cancel the order; one already filled or gone is left as it is (the follow sees it)."""
        try:
            self._client.cancel_order_by_id(broker_order_id)
        except APIError as error:
            if error.status_code in (404, 422):
                return
            raise self._failure(error, "cancel order") from None
        except (requests.RequestException, *MALFORMED) as error:
            raise self._failure(error, "cancel order") from None
