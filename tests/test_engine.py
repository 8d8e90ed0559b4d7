"""The engine's execution rules, by hand-checked examples, and the no-look-ahead property."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields

import numpy as np
import pytest

from domain import signals
from domain.engine import ExecutionConfig, Trade, run, target_positions


def test_target_positions_follow_entries_until_exits():
    entries = np.array([0, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    exits = np.array([1, 0, 0, 0, 1, 0, 1, 0], dtype=bool)
    assert target_positions(entries, exits).tolist() == [0, 1, 1, 1, 0, 0, 0, 1]


def test_signal_fills_at_the_next_open_and_exits_the_same_way():
    open_ = np.array([10.0, 11, 12, 13, 14, 15, 16])
    close = np.array([10.5, 11.5, 12.5, 13.5, 14.5, 15.5, 16.5])
    entries = np.array([0, 1, 0, 0, 0, 0, 0], dtype=bool)
    exits = np.array([0, 0, 0, 1, 0, 0, 0], dtype=bool)
    result = run(open_, close, entries, exits, ExecutionConfig(initial_capital=1200.0))
    (trade,) = result.trades
    assert (trade.entry_bar, trade.exit_bar, trade.entry_price, trade.exit_price) == (2, 4, 12.0, 14.0)
    assert trade.quantity == pytest.approx(100.0) and trade.pnl == pytest.approx(200.0)
    assert result.equity.tolist() == pytest.approx([1200, 1200, 1200, 1250, 1350, 1400, 1400, 1400])
    assert result.position.tolist() == pytest.approx([0, 0, 100, 100, 0, 0, 0])


def test_commission_slippage_and_whole_units():
    open_ = np.array([100.0, 100, 110, 120])
    close = np.array([100.0, 105, 115, 125])
    entries, exits = np.array([1, 0, 0, 0], dtype=bool), np.array([0, 1, 0, 0], dtype=bool)
    config = ExecutionConfig(initial_capital=10_000.0, commission_rate=0.001, slippage_bps=10, fractional=False)
    (trade,) = run(open_, close, entries, exits, config).trades
    buy, sell = 100 * 1.001, 110 * 0.999
    units = np.floor(10_000 / (buy * 1.001))
    assert (trade.entry_price, trade.exit_price, trade.quantity) == (pytest.approx(buy), pytest.approx(sell), units)
    assert trade.pnl == pytest.approx(units * sell * 0.999 - units * buy * 1.001)


def test_an_open_position_is_closed_at_the_last_close():
    open_, close = np.array([10.0, 10, 11, 12]), np.array([10.0, 10.5, 11.5, 13])
    entries, exits = np.array([1, 0, 0, 0], dtype=bool), np.zeros(4, dtype=bool)
    result = run(open_, close, entries, exits, ExecutionConfig(initial_capital=1000.0, commission_rate=0.01))
    (trade,) = result.trades
    assert trade.exit_reason == "force_close" and trade.exit_price == 13.0 and trade.exit_bar == 3
    units = 1000 / (10 * 1.01)
    assert result.equity[-1] == pytest.approx(units * 13 * 0.99)
    assert trade.pnl == pytest.approx(result.equity[-1] - 1000)


def crossover_signals(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rule = signals.signals("moving_average", close, {"shortWindow": 5, "longWindow": 20})
    return rule.entries, rule.exits


def test_changing_future_prices_never_changes_past_decisions():
    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 600)))
    open_ = np.concatenate(([close[0]], close[:-1])) * (1 + rng.normal(0, 0.003, 600))
    cut = 400
    base = run(open_, close, *crossover_signals(close), ExecutionConfig())
    future_close, future_open = close.copy(), open_.copy()
    future_close[cut + 1 :] *= np.exp(rng.normal(0, 0.2, 600 - cut - 1))
    future_open[cut + 1 :] *= 1.5
    changed = run(future_open, future_close, *crossover_signals(future_close), ExecutionConfig())
    # Equity through the close of bar `cut` is E_0..E_{cut+1}: identical, as are the trades closed by then.
    assert np.array_equal(base.equity[: cut + 2], changed.equity[: cut + 2])
    assert [t for t in base.trades if t.exit_bar <= cut] == [t for t in changed.trades if t.exit_bar <= cut]
    assert len(base.trades) > 5
    assert not np.array_equal(base.equity, changed.equity)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        ExecutionConfig(position_fraction=0)
    with pytest.raises(ValueError):
        ExecutionConfig(initial_capital=-1)
    with pytest.raises(ValueError):
        run(np.ones(3), np.ones(4), np.zeros(4, bool), np.zeros(4, bool), ExecutionConfig())


def reference_trades(open_, close, entries, exits, config: ExecutionConfig) -> tuple[list[tuple], float]:
    """Cash carried trade by trade, the plain way: (entry bar, exit bar, buy, sell, units, pnl) and final cash."""
    held = np.concatenate(([0], target_positions(entries, exits)[:-1])).astype(int)
    changes = np.diff(held, prepend=0, append=0)
    starts, ends = np.flatnonzero(changes == 1), np.flatnonzero(changes == -1)
    slip, c, cash, n = config.slippage_bps / 10_000, config.commission_rate, config.initial_capital, len(close)
    trades = []
    for start, end in zip(starts, ends, strict=True):
        buy = open_[start] * (1 + slip)
        sell = close[-1] if end == n else open_[end] * (1 - slip)
        units = config.position_fraction * cash / (buy * (1 + c))
        units = units if config.fractional else np.floor(units)
        pnl = units * sell * (1 - c) - units * buy * (1 + c)
        cash += pnl
        trades.append((start, min(end, n - 1), buy, sell, units, pnl))
    return trades, cash


@pytest.mark.parametrize("fractional", [True, False])
def test_cash_compounds_as_when_carried_trade_by_trade(fractional):
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 2000)))
    open_ = np.concatenate(([close[0]], close[:-1])) * (1 + rng.normal(0, 0.003, 2000))
    config = ExecutionConfig(commission_rate=0.002, slippage_bps=3, position_fraction=0.7, fractional=fractional)
    result = run(open_, close, *crossover_signals(close), config)
    expected, cash = reference_trades(open_, close, *crossover_signals(close), config)
    assert len(result.trades) == len(expected) > 50
    got = [(t.entry_bar, t.exit_bar, t.entry_price, t.exit_price, t.quantity, t.pnl) for t in result.trades]
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-9)
    assert result.equity[-1] == pytest.approx(cash, rel=1e-9)


def test_trades_are_ordinary_frozen_trades():
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 300)))
    trade = run(close, close, *crossover_signals(close), ExecutionConfig()).trades[0]
    rebuilt = Trade(**{f.name: getattr(trade, f.name) for f in fields(Trade)})
    assert trade == rebuilt and hash(trade) == hash(rebuilt) and repr(trade) == repr(rebuilt)
    assert type(trade.entry_bar) is int and type(trade.quantity) is float
    with pytest.raises(FrozenInstanceError):
        trade.pnl = 0.0
    # The engine fills a Trade's fields without calling __init__, so nothing may hang on it.
    assert not hasattr(Trade, "__post_init__") and "__slots__" not in vars(Trade)
