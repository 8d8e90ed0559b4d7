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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from domain import indicators


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


def _previous(values: np.ndarray) -> np.ndarray:
    shifted = np.empty_like(values)
    shifted[0] = np.nan
    shifted[1:] = values[:-1]
    return shifted


def crossed_above(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """fast > slow at t after fast <= slow at t-1, both defined at both bars."""
    return (fast > slow) & (_previous(fast) <= _previous(slow))


def crossed_below(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """fast <= slow at t after fast > slow at t-1, both defined at both bars."""
    return (fast <= slow) & (_previous(fast) > _previous(slow))


def _moving_average(close: np.ndarray, p: dict[str, Any]) -> Signals:
    fast, slow = indicators.sma(close, p["shortWindow"]), indicators.sma(close, p["longWindow"])
    return Signals(
        crossed_above(fast, slow),
        crossed_below(fast, slow),
        "moving_average_bullish_cross",
        "moving_average_bearish_cross",
        "sma",
    )


def _bollinger_bands(close: np.ndarray, p: dict[str, Any]) -> Signals:
    bands = indicators.bollinger(close, p["period"], p["stdDev"])
    return Signals(
        close < bands.lower,
        close >= bands.middle,
        "bollinger_lower_band_break",
        "bollinger_middle_band_reversion",
        "bollinger",
    )


def _rsi(close: np.ndarray, p: dict[str, Any]) -> Signals:
    strength = indicators.rsi(close, p["period"])
    level = np.full_like(strength, float(p["oversold"]))
    return Signals(
        crossed_above(strength, level), strength >= p["overbought"], "rsi_oversold_reversal", "rsi_overbought", "rsi"
    )


def _macd(close: np.ndarray, p: dict[str, Any]) -> Signals:
    line, signal, _ = indicators.macd(close, p["fast"], p["slow"], p["signal"])
    return Signals(
        crossed_above(line, signal), crossed_below(line, signal), "macd_bullish_cross", "macd_bearish_cross", "macd"
    )


def z_score(close: np.ndarray, window: int) -> np.ndarray:
    """(close - SMA) / population SD over the window; NaN in the warm-up and where the window is flat."""
    bands = indicators.bollinger(close, window, 1.0)
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
