"""A backtest: its configuration (the reference's keys plus slippage and sizing), and the result body built
from bars, a template's signals, the engine and the metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import numpy as np
import orjson
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from domain import engine, metrics, signals
from domain.market import SyncRequest

# A result carries one equity point per bar; beyond this the body stops being something to send whole.
MAX_BARS = 200_000
# Bars per year by timeframe: US equities trade 252 sessions of 6.5 hours; crypto trades around the clock.
_EQUITY_BARS_PER_DAY = {"1Day": 1, "1Hour": 7, "15Min": 26, "5Min": 78, "1Min": 390}
_CRYPTO_BARS_PER_DAY = {"1Day": 1, "1Hour": 24, "15Min": 96, "5Min": 288, "1Min": 1440}


class InsufficientData(ValueError):
    """Too few bars for the template's warm-up plus a trade."""


# The front end's frequencies, as our timeframes.
FREQUENCIES = {"1d": "1Day", "1h": "1Hour", "15m": "15Min", "5m": "5Min", "1m": "1Min"}
# An inline series is a request body's worth of closes, never more than a result can carry.
MAX_INLINE_PRICES = 20_000
_STEP = {"1Day": timedelta(days=1), "1Hour": timedelta(hours=1), "15Min": timedelta(minutes=15)}
_STEP |= {"5Min": timedelta(minutes=5), "1Min": timedelta(minutes=1)}


@dataclass(frozen=True)
class Span:
    """What a runnable config's bars are, with nothing left optional."""

    symbol: str
    timeframe: str
    start_date: date
    end_date: date


class BacktestConfig(BaseModel):
    """What to backtest on: validated before a backtest exists; defaults are resolved then and stored.

    Besides our keys it takes the shapes the reference's front end sends: ``symbols`` as a string or a
    one-item list, ``frequency`` (``1d``, ``1h``, ...) for ``timeframe``, and ``prices``, an inline series of
    closes that the engine then runs on instead of the provider's bars. A config without a symbol cannot
    run here; it describes a backtest that its client runs and reports.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)

    symbol: str | None = Field(default=None, min_length=1, max_length=32)
    symbols: str | list[str] | None = Field(default=None)
    timeframe: str | None = None
    frequency: str | None = Field(default=None, max_length=8)
    start_date: date | None = None
    end_date: date | None = None
    initial_capital: float = Field(default=100_000.0, gt=0, le=1e12)
    commission_rate: float = Field(default=0.0, ge=0, le=0.1)
    slippage_bps: float = Field(default=0.0, ge=0, le=1000)
    position_fraction: float = Field(default=1.0, gt=0, le=1)
    fractional: bool = True
    periods_per_year: int | None = Field(default=None, ge=1, le=1_000_000)
    prices: list[Annotated[float, Field(gt=0, le=1e12)]] | None = Field(
        default=None, min_length=2, max_length=MAX_INLINE_PRICES
    )
    display_name: str | None = Field(default=None, min_length=1, max_length=120)

    @field_validator("symbols")
    @classmethod
    def _one_symbol(cls, symbols: str | list[str] | None) -> list[str] | None:
        listed = [symbols] if isinstance(symbols, str) else symbols
        if listed is not None and len(listed) != 1:
            raise ValueError("a backtest runs on one symbol: give symbols as one string or a one-item list")
        return listed

    @model_validator(mode="after")
    def _resolved(self) -> BacktestConfig:
        self.timeframe = self._resolved_timeframe()
        symbol = self.symbol or (self.symbols[0] if self.symbols else None)
        self.symbol = SyncRequest._clean([symbol])[0] if symbol is not None else None
        self.symbols = self.frequency = None
        self.end_date = self.end_date or datetime.now(UTC).date() - timedelta(days=1)
        self.start_date = self.start_date or self.end_date - timedelta(days=365)
        if self.end_date < self.start_date:
            raise ValueError("endDate must not be before startDate")
        if self.periods_per_year is None:
            crypto = self.symbol is not None and "/" in self.symbol
            per_day = _CRYPTO_BARS_PER_DAY if crypto else _EQUITY_BARS_PER_DAY
            self.periods_per_year = (365 if crypto else 252) * per_day[self.timeframe]
        return self

    def _resolved_timeframe(self) -> str:
        if self.frequency is not None:
            if self.frequency not in FREQUENCIES:
                raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}")
            if self.timeframe is not None and self.timeframe != FREQUENCIES[self.frequency]:
                raise ValueError("frequency and timeframe disagree")
            return FREQUENCIES[self.frequency]
        return SyncRequest._known_timeframe(self.timeframe or "1Day")

    @property
    def runnable(self) -> bool:
        """Whether our engine can run it: it names a symbol (whose bars come inline or from the provider)."""
        return self.symbol is not None

    def inline_bars(self) -> pd.DataFrame | None:
        """The inline closes as bars, one per timeframe step from the start date; None without them."""
        if self.prices is None:
            return None
        assert self.start_date is not None and self.timeframe is not None  # resolved by the validator
        start = datetime.combine(self.start_date, datetime.min.time(), tzinfo=UTC)
        closes = np.asarray(self.prices, dtype=float)
        stamps = pd.date_range(start, periods=len(closes), freq=_STEP[self.timeframe])
        return pd.DataFrame({"timestamp": stamps, "open": closes, "high": closes, "low": closes, "close": closes})

    def stored(self) -> dict[str, Any]:
        """The resolved configuration, camelCase, as the backtest keeps it."""
        return self.model_dump(
            mode="json", by_alias=True, exclude={"symbols", "frequency", "display_name"}, exclude_none=True
        )

    def span(self) -> Span:
        """The resolved symbol, timeframe and dates; ValueError for a config that names no symbol."""
        if self.symbol is None:
            raise ValueError("the config names no symbol to run on")
        assert self.timeframe is not None and self.start_date is not None and self.end_date is not None  # resolved
        return Span(self.symbol, self.timeframe, self.start_date, self.end_date)

    def as_sync(self) -> SyncRequest:
        return SyncRequest(
            symbols=[self.symbol], start_date=self.start_date, end_date=self.end_date, timeframe=self.timeframe
        )

    def execution(self) -> engine.ExecutionConfig:
        return engine.ExecutionConfig(
            initial_capital=self.initial_capital,
            commission_rate=self.commission_rate,
            slippage_bps=self.slippage_bps,
            position_fraction=self.position_fraction,
            fractional=self.fractional,
        )


def minimum_bars(template: str, parameters: dict[str, Any]) -> int:
    """The warm-up, one bar for the signal and one to fill it."""
    return signals.warmup(template, parameters) + 2


@dataclass(frozen=True)
class BarArrays:
    """Bars as the engine reads them, in time order: plain arrays, cheap to send to another process."""

    timestamps: np.ndarray  # datetime64[ns], UTC
    open: np.ndarray  # float64
    close: np.ndarray  # float64

    @classmethod
    def of(cls, bars: pd.DataFrame) -> BarArrays:
        """From a frame with timestamp, open and close columns (timestamps naive UTC or aware)."""
        stamps = pd.to_datetime(bars["timestamp"], utc=True).dt.tz_convert(None).to_numpy("datetime64[ns]")
        return cls(stamps, bars["open"].to_numpy(float), bars["close"].to_numpy(float))

    @classmethod
    def joined(cls, parts: list[BarArrays]) -> BarArrays:
        """Consecutive runs of bars as one."""
        return cls(
            np.concatenate([part.timestamps for part in parts]),
            np.concatenate([part.open for part in parts]),
            np.concatenate([part.close for part in parts]),
        )

    def __len__(self) -> int:
        return len(self.close)


def run(bars: pd.DataFrame, template: str, parameters: dict[str, Any], config: BacktestConfig) -> dict[str, Any]:
    """The result body's computed part: equity curve, per-bar returns, trades with reasons, metrics.

    ``bars`` has timestamp, open and close columns in time order.
    """
    return run_arrays(BarArrays.of(bars), template, parameters, config)


def run_arrays(bars: BarArrays, template: str, parameters: dict[str, Any], config: BacktestConfig) -> dict[str, Any]:
    """``run`` over arrays (what ``run_as_json`` runs in a process pool)."""
    ran = evaluate(bars, template, parameters, config)
    stamps = _iso_stamps(bars.timestamps)
    equity = ran.outcome.equity
    assert config.symbol is not None  # a config that reaches the engine names its symbol
    return {
        "equityCurve": [{"index": i, "timestamp": stamps[i], "equity": float(e)} for i, e in enumerate(equity[1:])],
        "dailyReturns": metrics.returns_of(equity).tolist(),
        "trades": _trade_rows(ran.outcome.trades, ran.rule, config.symbol, stamps),
        "metrics": ran.metrics,
    }


@dataclass(frozen=True)
class Evaluation:
    """A run's engine outcome and metrics, before any of the result body is built."""

    rule: signals.Signals
    outcome: engine.EngineResult
    metrics: dict[str, Any]


def evaluate(bars: BarArrays, template: str, parameters: dict[str, Any], config: BacktestConfig) -> Evaluation:
    """The engine and the metrics of a backtest: what a result body is built from, and all that a research
    trial needs (so that a trial's score is its backtest's metric, computed by the same code)."""
    return evaluate_many(bars, template, [parameters], config)[0]


def evaluate_many(
    bars: BarArrays, template: str, parameter_sets: list[dict[str, Any]], config: BacktestConfig
) -> list[Evaluation]:
    """``evaluate`` of each parameter set on the same bars, their metrics computed together (a sweep's batch of
    trials costs little more than its engine runs). InsufficientData when a set has too few bars."""
    for parameters in parameter_sets:
        short = insufficient(bars, template, parameters)
        if short is not None:
            raise short
    if not parameter_sets:
        return []
    execution = config.execution()
    rules = [signals.signals(template, bars.close, parameters) for parameters in parameter_sets]
    outcomes = [engine.run(bars.open, bars.close, rule.entries, rule.exits, execution) for rule in rules]
    # The validator resolved the periods per year.
    assert config.periods_per_year is not None
    found = metrics.summaries(
        np.array([outcome.equity for outcome in outcomes]),
        [outcome.trade_pnl for outcome in outcomes],
        np.array([outcome.position > 0 for outcome in outcomes]),
        config.periods_per_year,
    )
    return [
        Evaluation(rule, outcome, _reported(summary, outcome, config, len(bars)))
        for rule, outcome, summary in zip(rules, outcomes, found, strict=True)
    ]


def insufficient(bars: BarArrays, template: str, parameters: dict[str, Any]) -> InsufficientData | None:
    """Why the bars are too few for the parameters' warm-up, if they are."""
    needed = minimum_bars(template, parameters)
    if len(bars) < needed:
        return InsufficientData(f"{len(bars)} bars in range; {template} with these parameters needs {needed}")
    return None


def _reported(summary: dict[str, Any], outcome: engine.EngineResult, config: BacktestConfig, bars: int) -> dict:
    summary.update(finalEquity=float(outcome.equity[-1]), initialCapital=config.initial_capital, barCount=bars)
    return {key: _finite(value) for key, value in summary.items()}


@dataclass(frozen=True)
class ResultJson:
    body: str  # the whole result body, as JSON text
    metrics: dict[str, Any]


def run_as_json(
    bars: BarArrays, template: str, parameters: dict[str, Any], config: BacktestConfig, header: dict[str, Any]
) -> ResultJson:
    """``run_arrays`` for a process pool: the result body (``header``, then what the run computed) as JSON
    text, made where it was computed, so that the process that stores it neither unpickles nor encodes a
    result's per-bar lists; and its metrics."""
    computed = run_arrays(bars, template, parameters, config)
    body = orjson.dumps({**header, **computed}, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return ResultJson(body, computed["metrics"])


def _trade_rows(trades: list[engine.Trade], rule: signals.Signals, symbol: str, stamps: list[str]) -> list[dict]:
    rows = []
    for trade in trades:
        exit_reason = "force_close" if trade.exit_reason == "force_close" else rule.exit_reason
        common = {"symbol": symbol, "quantity": trade.quantity, "triggered_indicator": rule.indicator}
        rows.append(
            {
                "index": trade.entry_bar,
                "timestamp": stamps[trade.entry_bar],
                "side": "BUY",
                "price": trade.entry_price,
                "reason": rule.entry_reason,
                "pnl": None,
                "metadata": {"signalBar": trade.entry_bar - 1},
                **common,
            }
        )
        rows.append(
            {
                "index": trade.exit_bar,
                "timestamp": stamps[trade.exit_bar],
                "side": "SELL",
                "price": trade.exit_price,
                "reason": exit_reason,
                "pnl": trade.pnl,
                "metadata": {"signalBar": trade.exit_bar if exit_reason == "force_close" else trade.exit_bar - 1},
                **common,
            }
        )
    return rows


def _iso_stamps(timestamps: np.ndarray) -> list[str]:
    """ISO-8601 in UTC, to the second, of datetime64 UTC times."""
    seconds = np.datetime_as_string(timestamps.astype("datetime64[s]"), unit="s")
    return np.char.add(seconds, "+00:00").tolist()


def _finite(value: Any) -> Any:
    """JSON has no infinity or NaN: an undefined metric is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
