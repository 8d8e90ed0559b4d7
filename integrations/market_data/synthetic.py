"""Deterministic synthetic prices for demos, tests and offline use; every bar is marked ``synthetic``.

A symbol's path is a seeded geometric random walk anchored at a fixed epoch, so the bar at a given time
is the same in every call, whatever range is asked for: syncing twice, or in pieces, gives equal bars.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from core.errors import InvalidInput, UpstreamError
from integrations.market_data import Asset, ProviderHealth, Quote

EPOCH = {"1Day": datetime(2000, 1, 3, 21, tzinfo=UTC), "1Hour": datetime(2018, 1, 2, 14, tzinfo=UTC)}
SESSION_HOURS_UTC = range(14, 21)  # hourly bars of a US session, 14:00..20:00 UTC


class SyntheticProvider:
    source = "synthetic"

    def __init__(self, seed: int = 7) -> None:
        self._seed = seed

    def assets(self) -> list[Asset]:
        return [Asset(symbol=s, name=name, exchange=exchange) for s, (name, exchange) in CATALOG.items()]

    def asset(self, symbol: str) -> Asset:
        symbol = symbol.upper()
        if symbol not in CATALOG:
            raise UpstreamError("ASSET_NOT_FOUND", f"unknown symbol {symbol}")
        name, exchange = CATALOG[symbol]
        return Asset(symbol=symbol, name=name, exchange=exchange)

    def quote(self, symbol: str) -> Quote:
        """The last two daily bars, with the price moving on a seeded minute-by-minute wiggle."""
        asset = self.asset(symbol)
        now = datetime.now(UTC)
        daily = self.bars(asset.symbol, "1Day", now - timedelta(days=10), now)
        last, previous = daily.iloc[-1], daily.iloc[-2]
        minute = int(now.timestamp() // 60)
        wiggle = np.random.default_rng(minute + len(asset.symbol) * 7919).normal(0, 0.002)
        price = float(last["close"]) * (1 + wiggle)
        return Quote(
            symbol=asset.symbol,
            price=round(price, 4),
            previous_close=round(float(previous["close"]), 4),
            open_price=round(float(last["open"]), 4),
            high_price=round(max(float(last["high"]), price), 4),
            low_price=round(min(float(last["low"]), price), 4),
            volume=float(last["volume"]),
            bid_price=round(price * 0.9998, 4),
            ask_price=round(price * 1.0002, 4),
            timestamp=now.replace(second=0, microsecond=0),
        )

    def health(self) -> ProviderHealth:
        return ProviderHealth(
            provider="synthetic", transport="in-process", healthy=True, status="ok", message="seeded synthetic data"
        )

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        self.asset(symbol)
        if timeframe not in EPOCH:
            raise InvalidInput(f"synthetic data has no {timeframe} bars", code="UNSUPPORTED_TIMEFRAME")
        times = self._times(timeframe, end)
        frame = self._path(symbol.upper(), timeframe, times)
        return frame[(frame["timestamp"] >= start) & (frame["timestamp"] <= end)].reset_index(drop=True)

    @staticmethod
    def _times(timeframe: str, end: datetime) -> pd.DatetimeIndex:
        epoch = EPOCH[timeframe]
        if end < epoch:
            return pd.DatetimeIndex([], tz="UTC")
        days = pd.bdate_range(epoch.date(), end.date(), tz="UTC")
        if timeframe == "1Day":
            return days + pd.Timedelta(hours=21)
        hours = [day + pd.Timedelta(hours=h) for day in days for h in SESSION_HOURS_UTC]
        return pd.DatetimeIndex(hours)

    def _path(self, symbol: str, timeframe: str, times: pd.DatetimeIndex) -> pd.DataFrame:
        digest = hashlib.sha256(f"{self._seed}:{timeframe}:{symbol}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        n = len(times)
        scale = 0.015 if timeframe == "1Day" else 0.015 / np.sqrt(7)
        start_price = 20 + rng.random() * 180
        close = start_price * np.exp(np.cumsum(rng.normal(0.0002, scale, n)))
        previous = np.concatenate(([start_price], close[:-1]))
        open_ = previous * (1 + rng.normal(0, scale / 4, n))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, scale / 2, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, scale / 2, n)))
        volume = np.round(rng.lognormal(13, 0.4, n))
        return pd.DataFrame(
            {
                "timestamp": [t.to_pydatetime() for t in times],
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": volume,
                "vwap": (high + low + close) / 3,
                "trade_count": (volume // 100).astype(int),
            }
        )


# The synthetic universe: well-known names, so demos look familiar. Prices are invented.
CATALOG = {
    "AAPL": ("Apple Inc.", "NASDAQ"),
    "MSFT": ("Microsoft Corporation", "NASDAQ"),
    "GOOGL": ("Alphabet Inc. Class A", "NASDAQ"),
    "AMZN": ("Amazon.com Inc.", "NASDAQ"),
    "NVDA": ("NVIDIA Corporation", "NASDAQ"),
    "META": ("Meta Platforms Inc.", "NASDAQ"),
    "TSLA": ("Tesla Inc.", "NASDAQ"),
    "IBM": ("International Business Machines", "NYSE"),
    "JPM": ("JPMorgan Chase & Co.", "NYSE"),
    "V": ("Visa Inc.", "NYSE"),
    "KO": ("The Coca-Cola Company", "NYSE"),
    "PEP": ("PepsiCo Inc.", "NASDAQ"),
    "XOM": ("Exxon Mobil Corporation", "NYSE"),
    "WMT": ("Walmart Inc.", "NYSE"),
    "DIS": ("The Walt Disney Company", "NYSE"),
    "NFLX": ("Netflix Inc.", "NASDAQ"),
    "INTC": ("Intel Corporation", "NASDAQ"),
    "AMD": ("Advanced Micro Devices Inc.", "NASDAQ"),
    "SPY": ("SPDR S&P 500 ETF Trust", "ARCA"),
    "QQQ": ("Invesco QQQ Trust", "NASDAQ"),
}
