"""Market-data requests, validated before any job is created."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

TIMEFRAMES = ("1Day", "1Hour")
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
