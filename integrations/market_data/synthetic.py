"""Deterministic synthetic prices for demos, tests and offline use; every bar is marked ``synthetic``.

A symbol's path is a seeded geometric random walk anchored at a fixed epoch, so the bar at a given time
is the same in every call, whatever range is asked for: syncing twice, or in pieces, gives equal bars.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.errors import InvalidInput

EPOCH = {"1Day": datetime(2000, 1, 3, 21, tzinfo=UTC), "1Hour": datetime(2018, 1, 2, 14, tzinfo=UTC)}
SESSION_HOURS_UTC = range(14, 21)  # hourly bars of a US session, 14:00..20:00 UTC


class SyntheticProvider:
    source = "synthetic"

    def __init__(self, seed: int = 7) -> None:
        self._seed = seed

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
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
