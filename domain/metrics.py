"""Backtest metrics, defined as empyrical and vectorbt define them (reference metrics.md).

Inputs are an equity curve E_0..E_N marked to market at each bar's close and ``periods`` A, the number of
bars per year (252 for daily US equities). Per-bar returns r_t = E_t / E_{t-1} - 1 for t = 1..N.
Every function is pure and returns ``None`` where the metric is undefined.

The per-bar metrics are defined once, over rows: ``summaries`` computes a whole batch of a sweep's trials (one
equity curve per row) in one pass of numpy, which spends more time dispatching than summing on one
backtest's few thousand returns; a single curve is a batch of one row. Each row is reduced as numpy reduces a
one-dimensional array (pairwise sums), so a row's figures are those of its curve alone, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

TRADING_DAYS = 252

Figure = float | int | None


def returns_of(equity: Sequence[float] | np.ndarray) -> np.ndarray:
    """r_t = E_t / E_{t-1} - 1 (of each row, for a matrix of curves)."""
    curve = np.asarray(equity, dtype=float)
    return curve[..., 1:] / curve[..., :-1] - 1.0


# --- per bar, over rows -----------------------------------------------------------------------------------


def _totals(returns: np.ndarray) -> np.ndarray:
    """returnRate = prod(1 + r) - 1 = E_N / E_0 - 1."""
    return (1.0 + returns).prod(axis=-1) - 1.0


def _means(values: np.ndarray) -> np.ndarray:
    """np.mean of each row."""
    return values.sum(axis=-1) / values.shape[-1]


def _deviations(values: np.ndarray) -> np.ndarray:
    """np.std(ddof=1) of each row."""
    centred = values - _means(values)[..., np.newaxis]
    return np.sqrt((centred * centred).sum(axis=-1) / (values.shape[-1] - 1))


def _downside(returns: np.ndarray) -> np.ndarray:
    """sqrt(mean(min(r, 0)^2)), the mean over all N returns."""
    losses = np.minimum(returns, 0.0)
    return np.sqrt(_means(losses * losses))


def _drawdowns(curves: np.ndarray) -> np.ndarray:
    """max_t (1 - E_t / max_{s<=t} E_s), a positive fraction; E_0 counts as a peak."""
    return (1.0 - curves / np.maximum.accumulate(curves, axis=-1)).max(axis=-1)


def _quotients(numerators: np.ndarray, denominators: np.ndarray, scale: float = 1.0) -> list[float | None]:
    """numerator / denominator * scale of each row; None where the denominator is 0."""
    return [None if d == 0 else n / d * scale for n, d in zip(numerators.tolist(), denominators.tolist(), strict=True)]


def _row(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(1, -1)


# --- one series ---------------------------------------------------------------------------------------------


def total_return(returns: np.ndarray) -> float:
    """returnRate = prod(1 + r) - 1 = E_N / E_0 - 1."""
    return float(_totals(_row(returns))[0])


def cagr(returns: np.ndarray, periods: int = TRADING_DAYS) -> float | None:
    """(1 + returnRate)^(A / N) - 1."""
    if len(returns) == 0:
        return None
    return float((1.0 + total_return(returns)) ** (periods / len(returns)) - 1.0)


def annual_volatility(returns: np.ndarray, periods: int = TRADING_DAYS) -> float | None:
    """std(r, ddof=1) * sqrt(A)."""
    if len(returns) < 2:
        return None
    return float(_deviations(_row(returns))[0] * math.sqrt(periods))


def sharpe_ratio(returns: np.ndarray, periods: int = TRADING_DAYS) -> float | None:
    """mean(r) / std(r, ddof=1) * sqrt(A); None for a flat series."""
    if len(returns) < 2:
        return None
    row = _row(returns)
    return _quotients(_means(row), _deviations(row), math.sqrt(periods))[0]


def sortino_ratio(returns: np.ndarray, periods: int = TRADING_DAYS) -> float | None:
    """mean(r) * A / (sqrt(mean(min(r, 0)^2)) * sqrt(A)), the mean in the root over all N returns."""
    if len(returns) == 0:
        return None
    row = _row(returns)
    return _quotients(_means(row) * periods, _downside(row) * math.sqrt(periods))[0]


def max_drawdown(equity: Sequence[float] | np.ndarray) -> float:
    """max_t (1 - E_t / max_{s<=t} E_s), a positive fraction; E_0 counts as a peak."""
    if len(equity) == 0:
        return 0.0
    return float(_drawdowns(_row(equity))[0])


def calmar_ratio(returns: np.ndarray, drawdown: float, periods: int = TRADING_DAYS) -> float | None:
    """cagr / maxDrawdown; None when there was no drawdown."""
    growth = cagr(returns, periods)
    return None if growth is None or drawdown == 0 else growth / drawdown


# --- per trade ----------------------------------------------------------------------------------------------


def win_rate(trade_pnl: np.ndarray) -> float | None:
    """Closed trades with net PnL > 0 over closed trades."""
    return None if len(trade_pnl) == 0 else float(np.count_nonzero(trade_pnl > 0) / len(trade_pnl))


def profit_factor(trade_pnl: np.ndarray) -> float | None:
    """Sum of winning PnL / abs(sum of losing PnL); None without losers."""
    losses = trade_pnl[trade_pnl < 0].sum()
    return None if losses == 0 else float(trade_pnl[trade_pnl > 0].sum() / abs(losses))


def expectancy(trade_pnl: np.ndarray) -> float | None:
    """Mean net PnL per closed trade, in currency."""
    return None if len(trade_pnl) == 0 else float(_means(trade_pnl))


def sqn(trade_pnl: np.ndarray) -> float | None:
    """sqrt(n) * mean(PnL) / std(PnL, ddof=1)."""
    if len(trade_pnl) < 2:
        return None
    row = _row(trade_pnl)
    return _quotients(math.sqrt(len(trade_pnl)) * _means(row), _deviations(row))[0]


def exposure(in_position: np.ndarray) -> float | None:
    """Fraction of bars with an open position."""
    return None if len(in_position) == 0 else float(np.count_nonzero(in_position) / len(in_position))


# --- every metric -------------------------------------------------------------------------------------------


def summary(
    equity: Sequence[float] | np.ndarray,
    trade_pnl: Sequence[float] | np.ndarray,
    in_position: Sequence[bool] | np.ndarray,
    periods: int,
) -> dict[str, Figure]:
    """Every metric of metrics.md, camelCase, for a result body."""
    positions = np.asarray(in_position, dtype=bool).reshape(1, -1)
    return summaries(_row(equity), [np.asarray(trade_pnl, dtype=float)], positions, periods)[0]


def summaries(
    equity: np.ndarray, trade_pnl: Sequence[np.ndarray], in_position: np.ndarray, periods: int
) -> list[dict[str, Figure]]:
    """``summary`` of each row: equity curves T × (N + 1), positions T × N, and each row's trade PnL."""
    curves = np.asarray(equity, dtype=float)
    returns = returns_of(curves)
    rows, count = returns.shape
    drawdowns = _drawdowns(curves).tolist() if curves.shape[1] else [0.0] * rows
    per_bar: dict[str, list[Any]] = {}
    if count:
        totals = _totals(returns)
        growth = ((1.0 + totals) ** (periods / count) - 1.0).tolist()
        means = _means(returns)
        per_bar |= {
            "returnRate": totals.tolist(),
            "cagr": growth,
            "sortinoRatio": _quotients(means * periods, _downside(returns) * math.sqrt(periods)),
            "calmarRatio": [None if d == 0 else g / d for g, d in zip(growth, drawdowns, strict=True)],
        }
    if count >= 2:
        deviations = _deviations(returns)
        per_bar |= {
            "annualVolatility": (deviations * math.sqrt(periods)).tolist(),
            "sharpeRatio": _quotients(means, deviations, math.sqrt(periods)),
        }
    held = in_position.shape[1]
    exposures = (np.count_nonzero(in_position, axis=1) / held).tolist() if held else [None] * rows
    return [
        {
            "returnRate": _at(per_bar, "returnRate", row),
            "cagr": _at(per_bar, "cagr", row),
            "annualVolatility": _at(per_bar, "annualVolatility", row),
            "sharpeRatio": _at(per_bar, "sharpeRatio", row),
            "sortinoRatio": _at(per_bar, "sortinoRatio", row),
            "maxDrawdown": drawdowns[row],
            "calmarRatio": _at(per_bar, "calmarRatio", row),
            "tradeCount": len(pnl),
            "winRate": win_rate(pnl),
            "profitFactor": profit_factor(pnl),
            "expectancy": expectancy(pnl),
            "sqn": sqn(pnl),
            "exposure": exposures[row],
            "periodsPerYear": periods,
        }
        for row, pnl in enumerate(trade_pnl)
    ]


def _at(per_bar: dict[str, list[Any]], name: str, row: int) -> Figure:
    """A per-bar metric of a row; None where the returns are too few to define it."""
    values = per_bar.get(name)
    return None if values is None else values[row]
