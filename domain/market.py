"""Market-data requests, validated before any job is created."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from domain.indicators import calculate

# What a request may ask for; each provider says which of these it holds (UNSUPPORTED_TIMEFRAME).
TIMEFRAMES = ("1Min", "5Min", "15Min", "1Hour", "1Day")
MAX_SYMBOLS = 100

# Tickers of every provider: letters, digits, dots and dashes (BRK.B, BF-B) and a slash for crypto pairs
# (BTC/USD); 32 characters at most, as the csv provider's file names allow.
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.\-/]{0,31}$"
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-/]{0,31}")

# No market data predates this; an earlier date is a typo, not a request.
EARLIEST_DATE = date(1970, 1, 1)
# The most bars a day can hold per timeframe, for a market trading around the clock (crypto): a range's
# worst case, known before any provider is asked.
BARS_PER_DAY = {"1Min": 1440, "5Min": 288, "15Min": 96, "1Hour": 24, "1Day": 1}
# Validation context key: the most bars one request may cover (the setting market_max_bars_per_request).
MAX_BARS = "max_bars"
RANGE_TOO_LARGE = "market_range_too_large"


def clean_symbol(symbol: str) -> str:
    """The symbol upper-cased and trimmed; anything but a plain ticker is refused."""
    cleaned = symbol.strip().upper()
    if not _SYMBOL.fullmatch(cleaned):
        raise ValueError(f"invalid symbol {symbol[:40]!r}: letters, digits, '.', '-' and '/', at most 32")
    return cleaned


Symbol = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(clean_symbol)]


def worst_case_bars(timeframe: str, start: date, end: date, today: date | None = None) -> int:
    """How many bars ``start..end`` can hold at most; nothing after today exists."""
    last = min(end, today or datetime.now(UTC).date())
    if last < start:
        return 0
    return ((last - start).days + 1) * BARS_PER_DAY[timeframe]


def check_range(start: date, end: date, timeframe: str, max_bars: int | None) -> None:
    """A sane range: not before 1970, ordered, and (given a maximum) not more bars than it allows."""
    if start < EARLIEST_DATE:
        raise ValueError(f"startDate must not be before {EARLIEST_DATE.isoformat()}")
    if end < start:
        raise ValueError("endDate must not be before startDate")
    if max_bars is None:
        return
    bars = worst_case_bars(timeframe, start, end)
    if bars > max_bars:
        raise PydanticCustomError(
            RANGE_TOO_LARGE,
            "{start}..{end} can hold up to {bars} {timeframe} bars; one request may cover at most {max_bars}: "
            "ask for a shorter range or a coarser timeframe",
            {"start": str(start), "end": str(end), "bars": bars, "timeframe": timeframe, "max_bars": max_bars},
        )


def _max_bars(info: ValidationInfo) -> int | None:
    return (info.context or {}).get(MAX_BARS)


def known_timeframe(timeframe: str) -> str:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe must be one of {', '.join(TIMEFRAMES)}")
    return timeframe


class SyncRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)

    symbols: list[Symbol] = Field(min_length=1, max_length=MAX_SYMBOLS)
    start_date: date
    end_date: date
    timeframe: str = "1Day"

    @field_validator("symbols")
    @classmethod
    def _clean(cls, symbols: list[str]) -> list[str]:
        return list(dict.fromkeys(clean_symbol(symbol) for symbol in symbols))

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, timeframe: str) -> str:
        return known_timeframe(timeframe)

    @model_validator(mode="after")
    def _sane_range(self, info: ValidationInfo) -> SyncRequest:
        check_range(self.start_date, self.end_date, self.timeframe, _max_bars(info))
        return self

    @property
    def start(self) -> datetime:
        return datetime.combine(self.start_date, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.end_date, time.max, tzinfo=UTC)


class IndicatorSpec(BaseModel):
    """One indicator of a calculation; parameters left out take the indicator's defaults."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=32)
    period: int | None = Field(default=None, ge=1, le=10_000)
    fast: int | None = Field(default=None, ge=1, le=10_000)
    slow: int | None = Field(default=None, ge=1, le=10_000)
    signal: int | None = Field(default=None, ge=1, le=10_000)
    std_dev: float | None = Field(default=None, gt=0, le=10)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"name"}).items() if v is not None}


class IndicatorsRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)

    symbol: Symbol
    start_date: date
    end_date: date
    timeframe: str = "1Day"
    indicators: list[IndicatorSpec] = Field(min_length=1, max_length=20)

    _known_timeframe = field_validator("timeframe")(known_timeframe)

    @model_validator(mode="after")
    def _ordered(self, info: ValidationInfo) -> IndicatorsRequest:
        check_range(self.start_date, self.end_date, self.timeframe, _max_bars(info))
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
