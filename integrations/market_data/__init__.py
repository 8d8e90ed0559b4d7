"""Market-data providers behind one interface, chosen by QUANTPOLY_MARKET_DATA_PROVIDER."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import pandas as pd

from core.settings import Settings

BAR_COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "vwap", "trade_count"]
TIMEFRAMES = ("1Day", "1Hour")


class MarketDataProvider(Protocol):
    source: str

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Bars with ``start <= timestamp <= end`` (UTC), columns BAR_COLUMNS, sorted by time."""
        ...


def provider_from_settings(settings: Settings) -> MarketDataProvider:
    from integrations.market_data.synthetic import SyntheticProvider

    return SyntheticProvider(seed=settings.synthetic_seed)
