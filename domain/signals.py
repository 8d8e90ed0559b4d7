"""Entry and exit signals of the six strategy templates, from the indicators of ``domain.indicators``.

Every rule reads bar t's close and indicator values up to bar t only; the engine fills at bar t+1's open.
Indicators are NaN during their warm-up, and a comparison with NaN is false, so no signal fires before
every value a rule reads is defined.

| template | entry (long) | exit (flat) |
|---|---|---|
| moving_average | SMA(shortWindow) crosses above SMA(longWindow) | it crosses back below (or touches) |
| bollinger_bands | close falls below the lower band | close reaches the middle band |
| rsi | RSI(period) crosses up through ``oversold`` | RSI reaches ``overbought`` |
| macd | MACD line crosses above its signal line | it crosses back below (or touches) |
| mean_reversion | z = (close - SMA(window)) / SD(window) <= -entryZ | z >= -exitZ |
| momentum | close / close ``lookback`` bars ago - 1 > threshold | that return turns negative |

An exit and an entry on the same bar leave the position flat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from domain import indicators

T = TypeVar("T")
# Indicators computed within an ``indicators_shared`` block: (indicator, prices' memory, parameters) → (prices,
# value).
_shared: ContextVar[dict[tuple, tuple[np.ndarray, Any]] | None] = ContextVar("shared_indicators", default=None)


@dataclass(frozen=True)
class Signals:
    entries: np.ndarray
    exits: np.ndarray
    entry_reason: str
    exit_reason: str
    indicator: str  # what the trade list names as its trigger


@dataclass(frozen=True)
class Rule:
    compute: Callable[[np.ndarray, dict[str, Any]], Signals]
    warmup: Callable[[dict[str, Any]], int]  # bars before the first signal can fire


@contextmanager
def indicators_shared() -> Iterator[None]:
    """Within the block, an indicator asked again of the same prices and parameters is the one computed first
    (indicators are read-only arrays): a sweep's trials run on the same bars and share many of theirs."""
    token = _shared.set({})
    try:
        yield
    finally:
        _shared.reset(token)


def _indicator(compute: Callable[..., T], close: np.ndarray, *parameters: Any) -> T:
    kept = _shared.get()
    if kept is None:
        return compute(close, *parameters)
    # Keyed by the prices' memory, not the array object: bars sent to a process arrive with a dtype that makes
    # every np.asarray of them a new view. The entry holds the prices, so their memory is not reused meanwhile.
    key = (compute.__name__, close.__array_interface__["data"][0], close.shape, close.strides, *parameters)
    found = kept.get(key)
    if found is None:
        found = kept[key] = (close, compute(close, *parameters))
    return found[1]


def crosses(fast: np.ndarray, slow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(above, below): fast > slow at t after fast <= slow at t-1; fast <= slow at t after fast > slow at t-1;
    both defined at both bars (a comparison with NaN is false)."""
    over, under = fast > slow, fast <= slow
    was_over, was_under = np.zeros_like(over), np.zeros_like(under)
    was_over[1:], was_under[1:] = over[:-1], under[:-1]
    return over & was_under, under & was_over


def _moving_average(close: np.ndarray, p: dict[str, Any]) -> Signals:
    fast, slow = _indicator(indicators.sma, close, p["shortWindow"]), _indicator(indicators.sma, close, p["longWindow"])
    above, below = crosses(fast, slow)
    return Signals(
        above,
        below,
        "moving_average_bullish_cross",
        "moving_average_bearish_cross",
        "sma",
    )


def _bollinger_bands(close: np.ndarray, p: dict[str, Any]) -> Signals:
    bands = _indicator(indicators.bollinger, close, p["period"], p["stdDev"])
    return Signals(
        close < bands.lower,
        close >= bands.middle,
        "bollinger_lower_band_break",
        "bollinger_middle_band_reversion",
        "bollinger",
    )


def _rsi(close: np.ndarray, p: dict[str, Any]) -> Signals:
    strength = _indicator(indicators.rsi, close, p["period"])
    level = np.full_like(strength, float(p["oversold"]))
    above, _ = crosses(strength, level)
    return Signals(above, strength >= p["overbought"], "rsi_oversold_reversal", "rsi_overbought", "rsi")


def _macd(close: np.ndarray, p: dict[str, Any]) -> Signals:
    line, signal, _ = _indicator(indicators.macd, close, p["fast"], p["slow"], p["signal"])
    above, below = crosses(line, signal)
    return Signals(above, below, "macd_bullish_cross", "macd_bearish_cross", "macd")


def z_score(close: np.ndarray, window: int) -> np.ndarray:
    """(close - SMA) / population SD over the window; NaN in the warm-up and where the window is flat."""
    bands = _indicator(indicators.bollinger, close, window, 1.0)
    deviation = bands.upper - bands.middle
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(deviation > 0, (close - bands.middle) / deviation, np.nan)


def _mean_reversion(close: np.ndarray, p: dict[str, Any]) -> Signals:
    z = z_score(close, p["window"])
    return Signals(
        z <= -p["entryZ"], z >= -p["exitZ"], "mean_reversion_oversold", "mean_reversion_overbought", "zscore"
    )


def _momentum(close: np.ndarray, p: dict[str, Any]) -> Signals:
    lookback = p["lookback"]
    change = np.full_like(close, np.nan)
    change[lookback:] = close[lookback:] / close[:-lookback] - 1.0
    return Signals(change > p["threshold"], change < 0, "momentum_breakout", "momentum_reversal", "momentum")


RULES: dict[str, Rule] = {
    "moving_average": Rule(_moving_average, lambda p: p["longWindow"]),
    "bollinger_bands": Rule(_bollinger_bands, lambda p: p["period"]),
    "rsi": Rule(_rsi, lambda p: p["period"] + 1),
    "macd": Rule(_macd, lambda p: p["slow"] + p["signal"]),
    "mean_reversion": Rule(_mean_reversion, lambda p: p["window"]),
    "momentum": Rule(_momentum, lambda p: p["lookback"] + 1),
}


def signals(template: str, close: np.ndarray, parameters: dict[str, Any]) -> Signals:
    return RULES[template].compute(np.asarray(close, dtype=float), parameters)


def warmup(template: str, parameters: dict[str, Any]) -> int:
    return RULES[template].warmup(parameters)
