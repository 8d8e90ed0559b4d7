"""The backtest engine: long-only, signal at bar t filled at bar t+1's open, vectorized over bars.

A signal array may use data up to its own bar only; the engine shifts every decision one bar, so no
decision can see the price it trades at. Everything per *bar* is whole-array numpy, and so is everything
per *trade* with fractional units: committing the fraction f of cash at each entry makes every round trip
scale cash by a factor of its own prices alone, 1 - f + f * sell * (1 - c) / (buy * (1 + c)), so the cash
before each trade is a cumulative product. Whole units floor the size, which breaks that product; they
keep one small loop per trade.

A holding period buys at its first bar or not at all: when whole units cannot afford one unit there, the
period passes flat, and a repeated entry signal within it does not try again.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat

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


def target_positions(entries: np.ndarray, exits: np.ndarray) -> np.ndarray:
    """1 from an entry signal until the next exit signal, else 0 (an exit wins over an entry on one bar)."""
    state = np.full(len(entries), np.nan)
    state[entries] = 1.0
    state[exits] = 0.0
    filled = np.where(np.isnan(state), 0, np.arange(len(state)))
    np.maximum.accumulate(filled, out=filled)
    held = state[filled]
    return np.where(np.isnan(held), 0.0, held).astype(bool)


@dataclass(frozen=True)
class _Fills:
    """One row per round trip that bought something, as arrays."""

    starts: np.ndarray  # first bar held
    ends: np.ndarray  # first bar flat again; n when held through the last bar
    buy: np.ndarray
    sell: np.ndarray
    units: np.ndarray
    cash_before: np.ndarray
    cash_after: np.ndarray


@dataclass(frozen=True)
class EngineResult:
    equity: np.ndarray  # E_0 = initial capital, then one value per bar at its close
    position: np.ndarray  # units held at each bar's close
    trade_pnl: np.ndarray  # each round trip's PnL, net of both commissions, in order
    fills: _Fills

    @cached_property
    def trades(self) -> list[Trade]:
        """The round trips as objects, built when first read: a research trial reads only their PnL."""
        return _trades(self.fills, self.trade_pnl, len(self.position))


def run(
    open_: np.ndarray, close: np.ndarray, entries: np.ndarray, exits: np.ndarray, config: ExecutionConfig
) -> EngineResult:
    open_, close = np.asarray(open_, dtype=float), np.asarray(close, dtype=float)
    entries, exits = np.asarray(entries, dtype=bool), np.asarray(exits, dtype=bool)
    n = len(close)
    if not (len(open_) == len(entries) == len(exits) == n):
        raise ValueError("prices and signals must have the same length")
    starts, ends = _holdings(entries, exits, n)
    fills = _fills(open_, close, starts, ends, config)
    equity, position = _per_bar(close, fills, config)
    c = config.commission_rate
    pnl = fills.units * fills.sell * (1 - c) - fills.units * fills.buy * (1 + c)
    return EngineResult(equity, position, pnl, fills)


def _holdings(entries: np.ndarray, exits: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the shifted target position turns on and off, read from the signal bars alone.

    Decided at t, held from t+1: the shift is the whole no-look-ahead rule. The target only changes on a
    bar with a signal, to 1 on an entry alone and to 0 on any exit, so its edges are where that value
    differs from the previous signal bar's.
    """
    signal_bars = np.flatnonzero(entries | exits)
    wants = ~exits[signal_bars]
    wanted_before = np.concatenate(([False], wants[:-1]))
    starts = signal_bars[wants & ~wanted_before] + 1
    ends = signal_bars[~wants & wanted_before] + 1
    if len(starts) > len(ends):
        # An entry decided on the last bar has no bar to fill on; one decided earlier is closed at the end.
        starts, ends = (starts[:-1], ends) if starts[-1] >= n else (starts, np.append(ends, n))
    return starts, ends


def _fills(open_: np.ndarray, close: np.ndarray, starts: np.ndarray, ends: np.ndarray, config: ExecutionConfig):
    n, slip = len(close), config.slippage_bps / 10_000.0
    buy = open_[starts] * (1 + slip)
    forced = ends >= n
    sell = np.where(forced, close[n - 1] if n else np.nan, open_[np.minimum(ends, n - 1)] * (1 - slip))
    size = _fractional_sizes if config.fractional else _whole_unit_sizes
    units, cash_before, cash_after = size(buy, sell, config)
    columns = (starts, ends, buy, sell, units, cash_before, cash_after)
    bought = ~(units <= 0)
    if bought.all():
        return _Fills(*columns)
    return _Fills(*(column[bought] for column in columns))


def _fractional_sizes(buy: np.ndarray, sell: np.ndarray, config: ExecutionConfig):
    f, c = config.position_fraction, config.commission_rate
    paid = buy * (1 + c)
    growth = 1 - f + f * (sell * (1 - c)) / paid
    growth[paid <= 0] = 1.0  # a price at or below zero buys nothing and leaves cash alone
    cash_after = config.initial_capital * np.cumprod(growth)
    exhausted = np.flatnonzero(cash_after <= 0)
    if len(exhausted):
        # Only a commission of 100% or more gets here; with no cash left, no later trade buys anything.
        cash_after[exhausted[0] :] = cash_after[exhausted[0]]
    cash_before = np.concatenate(([config.initial_capital], cash_after[:-1]))
    return f * cash_before / paid, cash_before, cash_after


def _whole_unit_sizes(buy: np.ndarray, sell: np.ndarray, config: ExecutionConfig):
    f, c = config.position_fraction, config.commission_rate
    cash = config.initial_capital
    sizes, cash_before = [], []
    # Plain floats: numpy scalars would cost a microsecond per operation in this loop.
    for bought_at, sold_at in zip(buy.tolist(), sell.tolist(), strict=True):
        bought = _floor(f * cash / (bought_at * (1 + c)))
        sizes.append(bought)
        cash_before.append(cash)
        if not bought <= 0:  # NaN trades, and spoils the cash after it, as a NaN price should
            cash = cash - bought * bought_at * (1 + c) + bought * sold_at * (1 - c)
    units, before = np.array(sizes, dtype=float), np.array(cash_before, dtype=float)
    # The same operations in the same order as the loop: bit for bit the cash it carried forward (rows that
    # bought nothing are dropped).
    return units, before, before - units * buy * (1 + c) + units * sell * (1 - c)


def _floor(value: float) -> float:
    return float(math.floor(value)) if math.isfinite(value) else value


def _per_bar(close: np.ndarray, fills: _Fills, config: ExecutionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Position and equity at each close: both constant between fills, so each segment is one repeat."""
    n, trades = len(close), len(fills.starts)
    edges = np.empty(2 * trades + 2, dtype=np.intp)
    edges[0], edges[-1] = 0, n
    edges[1:-1:2], edges[2:-1:2] = fills.starts, fills.ends
    lengths = np.diff(edges)
    units = np.zeros(2 * trades + 1)
    units[1::2] = fills.units
    cash = np.empty(2 * trades + 1)
    cash[0] = config.initial_capital
    cash[1::2] = fills.cash_before - fills.units * fills.buy * (1 + config.commission_rate)
    cash[2::2] = fills.cash_after
    position = np.repeat(units, lengths)
    equity = np.empty(n + 1)
    equity[0] = config.initial_capital
    np.multiply(position, close, out=equity[1:])
    equity[1:] += np.repeat(cash, lengths)
    if trades and fills.ends[-1] >= n:
        equity[-1] = fills.cash_after[-1]  # the last bar closes the position at its close, commission paid
    return equity, position


def _trades(fills: _Fills, pnl: np.ndarray, n: int) -> list[Trade]:
    forced = fills.ends >= n
    exit_bars = np.where(forced, n - 1, fills.ends)
    reasons = ["signal"] * len(pnl)
    if len(pnl) and forced[-1]:
        reasons[-1] = "force_close"
    columns = (fills.starts, exit_bars, fills.buy, fills.sell, fills.units, pnl)
    return _trade_objects(*(column.tolist() for column in columns), reasons)


def _trade_objects(*columns: list) -> list[Trade]:
    """Trade objects with their fields set in one step each.

    The frozen dataclass __init__ sets each field through object.__setattr__, about a microsecond a trade:
    more than half of a whole run with tens of thousands of trades. Trade has no __post_init__ to skip (a
    test holds it to that), so the instance dict can be filled directly, at half the cost.
    """
    states = [
        {"entry_bar": a, "exit_bar": b, "entry_price": p, "exit_price": q, "quantity": u, "pnl": g, "exit_reason": r}
        for a, b, p, q, u, g, r in zip(*columns, strict=True)
    ]
    trades = list(map(object.__new__, repeat(Trade, len(states))))
    deque(map(object.__setattr__, trades, repeat("__dict__"), states), maxlen=0)
    return trades
