"""Backtest metrics, defined as empyrical and vectorbt define them (reference metrics.md).

Inputs are an equity curve E_0..E_N marked to market at each bar's close and ``periods`` A, the number of
bars per year (252 for daily US equities). Per-bar returns r_t = E_t / E_{t-1} - 1 for t = 1..N.
Every function is pure and returns ``None`` where the metric is undefined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TRADING_DAYS = 252


# numpy's mean and std spend more time dispatching than summing a backtest's returns, and a sweep computes
# them for every trial: these take the same steps (the same pairwise sums, deviations and squares), so their
# results are numpy's bit for bit (tested), at a fraction of the cost.
def _mean(values: np.ndarray) -> float:
    """np.mean(values)."""
    return float(values.sum() / len(values))


def _std(values: np.ndarray) -> float:
    """np.std(values, ddof=1)."""
    deviations = values - values.sum() / len(values)
    return math.sqrt(float((deviations * deviations).sum()) / (len(values) - 1))


def returns_of(equity: Sequence[float] | np.ndarray) -> np.ndarray:
    """r_t = E_t / E_{t-1} - 1."""
    curve = np.asarray(equity, dtype=float)
    return curve[1:] / curve[:-1] - 1.0


def total_return(returns: np.ndarray) -> float:
    """returnRate = prod(1 + r) - 1 = E_N / E_0 - 1."""
    return float((1.0 + returns).prod() - 1.0)


def cagr(returns: np.ndarray, periods: int = TRADING_DAYS) -> float | None:
    """(1 + returnRate)^(A / N) - 1."""
    if len(returns) == 0:
        return None
    return float((1.0 + total_return(returns)) ** (periods / len(returns)) - 1.0)


def annual_volatility(returns: np.ndarray, periods: int = TRADING_DAYS) -> float | None:
    """std(r, ddof=1) * sqrt(A)."""
    if len(returns) < 2:
        return None
    return _std(returns) * math.sqrt(periods)


def sharpe_ratio(returns: np.ndarray, periods: int = TRADING_DAYS) -> float | None:
    """mean(r) / std(r, ddof=1) * sqrt(A); None for a flat series."""
    if len(returns) < 2:
        return None
    deviation = _std(returns)
    return None if deviation == 0 else _mean(returns) / deviation * math.sqrt(periods)


def sortino_ratio(returns: np.ndarray, periods: int = TRADING_DAYS) -> float | None:
    """mean(r) * A / (sqrt(mean(min(r, 0)^2)) * sqrt(A)), the mean in the root over all N returns."""
    if len(returns) == 0:
        return None
    losses = np.minimum(returns, 0.0)
    downside = math.sqrt(_mean(losses * losses))
    return None if downside == 0 else _mean(returns) * periods / (downside * math.sqrt(periods))


def max_drawdown(equity: Sequence[float] | np.ndarray) -> float:
    """max_t (1 - E_t / max_{s<=t} E_s), a positive fraction; E_0 counts as a peak."""
    curve = np.asarray(equity, dtype=float)
    if len(curve) == 0:
        return 0.0
    return float((1.0 - curve / np.maximum.accumulate(curve)).max())


def calmar_ratio(returns: np.ndarray, drawdown: float, periods: int = TRADING_DAYS) -> float | None:
    """cagr / maxDrawdown; None when there was no drawdown."""
    growth = cagr(returns, periods)
    return None if growth is None or drawdown == 0 else growth / drawdown


def win_rate(trade_pnl: np.ndarray) -> float | None:
    """Closed trades with net PnL > 0 over closed trades."""
    return None if len(trade_pnl) == 0 else _mean(trade_pnl > 0)


def profit_factor(trade_pnl: np.ndarray) -> float | None:
    """Sum of winning PnL / abs(sum of losing PnL); None without losers."""
    losses = trade_pnl[trade_pnl < 0].sum()
    return None if losses == 0 else float(trade_pnl[trade_pnl > 0].sum() / abs(losses))


def expectancy(trade_pnl: np.ndarray) -> float | None:
    """Mean net PnL per closed trade, in currency."""
    return None if len(trade_pnl) == 0 else _mean(trade_pnl)


def sqn(trade_pnl: np.ndarray) -> float | None:
    """sqrt(n) * mean(PnL) / std(PnL, ddof=1)."""
    if len(trade_pnl) < 2:
        return None
    deviation = _std(trade_pnl)
    return None if deviation == 0 else math.sqrt(len(trade_pnl)) * _mean(trade_pnl) / deviation


def exposure(in_position: np.ndarray) -> float | None:
    """Fraction of bars with an open position."""
    return None if len(in_position) == 0 else _mean(in_position)


def summary(
    equity: Sequence[float] | np.ndarray,
    trade_pnl: Sequence[float] | np.ndarray,
    in_position: Sequence[bool] | np.ndarray,
    periods: int,
) -> dict[str, float | int | None]:
    """Every metric of metrics.md, camelCase, for a result body."""
    returns = returns_of(equity)
    pnl = np.asarray(trade_pnl, dtype=float)
    drawdown = max_drawdown(equity)
    return {
        "returnRate": total_return(returns),
        "cagr": cagr(returns, periods),
        "annualVolatility": annual_volatility(returns, periods),
        "sharpeRatio": sharpe_ratio(returns, periods),
        "sortinoRatio": sortino_ratio(returns, periods),
        "maxDrawdown": drawdown,
        "calmarRatio": calmar_ratio(returns, drawdown, periods),
        "tradeCount": len(pnl),
        "winRate": win_rate(pnl),
        "profitFactor": profit_factor(pnl),
        "expectancy": expectancy(pnl),
        "sqn": sqn(pnl),
        "exposure": exposure(np.asarray(in_position, dtype=bool)),
        "periodsPerYear": periods,
    }
