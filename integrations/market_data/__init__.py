"""Market-data providers behind one interface, chosen by QUANTPOLY_MARKET_DATA_PROVIDER.

Every method is synchronous (callers run them in a thread) and raises ``core.errors.UpstreamError`` with
one of its stable codes (UPSTREAM_TIMEOUT, UPSTREAM_RATE_LIMITED, UPSTREAM_AUTH_FAILED,
UPSTREAM_UNAVAILABLE, ASSET_NOT_FOUND) when the source fails; nothing falls back to other data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import pandas as pd

from core.settings import Settings

# Bars are a DataFrame with these columns, ``timestamp`` an aware UTC datetime, sorted by time.
BAR_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "vwap", "trade_count"]


@dataclass(frozen=True)
class Asset:
    symbol: str
    name: str
    exchange: str
    currency: str = "USD"
    asset_class: str = "us_equity"
    tradable: bool = True
    fractionable: bool = True


@dataclass(frozen=True)
class Quote:
    symbol: str
    price: float
    previous_close: float | None
    open_price: float | None
    high_price: float | None
    low_price: float | None
    volume: float | None
    bid_price: float | None
    ask_price: float | None
    timestamp: datetime


@dataclass(frozen=True)
class ProviderHealth:
    provider: str
    transport: str
    healthy: bool
    status: str  # "ok" | "degraded"
    message: str
    base_url: str | None = None
    timeout_seconds: float | None = None
    last_latency_ms: float | None = None
    last_failure_code: str | None = None


class MarketDataProvider(Protocol):
    source: str  # stored with every bar: "synthetic", "csv" or "alpaca"

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Every bar with ``start <= timestamp <= end`` (all pages), columns BAR_COLUMNS."""
        ...

    def assets(self) -> list[Asset]:
        """The tradable catalog."""
        ...

    def asset(self, symbol: str) -> Asset:
        """One asset; ASSET_NOT_FOUND if unknown."""
        ...

    def quote(self, symbol: str) -> Quote:
        """The latest quote (snapshot); ASSET_NOT_FOUND if unknown."""
        ...

    def health(self) -> ProviderHealth:
        """A cheap live probe of the source (Alpaca: the market clock)."""
        ...


class UpToNow:
    """A provider that never answers a bar after now, whatever its source holds (a file with future rows)
    or invents (synthetic prices): a future bar stored today would stand for real data tomorrow."""

    def __init__(self, inner: MarketDataProvider) -> None:
        self.inner = inner
        self.source = inner.source

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        now = datetime.now(UTC)
        if start > now:
            self.inner.asset(symbol)  # an unknown symbol stays ASSET_NOT_FOUND, even for a future range
            return pd.DataFrame(columns=BAR_COLUMNS)
        frame = self.inner.bars(symbol, timeframe, start, min(end, now))
        return frame[frame["timestamp"] <= now].reset_index(drop=True) if len(frame) else frame

    def assets(self) -> list[Asset]:
        return self.inner.assets()

    def asset(self, symbol: str) -> Asset:
        return self.inner.asset(symbol)

    def quote(self, symbol: str) -> Quote:
        return self.inner.quote(symbol)

    def health(self) -> ProviderHealth:
        return self.inner.health()


def provider_from_settings(settings: Settings) -> MarketDataProvider:
    """The configured provider, bounded to the present."""
    return UpToNow(_source_provider(settings))


def _source_provider(settings: Settings) -> MarketDataProvider:
    if settings.market_data_provider == "alpaca":
        from integrations.market_data.alpaca import AlpacaProvider

        return AlpacaProvider(settings)
    if settings.market_data_provider == "csv":
        from integrations.market_data.csv_files import CsvProvider

        return CsvProvider(settings.market_data_dir or settings.var_dir / "market-data")
    from integrations.market_data.synthetic import SyntheticProvider

    return SyntheticProvider(seed=settings.synthetic_seed)
