"""Technical indicators over price series: vectorized, pure, no I/O.

Every function takes one-dimensional price data (a numpy array, a pandas Series or any sequence of numbers),
returns float64 arrays as long as its input, and marks the warm-up positions (where the window is not yet
full) with NaN. The arrays it returns are read-only. The conventions are those of the ``ta`` library (the
peer our tests compare against to 1e-9), written out in each docstring; the one deliberate difference is the
ATR warm-up, which is NaN here where ``ta`` reports 0.0.

The hot paths are numpy and pandas primitives: no Python loop per bar. Recursive filters (EMA, Wilder's
smoothing) use ``pandas.Series.ewm(adjust=False)``, a compiled first-order recursion. Missing values (NaN)
in the input follow the pandas semantics of those primitives.

``calculate`` is the registry the market-data job and the API use: an indicator by name, its parameters with
defaults filled in, and the reference's statuses ``ok``, ``insufficient_data`` and ``unsupported``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

Status = Literal["ok", "insufficient_data", "unsupported"]

# Rolling sums are prefix sums restarted every _BLOCK bars (or every `period` bars if that is longer): the
# running totals stay within a block's worth of prices, so a window's rounding error is a few hundred ulps
# of a price whatever the length of the series (one prefix sum over a million bars would lose four more
# digits). The block size barely changes the speed.
_BLOCK = 512


class MACD(NamedTuple):
    line: np.ndarray
    signal: np.ndarray
    histogram: np.ndarray


class Bollinger(NamedTuple):
    middle: np.ndarray
    upper: np.ndarray
    lower: np.ndarray


# --- input and parameter checks ---------------------------------------------------------------------------


def _prices(values: Any, name: str = "close") -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a one-dimensional sequence of numbers") from exc
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got {array.ndim} dimensions")
    return array


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        number = int(value)
    else:
        as_float = float(value)
        if not as_float.is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}")
        number = int(as_float)
    if number < 1:
        raise ValueError(f"{name} must be at least 1, got {number}")
    return number


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a finite number greater than 0, got {value!r}")
    return number


def _macd_periods(fast: Any, slow: Any, signal: Any) -> tuple[int, int, int]:
    fast, slow, signal = _positive_int("fast", fast), _positive_int("slow", slow), _positive_int("signal", signal)
    if fast >= slow:
        raise ValueError(f"fast must be smaller than slow, got fast={fast} and slow={slow}")
    return fast, slow, signal


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# --- primitives ---------------------------------------------------------------------------------------------


def _series(array: np.ndarray) -> pd.Series:
    return pd.Series(array, copy=False)


def _ewm(array: np.ndarray, *, min_periods: int, span: int | None = None, alpha: float | None = None) -> np.ndarray:
    """y[0] = x[0], y[t] = (1 - a) * y[t-1] + a * x[t]; NaN until min_periods observations were seen."""
    window = _series(array).ewm(span=span, alpha=alpha, min_periods=min_periods, adjust=False)
    return window.mean().to_numpy()


def _rolling_mean(x: np.ndarray, period: int) -> np.ndarray:
    """mean(x[t-period+1 .. t]) from block-restarted prefix sums; NaN before the window is full.

    Within each block of ``block`` bars, ``prefix`` is the running sum since the block's start, so a window
    ending at t sums to prefix[t] - prefix[t-period], plus the previous block's total when the window
    reaches back into it (period <= block, so at most one block back).
    """
    n = x.size
    out = np.full(n, np.nan)
    if n < period:
        return out
    block = max(_BLOCK, period)
    full, rest = divmod(n, block)
    blocks = full + (1 if rest else 0)
    prefix = np.empty((blocks, block))
    if full:
        np.cumsum(x[: full * block].reshape(full, block), axis=1, out=prefix[:full])
    if rest:
        np.cumsum(x[full * block :], out=prefix[full, :rest])
        prefix[full, rest:] = 0.0
    totals = prefix[:, -1]
    flat = prefix.reshape(-1)
    if not (np.isfinite(totals).all() and math.isfinite(flat[n - 1])):
        # NaN or infinity somewhere (it runs on to its block's total): keep the pandas semantics.
        return _series(x).rolling(period, min_periods=period).mean().to_numpy()
    sums = np.empty(blocks * block)
    sums[period - 1] = flat[period - 1]
    np.subtract(flat[period:n], flat[: n - period], out=sums[period:n])
    sums[n:] = 0.0
    sums.reshape(blocks, block)[1:, :period] += totals[:-1, None]
    np.divide(sums[period - 1 : n], period, out=out[period - 1 :])
    return out


def _rolling_std(x: np.ndarray, period: int) -> np.ndarray:
    """Population standard deviation (ddof=0) of x[t-period+1 .. t]; NaN before the window is full."""
    variance = _series(x).rolling(period, min_periods=period).var(ddof=0).to_numpy()
    std = np.maximum(variance, 0.0)  # the online update can leave -1e-17 where the data is flat
    return np.sqrt(std, out=std)


def _ema(x: np.ndarray, period: int) -> np.ndarray:
    return _ewm(x, span=period, min_periods=period)


# --- indicators -------------------------------------------------------------------------------------------


def sma(close: Any, period: int = 20) -> np.ndarray:
    """Simple moving average.

    SMA[t] = (close[t-period+1] + ... + close[t]) / period, for t >= period - 1; NaN before.
    """
    period = _positive_int("period", period)
    return _frozen(_rolling_mean(_prices(close), period))


def ema(close: Any, period: int = 20) -> np.ndarray:
    """Exponential moving average, seeded with the first close.

    a = 2 / (period + 1); e[0] = close[0]; e[t] = a * close[t] + (1 - a) * e[t-1].
    EMA[t] = e[t] for t >= period - 1; NaN before.
    """
    period = _positive_int("period", period)
    return _frozen(_ema(_prices(close), period))


def rsi(close: Any, period: int = 14) -> np.ndarray:
    """Relative strength index with Wilder's smoothing (the ``ta`` convention).

    d[0] = 0 and d[t] = close[t] - close[t-1]; gain[t] = max(d[t], 0), loss[t] = max(-d[t], 0).
    Wilder's smoothing, a = 1 / period: G[0] = gain[0] = 0, G[t] = a * gain[t] + (1 - a) * G[t-1],
    and L likewise from the losses (so the recursion starts from the zero change of bar 0).
    RSI[t] = 100 - 100 / (1 + G[t] / L[t]), and 100 where L[t] = 0, for t >= period - 1; NaN before.
    """
    period = _positive_int("period", period)
    x = _prices(close)
    n = x.size
    if n == 0:
        return _frozen(np.empty(0))
    change = np.empty(n)
    change[0] = 0.0
    np.subtract(x[1:], x[:-1], out=change[1:])
    gains = np.fmax(change, 0.0)  # fmax: a NaN change counts as no gain, as in ta
    losses = np.fmax(np.negative(change, out=change), 0.0, out=change)
    alpha = 1.0 / period
    avg_gain = _ewm(gains, alpha=alpha, min_periods=period)
    avg_loss = _ewm(losses, alpha=alpha, min_periods=period)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(avg_gain, avg_loss)
        out += 1.0
        np.divide(100.0, out, out=out)
        np.subtract(100.0, out, out=out)
    out[avg_loss == 0.0] = 100.0
    return _frozen(out)


def macd(close: Any, fast: int = 12, slow: int = 26, signal: int = 9) -> MACD:
    """Moving average convergence divergence.

    line[t] = EMA(close, fast)[t] - EMA(close, slow)[t]   (NaN for t < slow - 1)
    signal = EMA(line, signal), seeded with the first defined line value (NaN for t < slow + signal - 2)
    histogram[t] = line[t] - signal[t]
    with EMA as in ``ema``; fast must be smaller than slow.
    """
    fast, slow, signal = _macd_periods(fast, slow, signal)
    x = _prices(close)
    line = np.subtract(_ema(x, fast), _ema(x, slow))
    signal_line = _ewm(line, span=signal, min_periods=signal)
    histogram = np.subtract(line, signal_line)
    return MACD(_frozen(line), _frozen(signal_line), _frozen(histogram))


def bollinger(close: Any, period: int = 20, std_dev: float = 2.0) -> Bollinger:
    """Bollinger bands with the population standard deviation.

    middle[t] = SMA(close, period)[t]
    sd[t] = sqrt(sum((close[i] - middle[t])^2 for i in t-period+1 .. t) / period)   (ddof = 0, as in ta)
    upper[t] = middle[t] + std_dev * sd[t];  lower[t] = middle[t] - std_dev * sd[t]
    NaN for t < period - 1.
    """
    period = _positive_int("period", period)
    std_dev = _positive_float("std_dev", std_dev)
    x = _prices(close)
    middle = _rolling_mean(x, period)
    width = _rolling_std(x, period)
    width *= std_dev
    upper = np.add(middle, width)
    lower = np.subtract(middle, width, out=width)
    return Bollinger(_frozen(middle), _frozen(upper), _frozen(lower))


def atr(high: Any, low: Any, close: Any, period: int = 14) -> np.ndarray:
    """Average true range with Wilder's smoothing, seeded as ``ta`` seeds it.

    TR[0] = high[0] - low[0];
    TR[t] = max(high[t] - low[t], |high[t] - close[t-1]|, |low[t] - close[t-1]|) for t >= 1.
    ATR[period-1] = (TR[0] + ... + TR[period-1]) / period;
    ATR[t] = (ATR[t-1] * (period - 1) + TR[t]) / period for t >= period; NaN for t < period - 1
    (``ta`` reports 0.0 there).
    """
    period = _positive_int("period", period)
    h, lo, c = _prices(high, "high"), _prices(low, "low"), _prices(close, "close")
    if not h.size == lo.size == c.size:
        raise ValueError(f"high, low and close must have the same length, got {h.size}, {lo.size} and {c.size}")
    n = c.size
    out = np.full(n, np.nan)
    if n < period:
        return _frozen(out)
    true_range = np.subtract(h, lo)
    previous = c[:-1]
    gap_up = np.abs(np.subtract(h[1:], previous))
    gap_down = np.subtract(lo[1:], previous)
    np.abs(gap_down, out=gap_down)
    np.fmax(true_range[1:], gap_up, out=true_range[1:])
    np.fmax(true_range[1:], gap_down, out=true_range[1:])
    # The smoothing is an EMA with a = 1 / period started at the seed: (A*(p-1) + TR)/p == (1-a)*A + a*TR.
    true_range[period - 1] = true_range[:period].mean()
    out[period - 1 :] = _ewm(true_range[period - 1 :], alpha=1.0 / period, min_periods=1)
    return _frozen(out)


# --- registry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndicatorResult:
    """One indicator over one series: its status, the data it needed and had, and its output arrays."""

    name: str
    status: Status
    required_data_points: int
    actual_data_points: int
    params: dict[str, Any] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class _Indicator:
    defaults: Mapping[str, Any]
    outputs: tuple[str, ...]
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    required: Callable[[dict[str, Any]], int]
    compute: Callable[..., tuple[np.ndarray, ...]]
    needs_high_low: bool = False


def _period_only(params: dict[str, Any]) -> dict[str, Any]:
    return {"period": _positive_int("period", params["period"])}


def _macd_params(params: dict[str, Any]) -> dict[str, Any]:
    fast, slow, signal = _macd_periods(params["fast"], params["slow"], params["signal"])
    return {"fast": fast, "slow": slow, "signal": signal}


def _bollinger_params(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "period": _positive_int("period", params["period"]),
        "std_dev": _positive_float("std_dev", params["std_dev"]),
    }


_INDICATORS: dict[str, _Indicator] = {
    "sma": _Indicator(
        {"period": 20}, ("value",), _period_only, lambda p: p["period"], lambda c, h, lo, **p: (sma(c, **p),)
    ),
    "ema": _Indicator(
        {"period": 20}, ("value",), _period_only, lambda p: p["period"], lambda c, h, lo, **p: (ema(c, **p),)
    ),
    "rsi": _Indicator(
        {"period": 14}, ("value",), _period_only, lambda p: p["period"], lambda c, h, lo, **p: (rsi(c, **p),)
    ),
    "macd": _Indicator(
        {"fast": 12, "slow": 26, "signal": 9},
        ("value", "signalLine", "histogram"),
        _macd_params,
        lambda p: p["slow"] + p["signal"] - 1,
        lambda c, h, lo, **p: tuple(macd(c, **p)),
    ),
    "bollinger": _Indicator(
        {"period": 20, "std_dev": 2.0},
        ("value", "upperBand", "lowerBand"),
        _bollinger_params,
        lambda p: p["period"],
        lambda c, h, lo, **p: tuple(bollinger(c, **p)),
    ),
    "atr": _Indicator(
        {"period": 14},
        ("value",),
        _period_only,
        lambda p: p["period"],
        lambda c, h, lo, **p: (atr(h, lo, c, **p),),
        needs_high_low=True,
    ),
}

SUPPORTED: tuple[str, ...] = tuple(_INDICATORS)


def defaults(name: str) -> dict[str, Any]:
    """The default parameters of a supported indicator (KeyError for any other name)."""
    return dict(_INDICATORS[name.strip().lower()].defaults)


def calculate(name: str, close: Any, high: Any = None, low: Any = None, **params: Any) -> IndicatorResult:
    """Compute one indicator by name over closing prices (and high/low for ``atr``).

    Parameters left out or given as None take their defaults; ``params`` of the result holds the effective
    ones. An unknown name is status ``unsupported``; fewer points than the indicator needs for one full
    value is ``insufficient_data`` with no values. Invalid parameters (a period below 1, fast not below
    slow, std_dev not above 0, a non-numeric value, a parameter the indicator does not take) and missing or
    mismatched high/low prices for ``atr`` raise ValueError.

    Required data points: period for sma, ema, rsi, bollinger and atr; slow + signal - 1 for macd (the first
    bar with a signal line). Output keys: ``value`` for all, plus ``signalLine`` and ``histogram`` for macd
    and ``upperBand`` and ``lowerBand`` for bollinger (whose ``value`` is the middle band).
    """
    closes = _prices(close)
    given = {key: value for key, value in params.items() if value is not None}
    key = name.strip().lower() if isinstance(name, str) else ""
    indicator = _INDICATORS.get(key)
    if indicator is None:
        return IndicatorResult(str(name), "unsupported", 0, closes.size, given, {})
    unknown = sorted(set(given) - set(indicator.defaults))
    if unknown:
        raise ValueError(
            f"{key} does not take parameter(s) {', '.join(unknown)}; it takes {', '.join(indicator.defaults)}"
        )
    effective = indicator.validate({**indicator.defaults, **given})
    highs = lows = None
    if indicator.needs_high_low:
        if high is None or low is None:
            raise ValueError(f"{key} needs high and low prices as well as close")
        highs, lows = _prices(high, "high"), _prices(low, "low")
        if not highs.size == lows.size == closes.size:
            raise ValueError(
                f"high, low and close must have the same length, got {highs.size}, {lows.size} and {closes.size}"
            )
    required = indicator.required(effective)
    if closes.size < required:
        return IndicatorResult(key, "insufficient_data", required, closes.size, effective, {})
    outputs = indicator.compute(closes, highs, lows, **effective)
    return IndicatorResult(
        key, "ok", required, closes.size, effective, dict(zip(indicator.outputs, outputs, strict=True))
    )
