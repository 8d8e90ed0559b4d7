from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, UTCDateTime


class MarketBar(Base):
    """One OHLCV bar; the key makes every sync idempotent (a bar is written once per source)."""

    __tablename__ = "market_bars"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    vwap: Mapped[float | None] = mapped_column(Float)
    trade_count: Mapped[int | None] = mapped_column(Integer)


class MarketSyncCoverage(Base):
    """A time range of bars already fetched from a source (so later syncs fetch only what is missing,
    holes in the middle included). Overlapping ranges are merged when written."""

    __tablename__ = "market_sync_coverage"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(8), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    end: Mapped[datetime] = mapped_column(UTCDateTime())
