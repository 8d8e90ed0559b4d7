"""Market data: assets, quotes, bars, the provider's health, the bar store and the quote stream."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, field_validator

from domain.market import Symbol, known_timeframe
from services.schemas.base import Schema
from services.schemas.jobs import JobError, JobOut

# An ISO-8601 timestamp with its UTC offset, exactly as the provider's time was written ("+00:00").
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class AssetOut(Schema):
    symbol: str
    name: str
    exchange: str
    currency: str
    asset_class: str
    tradable: bool
    fractionable: bool


class QuoteOut(Schema):
    symbol: str
    price: float
    previous_close: float | None
    open_price: float | None
    high_price: float | None
    low_price: float | None
    volume: float | None
    bid_price: float | None
    ask_price: float | None
    timestamp: Timestamp


class QuoteMetadata(Schema):
    cache_hit: bool
    source: str


class QuoteAnswerOut(Schema):
    quote: QuoteOut
    metadata: QuoteMetadata


class BatchQuoteOut(Schema):
    symbol: str
    status: Literal["ok", "error"]
    quote: QuoteOut | None
    error_code: str | None
    cache_hit: bool
    source: str


class BatchQuotesOut(Schema):
    items: list[BatchQuoteOut]
    timestamp: Timestamp


class CandleOut(Schema):
    timestamp: Timestamp
    open_price: float
    high_price: float
    low_price: float
    close_price: float
    volume: float


class HistoryOut(Schema):
    symbol: str
    timeframe: str
    source: str
    candles: list[CandleOut]


class ProviderHealthOut(Schema):
    provider: str
    transport: str
    healthy: bool
    status: Literal["ok", "degraded"]
    message: str
    base_url: str | None = None
    timeout_seconds: float | None = None
    last_latency_ms: float | None = None
    last_failure_code: str | None = None


class BoundaryCheckOut(Schema):
    consistent: bool
    missing_ids: list[str]
    extra_ids: list[str]
    mismatch_count: int
    before_count: int
    after_count: int


class MarketTaskOut(Schema):
    """The reference's task shape ``{taskId, taskType, status, result, error}`` plus the whole job."""

    task_id: str
    task_type: str
    status: str
    # What the job produced: each task type has its own document (synced ranges, indicator series).
    result: dict[str, Any] | None
    error: JobError | None
    job: JobOut

    @classmethod
    def of(cls, job: Any) -> MarketTaskOut:
        run = JobOut.of(job)
        return cls(
            task_id=run.task_id, task_type=run.task_type, status=run.status, result=run.result, error=run.error, job=run
        )


class StreamSubscriptionOut(Schema):
    subscription_id: str
    symbols: list[str]
    channel: str
    timeframe: str


class StreamLimits(Schema):
    connections_per_user: int
    subscriptions_per_connection: int
    symbols_per_subscription: int


class StreamStatusOut(Schema):
    healthy: bool
    status: Literal["ok"]
    mode: Literal["periodic_push"]
    push_interval_seconds: float
    limits: StreamLimits
    connections: int
    users: int


class SyncTaskIn(Schema):
    symbols: list[Symbol] = Field(min_length=1, max_length=100)
    start_date: date
    end_date: date
    timeframe: str = "1Day"
    idempotency_key: str | None = Field(default=None, max_length=128)


class QuotesIn(Schema):
    symbols: list[Symbol] = Field(min_length=1, max_length=50)


class BoundaryIn(Schema):
    symbols: list[Symbol] = Field(min_length=1, max_length=1000)
    timeframe: str = "1Day"

    _known_timeframe = field_validator("timeframe")(known_timeframe)


class IndicatorTaskIn(Schema):
    symbol: Symbol
    start_date: date
    end_date: date
    timeframe: str = "1Day"
    # Each indicator's name and parameters (period, fast, slow, signal, stdDev), checked by the job's request model.
    indicators: list[dict[str, Any]] = Field(min_length=1, max_length=20)
    idempotency_key: str | None = Field(default=None, max_length=128)
