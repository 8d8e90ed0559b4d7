"""The backtest engine: long-only, signal at bar t filled at bar t+1's open, vectorized over bars.

A signal array may use data up to its own bar only; the engine shifts every decision one bar, so no
decision can see the price it trades at. Path dependence (how much a trade can buy depends on earlier
trades) is handled by one small loop per *trade*; everything per *bar* is whole-array numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ExecutionConfig:
    initial_capital: float = 100_000.0
    commission_rate: float = 0.0  # a fraction of the traded notional, on each side
    slippage_bps: float = 0.0  # buys fill this much above the open, sells below
    position_fraction: float = 1.0  # of equity committed at each entry
    fractional: bool = True  # whole units otherwise

    def __post_init__(self) -> None:
        if self.initial_capital <= 0:
            raise ValueError("initial capital must be positive")
        if self.commission_rate < 0 or self.slippage_bps < 0:
            raise ValueError("commission and slippage must not be negative")
        if not 0 < self.position_fraction <= 1:
            raise ValueError("position fraction must be in (0, 1]")


@dataclass(frozen=True)
class Trade:
    entry_bar: int
    exit_bar: int
    entry_price: float
    exit_price: float
    quantity: float
    pnl: float  # net of both commissions
    exit_reason: str  # "signal" or "force_close"


@dataclass(frozen=True)
class EngineResult:
    equity: np.ndarray  # E_0 = initial capital, then one value per bar at its close
    position: np.ndarray  # units held at each bar's close
    trades: list[Trade] = field(default_factory=list)


def target_positions(entries: np.ndarray, exits: np.ndarray) -> np.ndarray:
    """1 from an entry signal until the next exit signal, else 0 (an exit wins over an entry on one bar)."""
    state = np.full(len(entries), np.nan)
    state[entries] = 1.0
    state[exits] = 0.0
    filled = np.where(np.isnan(state), 0, np.arange(len(state)))
    np.maximum.accumulate(filled, out=filled)
    held = state[filled]
    return np.where(np.isnan(held), 0.0, held).astype(bool)


def run(
    open_: np.ndarray, close: np.ndarray, entries: np.ndarray, exits: np.ndarray, config: ExecutionConfig
) -> EngineResult:
    open_, close = np.asarray(open_, dtype=float), np.asarray(close, dtype=float)
    entries, exits = np.asarray(entries, dtype=bool), np.asarray(exits, dtype=bool)
    n = len(close)
    if not (len(open_) == len(entries) == len(exits) == n):
        raise ValueError("prices and signals must have the same length")
    # Decided at t, held from t+1: the shift is the whole no-look-ahead rule.
    held = np.zeros(n, dtype=bool)
    held[1:] = target_positions(entries, exits)[:-1]
    changes = np.diff(held.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(changes == 1), np.flatnonzero(changes == -1)  # ends: first bar flat again

    slip = config.slippage_bps / 10_000.0
    cash = config.initial_capital
    quantity = np.zeros(n)
    cash_after = np.full(n, np.nan)
    trades: list[Trade] = []
    for start, end in zip(starts, ends, strict=True):
        buy = open_[start] * (1 + slip)
        units = config.position_fraction * cash / (buy * (1 + config.commission_rate))
        units = units if config.fractional else np.floor(units)
        if units <= 0:
            continue
        cost = units * buy * (1 + config.commission_rate)
        forced = end >= n
        sell = close[n - 1] if forced else open_[end] * (1 - slip)
        proceeds = units * sell * (1 - config.commission_rate)
        last_held = (n if forced else end) - 1
        quantity[start : last_held + 1] = units
        cash_after[start] = cash - cost
        cash = cash - cost + proceeds
        if not forced:
            cash_after[end] = cash
        trades.append(
            Trade(
                int(start),
                int(last_held if forced else end),
                float(buy),
                float(sell),
                float(units),
                float(proceeds - cost),
                "force_close" if forced else "signal",
            )
        )
    cash_path = _carry_forward(cash_after, config.initial_capital)
    equity_bars = cash_path + quantity * close
    if trades and trades[-1].exit_reason == "force_close":
        equity_bars[-1] = cash  # the last bar closes the position at its close, commission paid
    return EngineResult(
        equity=np.concatenate(([config.initial_capital], equity_bars)), position=quantity, trades=trades
    )


def _carry_forward(values: np.ndarray, first: float) -> np.ndarray:
    """NaN means "unchanged since the last known value" (``first`` before any)."""
    known = ~np.isnan(values)
    index = np.where(known, np.arange(len(values)), -1)
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, values[np.maximum(index, 0)], first)
