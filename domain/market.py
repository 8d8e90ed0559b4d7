"""Market-data requests, validated before any job is created."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from domain.indicators import calculate

# What a request may ask for; each provider says which of these it holds (UNSUPPORTED_TIMEFRAME).
TIMEFRAMES = ("1Min", "5Min", "15Min", "1Hour", "1Day")
MAX_SYMBOLS = 100


class SyncRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    symbols: list[str] = Field(min_length=1, max_length=MAX_SYMBOLS)
    start_date: date
    end_date: date
    timeframe: str = "1Day"

    @field_validator("symbols")
    @classmethod
    def _clean(cls, symbols: list[str]) -> list[str]:
        cleaned = []
        for symbol in symbols:
            symbol = symbol.strip().upper()
            if not symbol or len(symbol) > 32 or not all(c.isalnum() or c in ".-/" for c in symbol):
                raise ValueError(f"invalid symbol {symbol!r}")
            if symbol not in cleaned:
                cleaned.append(symbol)
        return cleaned

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, timeframe: str) -> str:
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"timeframe must be one of {', '.join(TIMEFRAMES)}")
        return timeframe

    @model_validator(mode="after")
    def _ordered(self) -> SyncRequest:
        if self.end_date < self.start_date:
            raise ValueError("endDate must not be before startDate")
        return self

    @property
    def start(self) -> datetime:
        return datetime.combine(self.start_date, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_date, time.max, tzinfo=UTC)


class IndicatorSpec(BaseModel):
    """One indicator of a calculation; parameters left out take the indicator's defaults."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str = Field(min_length=1, max_length=32)
    period: int | None = Field(default=None, ge=1, le=10_000)
    fast: int | None = Field(default=None, ge=1, le=10_000)
    slow: int | None = Field(default=None, ge=1, le=10_000)
    signal: int | None = Field(default=None, ge=1, le=10_000)
    std_dev: float | None = Field(default=None, gt=0, le=10)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"name"}).items() if v is not None}


class IndicatorsRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    symbol: str = Field(min_length=1, max_length=32)
    start_date: date
    end_date: date
    timeframe: str = "1Day"
    indicators: list[IndicatorSpec] = Field(min_length=1, max_length=20)

    @field_validator("symbol")
    @classmethod
    def _upper(cls, symbol: str) -> str:
        return SyncRequest._clean([symbol])[0]

    _known_timeframe = field_validator("timeframe")(SyncRequest._known_timeframe.__func__)

    @model_validator(mode="after")
    def _ordered(self) -> IndicatorsRequest:
        if self.end_date < self.start_date:
            raise ValueError("endDate must not be before startDate")
        for spec in self.indicators:
            # Parameters are checked now, so that a job never starts with ones it cannot use.
            empty = np.zeros(0)
            calculate(spec.name, empty, high=empty, low=empty, **spec.params())
        return self

    def as_sync(self) -> SyncRequest:
        return SyncRequest(
            symbols=[self.symbol], start_date=self.start_date, end_date=self.end_date, timeframe=self.timeframe
        )


Span = tuple[datetime, datetime]  # closed interval [start, end]


def merge_spans(spans: list[Span]) -> list[Span]:
    """Overlapping or touching spans joined into one, sorted."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def missing_spans(wanted: Span, covered: list[Span]) -> list[Span]:
    """The parts of ``wanted`` that no covered span contains."""
    gaps, cursor = [], wanted[0]
    for start, end in merge_spans(covered):
        if end < cursor or start > wanted[1]:
            continue
        if start > cursor:
            gaps.append((cursor, min(start, wanted[1])))
        cursor = max(cursor, end)
        if cursor >= wanted[1]:
            break
    if cursor < wanted[1]:
        gaps.append((cursor, wanted[1]))
    return gaps
