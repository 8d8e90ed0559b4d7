"""The indicators of domain/indicators.py against the `ta` library, value for value, to 1e-9.

Every comparison runs on realistic OHLC random walks (seeded, a few thousand bars). Where `ta` reports NaN
(its warm-up, with fillna=False) we must report NaN too; everywhere else the two agree to 1e-9, relative for
values of price size and absolute near zero (|ours - ta| <= 1e-9 + 1e-9 * |ta|). The one documented
difference: `ta` fills the ATR warm-up with 0.0 where we report NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import ta

from domain import indicators
from domain.indicators import calculate

TOLERANCE = 1e-9


def random_walk_ohlc(seed: int, bars: int, start: float, volatility: float) -> pd.DataFrame:
    """Geometric random walk of closes; opens gap from the previous close; highs and lows bracket both."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0002, volatility, bars)))
    open_ = np.empty(bars)
    open_[0] = start
    open_[1:] = close[:-1] * np.exp(rng.normal(0, volatility / 4, bars - 1))
    body_high, body_low = np.maximum(open_, close), np.minimum(open_, close)
    high = body_high * (1 + np.abs(rng.normal(0, volatility / 2, bars)))
    low = body_low * (1 - np.abs(rng.normal(0, volatility / 2, bars)))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close})


# Two series, each with its own parameter set: the reference defaults, then other periods throughout.
SERIES = {
    "defaults": (
        random_walk_ohlc(seed=20240601, bars=3000, start=100.0, volatility=0.012),
        {"sma": 20, "ema": 20, "rsi": 14, "macd": (12, 26, 9), "bollinger": (20, 2.0), "atr": 14},
    ),
    "other-params": (
        random_walk_ohlc(seed=7, bars=2500, start=2500.0, volatility=0.03),
        {"sma": 50, "ema": 9, "rsi": 7, "macd": (5, 35, 5), "bollinger": (10, 2.5), "atr": 21},
    ),
}


@pytest.fixture(params=sorted(SERIES))
def case(request) -> tuple[pd.DataFrame, dict]:
    return SERIES[request.param]


def assert_matches(ours: np.ndarray, theirs: pd.Series | np.ndarray) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg="NaN positions differ")
    defined = ~np.isnan(theirs)
    assert defined.sum() > len(theirs) // 2, "the comparison must cover most of the series"
    np.testing.assert_allclose(ours[defined], theirs[defined], rtol=TOLERANCE, atol=TOLERANCE)


# --- equality with the peer ---------------------------------------------------------------------------------


def test_sma_matches_ta(case):
    bars, params = case
    ours = calculate("sma", bars.close, period=params["sma"])
    theirs = ta.trend.SMAIndicator(bars.close, window=params["sma"], fillna=False).sma_indicator()
    assert ours.status == "ok"
    assert_matches(ours.values["value"], theirs)


@pytest.mark.parametrize("period", [1, 2, 511, 512, 513, 1024, 1400])
def test_sma_matches_ta_across_block_boundaries(period):
    bars, _ = SERIES["defaults"]
    theirs = ta.trend.SMAIndicator(bars.close, window=period, fillna=False).sma_indicator()
    assert_matches(indicators.sma(bars.close.to_numpy(), period), theirs)


def test_ema_matches_ta(case):
    bars, params = case
    ours = calculate("ema", bars.close, period=params["ema"])
    theirs = ta.trend.EMAIndicator(bars.close, window=params["ema"], fillna=False).ema_indicator()
    assert_matches(ours.values["value"], theirs)


def test_rsi_matches_ta_including_its_first_value(case):
    bars, params = case
    period = params["rsi"]
    ours = calculate("rsi", bars.close, period=period).values["value"]
    theirs = ta.momentum.RSIIndicator(bars.close, window=period, fillna=False).rsi()
    assert_matches(ours, theirs)
    # ta's Wilder smoothing starts from a zero change at bar 0, so its first RSI is at index period - 1.
    assert np.isnan(ours[period - 2]) and not np.isnan(ours[period - 1])
    assert ours[period - 1] == pytest.approx(theirs.iloc[period - 1], rel=TOLERANCE)


def test_rsi_is_100_when_there_are_no_losses():
    rising = np.linspace(10.0, 20.0, 40)
    ours = indicators.rsi(rising, 14)
    theirs = ta.momentum.RSIIndicator(pd.Series(rising), window=14, fillna=False).rsi()
    assert_matches(ours, theirs)
    assert (ours[13:] == 100.0).all()


def test_macd_matches_ta(case):
    bars, params = case
    fast, slow, signal = params["macd"]
    ours = calculate("macd", bars.close, fast=fast, slow=slow, signal=signal).values
    peer = ta.trend.MACD(bars.close, window_slow=slow, window_fast=fast, window_sign=signal, fillna=False)
    assert_matches(ours["value"], peer.macd())
    assert_matches(ours["signalLine"], peer.macd_signal())
    assert_matches(ours["histogram"], peer.macd_diff())


def test_bollinger_matches_ta_with_the_population_deviation(case):
    bars, params = case
    period, std_dev = params["bollinger"]
    ours = calculate("bollinger", bars.close, period=period, std_dev=std_dev).values
    peer = ta.volatility.BollingerBands(bars.close, window=period, window_dev=std_dev, fillna=False)
    assert_matches(ours["value"], peer.bollinger_mavg())
    assert_matches(ours["upperBand"], peer.bollinger_hband())
    assert_matches(ours["lowerBand"], peer.bollinger_lband())
    # ddof=0: the half-width is std_dev times the population deviation of the window.
    window = bars.close.to_numpy()[-period:]
    assert ours["upperBand"][-1] - ours["value"][-1] == pytest.approx(std_dev * window.std(ddof=0), rel=1e-9)


def test_atr_matches_ta_including_its_seed(case):
    bars, params = case
    period = params["atr"]
    ours = calculate("atr", bars.close, high=bars.high, low=bars.low, period=period).values["value"]
    theirs = ta.volatility.AverageTrueRange(
        bars.high, bars.low, bars.close, window=period, fillna=False
    ).average_true_range()
    theirs = theirs.to_numpy()
    # The documented difference: ta fills the warm-up with 0.0, we report NaN.
    assert (theirs[: period - 1] == 0.0).all()
    assert np.isnan(ours[: period - 1]).all()
    # The seed: the mean of the first `period` true ranges, the first one being high - low.
    first = bars.high.iloc[0] - bars.low.iloc[0]
    rest = np.maximum.reduce(
        [
            (bars.high - bars.low).to_numpy()[1:period],
            np.abs(bars.high.to_numpy()[1:period] - bars.close.to_numpy()[: period - 1]),
            np.abs(bars.low.to_numpy()[1:period] - bars.close.to_numpy()[: period - 1]),
        ]
    )
    assert ours[period - 1] == pytest.approx((first + rest.sum()) / period, rel=TOLERANCE)
    assert_matches(ours[period - 1 :], theirs[period - 1 :])


def test_missing_closes_follow_the_peer():
    bars, _ = SERIES["defaults"]
    close = bars.close.copy()
    close.iloc[[100, 1500, 1501]] = np.nan
    assert_matches(indicators.sma(close, 20), ta.trend.SMAIndicator(close, 20).sma_indicator())
    assert_matches(indicators.ema(close, 20), ta.trend.EMAIndicator(close, 20).ema_indicator())
    assert_matches(indicators.rsi(close, 14), ta.momentum.RSIIndicator(close, 14).rsi())
    macd, peer = indicators.macd(close), ta.trend.MACD(close)
    assert_matches(macd.signal, peer.macd_signal())
    bands, peer = indicators.bollinger(close), ta.volatility.BollingerBands(close)
    assert_matches(bands.lower, peer.bollinger_lband())


def test_calculate_returns_what_the_functions_return():
    bars, _ = SERIES["defaults"]
    close = bars.close.to_numpy()
    np.testing.assert_array_equal(calculate("sma", close).values["value"], indicators.sma(close))
    np.testing.assert_array_equal(calculate("ema", close).values["value"], indicators.ema(close))
    np.testing.assert_array_equal(calculate("rsi", close).values["value"], indicators.rsi(close))
    line, signal, histogram = indicators.macd(close)
    macd = calculate("macd", close).values
    assert list(macd) == ["value", "signalLine", "histogram"]
    for key, array in zip(macd, (line, signal, histogram), strict=True):
        np.testing.assert_array_equal(macd[key], array)
    middle, upper, lower = indicators.bollinger(close)
    bands = calculate("bollinger", close).values
    assert list(bands) == ["value", "upperBand", "lowerBand"]
    for key, array in zip(bands, (middle, upper, lower), strict=True):
        np.testing.assert_array_equal(bands[key], array)
    atr = calculate("atr", close, high=bars.high, low=bars.low).values
    np.testing.assert_array_equal(atr["value"], indicators.atr(bars.high, bars.low, close))
    assert all(len(array) == len(close) for array in (*macd.values(), *bands.values(), atr["value"]))


# --- statuses, defaults and validation ------------------------------------------------------------------------

REQUIRED = [
    ("sma", {}, 20),
    ("ema", {"period": 30}, 30),
    ("rsi", {}, 14),
    ("macd", {}, 26 + 9 - 1),
    ("macd", {"fast": 3, "slow": 10, "signal": 4}, 13),
    ("bollinger", {"period": 5}, 5),
    ("atr", {}, 14),
]


@pytest.mark.parametrize(("name", "params", "required"), REQUIRED)
def test_insufficient_data_below_the_first_full_value(name, params, required):
    bars, _ = SERIES["defaults"]
    short = bars.iloc[: required - 1]
    result = calculate(name, short.close, high=short.high, low=short.low, **params)
    assert result.status == "insufficient_data"
    assert result.required_data_points == required
    assert result.actual_data_points == required - 1
    assert result.values == {}

    exact = bars.iloc[:required]
    result = calculate(name, exact.close, high=exact.high, low=exact.low, **params)
    assert result.status == "ok"
    assert (result.required_data_points, result.actual_data_points) == (required, required)
    # Required is tight: with exactly that many points every output has its first value on the last bar.
    for array in result.values.values():
        assert len(array) == required
        assert not np.isnan(array[-1])
        assert np.isnan(array[:-1]).any() or required == 1


def test_empty_series_is_insufficient():
    result = calculate("ema", [])
    assert (result.status, result.actual_data_points, result.values) == ("insufficient_data", 0, {})


@pytest.mark.parametrize("name", ["vwap", "stochastic", "", "sma2"])
def test_unknown_indicator_is_unsupported(name):
    result = calculate(name, [1.0, 2.0, 3.0], period=2)
    assert result.status == "unsupported"
    assert result.name == name
    assert result.actual_data_points == 3
    assert result.values == {}


def test_calculate_fills_defaults():
    close = SERIES["defaults"][0].close
    assert calculate("sma", close).params == {"period": 20}
    assert calculate("ema", close).params == {"period": 20}
    assert calculate("rsi", close).params == {"period": 14}
    assert calculate("macd", close).params == {"fast": 12, "slow": 26, "signal": 9}
    assert calculate("bollinger", close).params == {"period": 20, "std_dev": 2.0}
    assert calculate("atr", close, high=close + 1, low=close - 1).params == {"period": 14}
    # None means "the default" (an API body carries every key); given values are kept, names are case-blind.
    result = calculate("MACD", close, fast=5, slow=None, signal=None, period=None)
    assert (result.name, result.params) == ("macd", {"fast": 5, "slow": 26, "signal": 9})
    assert calculate("bollinger", close, std_dev=3).params == {"period": 20, "std_dev": 3.0}
    assert calculate("sma", close, period=7.0).params == {"period": 7}
    assert indicators.defaults("bollinger") == {"period": 20, "std_dev": 2.0}
    assert set(indicators.SUPPORTED) == {"sma", "ema", "rsi", "macd", "bollinger", "atr"}


INVALID = [
    ("sma", {"period": 0}, "period must be at least 1"),
    ("ema", {"period": -3}, "period must be at least 1"),
    ("rsi", {"period": 2.5}, "period must be an integer"),
    ("sma", {"period": "20"}, "period must be an integer"),
    ("sma", {"period": True}, "period must be an integer"),
    ("atr", {"period": math.nan}, "period must be an integer"),
    ("macd", {"fast": 26, "slow": 26}, "fast must be smaller than slow"),
    ("macd", {"fast": 30}, "fast must be smaller than slow"),
    ("macd", {"signal": 0}, "signal must be at least 1"),
    ("bollinger", {"std_dev": 0}, "std_dev must be a finite number greater than 0"),
    ("bollinger", {"std_dev": -1.5}, "std_dev must be a finite number greater than 0"),
    ("bollinger", {"std_dev": math.inf}, "std_dev must be a finite number greater than 0"),
    ("bollinger", {"std_dev": "2"}, "std_dev must be a number"),
    ("sma", {"fast": 3}, "sma does not take parameter"),
]


@pytest.mark.parametrize(("name", "params", "message"), INVALID)
def test_invalid_parameters_raise(name, params, message):
    close = SERIES["defaults"][0].close
    with pytest.raises(ValueError, match=message):
        calculate(name, close, high=close + 1, low=close - 1, **params)


def test_invalid_parameters_raise_even_on_short_series():
    with pytest.raises(ValueError, match="period must be at least 1"):
        calculate("sma", [1.0], period=0)


def test_the_functions_validate_too():
    close = SERIES["defaults"][0].close
    with pytest.raises(ValueError, match="period"):
        indicators.sma(close, 0)
    with pytest.raises(ValueError, match="fast must be smaller than slow"):
        indicators.macd(close, fast=9, slow=5)
    with pytest.raises(ValueError, match="std_dev"):
        indicators.bollinger(close, std_dev=-2)


def test_bad_price_inputs_raise():
    close = SERIES["defaults"][0].close
    with pytest.raises(ValueError, match="atr needs high and low"):
        calculate("atr", close)
    with pytest.raises(ValueError, match="same length"):
        calculate("atr", close, high=close + 1, low=(close - 1).iloc[:-1])
    with pytest.raises(ValueError, match="one-dimensional"):
        calculate("sma", np.ones((30, 2)))
    with pytest.raises(ValueError, match="sequence of numbers"):
        calculate("sma", ["a", "b"])


def test_results_are_immutable():
    result = calculate("rsi", SERIES["defaults"][0].close)
    with pytest.raises(AttributeError):
        result.status = "unsupported"
    with pytest.raises(ValueError):
        result.values["value"][-1] = 0.0
