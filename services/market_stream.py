"""The quote stream of one WebSocket connection: subscriptions, their limits, and the periodic push.

Transport-free: the API hands in ``send`` (a coroutine taking one JSON-able message); per-user connection
counting lives in ``StreamHub``, one per API process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import AppError
from domain.market import clean_symbol
from services.market import cached_quote, quote_view
from services.platform import Platform

Send = Callable[[dict[str, Any]], Awaitable[None]]


class StreamHub:
    """Counts open connections per user, so that a user cannot hold more than the limit."""

    def __init__(self) -> None:
        self._connections: Counter[str] = Counter()

    def open(self, user_id: str, limit: int) -> bool:
        if self._connections[user_id] >= limit:
            return False
        self._connections[user_id] += 1
        return True

    def close(self, user_id: str) -> None:
        self._connections[user_id] -= 1
        if self._connections[user_id] <= 0:
            del self._connections[user_id]

    def status(self) -> dict[str, int]:
        return {"connections": sum(self._connections.values()), "users": len(self._connections)}


def _message(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "timestamp": datetime.now(UTC).isoformat(), **fields}


def stream_error(code: str, message: str) -> dict[str, Any]:
    return _message("stream.error", error={"code": code, "message": message})


@dataclass
class Subscription:
    id: str
    symbols: list[str]
    channel: str
    timeframe: str


@dataclass
class QuoteStream:
    platform: Platform
    send: Send
    subscriptions: dict[str, Subscription] = field(default_factory=dict)

    async def handle(self, action: dict[str, Any]) -> None:
        kind = action.get("action") or action.get("type")
        if kind == "subscribe":
            await self._subscribe(action)
        elif kind == "unsubscribe":
            await self._unsubscribe(action)
        elif kind == "status":
            await self.send(_message("stream.status", payload=self.status()))
        else:
            await self.send(stream_error("STREAM_INVALID_SUBSCRIPTION", f"unknown action {kind!r}"))

    def status(self) -> dict[str, Any]:
        return {
            "subscriptions": [
                {"subscriptionId": s.id, "symbols": s.symbols, "channel": s.channel, "timeframe": s.timeframe}
                for s in self.subscriptions.values()
            ],
            "pushIntervalSeconds": self.platform.settings.stream_push_interval_seconds,
            "source": self.platform.market.source,
        }

    async def _subscribe(self, action: dict[str, Any]) -> None:
        s = self.platform.settings
        symbols = action.get("symbols")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(x, str) and x.strip() for x in symbols):
            await self.send(stream_error("STREAM_INVALID_SUBSCRIPTION", "symbols must be a non-empty list of strings"))
            return
        if action.get("channel", "quote") != "quote":
            await self.send(stream_error("STREAM_INVALID_SUBSCRIPTION", "only the quote channel is offered"))
            return
        if len(symbols) > s.stream_max_symbols_per_subscription:
            limit = s.stream_max_symbols_per_subscription
            await self.send(
                stream_error("STREAM_SUBSCRIPTION_LIMIT_EXCEEDED", f"at most {limit} symbols per subscription")
            )
            return
        if len(self.subscriptions) >= s.stream_max_subscriptions:
            limit = s.stream_max_subscriptions
            await self.send(stream_error("STREAM_SUBSCRIPTION_LIMIT_EXCEEDED", f"at most {limit} subscriptions"))
            return
        try:
            unique = list(dict.fromkeys(clean_symbol(x) for x in symbols))
        except ValueError as error:
            await self.send(stream_error("STREAM_INVALID_SUBSCRIPTION", str(error)))
            return
        subscription = Subscription(str(uuid.uuid4()), unique, "quote", str(action.get("timeframe", "1Min")))
        self.subscriptions[subscription.id] = subscription
        await self.send(_message("stream.subscribed", subscriptionId=subscription.id, symbols=unique, channel="quote"))
        await self.push(subscription)

    async def _unsubscribe(self, action: dict[str, Any]) -> None:
        subscription = self.subscriptions.pop(str(action.get("subscriptionId")), None)
        if subscription is None:
            await self.send(stream_error("STREAM_SUBSCRIPTION_NOT_FOUND", "no such subscription on this connection"))
            return
        await self.send(_message("stream.unsubscribed", subscriptionId=subscription.id))

    async def push(self, subscription: Subscription) -> None:
        """One ``market.quote`` per symbol; symbols whose quote fails are reported as degraded."""
        results = await asyncio.gather(
            *(cached_quote(self.platform, symbol) for symbol in subscription.symbols), return_exceptions=True
        )
        for symbol, result in zip(subscription.symbols, results, strict=True):
            if isinstance(result, AppError):
                await self.send(
                    _message(
                        "stream.degraded",
                        subscriptionId=subscription.id,
                        symbol=symbol,
                        payload={
                            "status": "degraded",
                            "errorCode": result.code,
                            "errorMessage": result.message,
                            "fallbackHint": "poll GET /market/quote/{symbol} or retry later",
                        },
                    )
                )
            elif isinstance(result, BaseException):
                raise result
            else:
                view = quote_view(result[0])
                await self.send(
                    _message(
                        "market.quote",
                        symbol=symbol,
                        channel="quote",
                        subscriptionId=subscription.id,
                        payload={k: v for k, v in view.items() if k not in ("symbol", "timestamp")},
                        quoteTimestamp=view["timestamp"],
                    )
                )

    async def run_pushes(self) -> None:
        """Push every subscription periodically until cancelled (the connection closed)."""
        while True:
            await asyncio.sleep(self.platform.settings.stream_push_interval_seconds)
            for subscription in list(self.subscriptions.values()):
                await self.push(subscription)
