"""The engine against vectorbt's Portfolio.from_signals on one moving-average crossover, trade by trade.

vectorbt fills a signal on its own bar, so it gets our signals shifted one bar with the opens as fill prices.
Our rule that a position still open after the last bar is sold at the last close (commission paid, no
slippage) becomes one more exit on the last bar at that close.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import vectorbt as vbt

from domain import signals
from domain.engine import EngineResult, ExecutionConfig, run, target_positions

RTOL = 1e-6
CAPITAL = 100_000.0


def random_walk(bars: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Closes as a geometric random walk, each open a gap away from the previous close."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.01, bars)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0, 0.004, bars))
    return open_, close


def crossover(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The moving_average template's rule (5/20) as the platform runs it."""
    rule = signals.signals("moving_average", close, {"shortWindow": 5, "longWindow": 20})
    return rule.entries, rule.exits


def bars_ending(open_position: bool, at_least: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The shortest cut of one walk, `at_least` bars or longer, whose last bar is held (or flat) and was decided
    on a bar with no signal, so no fill lands on the last bar. Signals read closes up to their own bar only,
    so cutting the walk leaves them unchanged."""
    open_, close = random_walk(at_least + 500)
    entries, exits = crossover(close)
    held = target_positions(entries, exits)
    quiet = ~(entries | exits)
    n = next(n for n in range(at_least, len(close)) if held[n - 2] == open_position and quiet[n - 2])
    return open_[:n], close[:n], entries[:n], exits[:n]


def from_signals(bars: tuple[np.ndarray, ...], config: ExecutionConfig):
    """vectorbt's portfolio for our execution rules."""
    open_, close, entries, exits = bars
    fill_entries = np.concatenate(([False], (entries & ~exits)[:-1]))  # an exit wins over an entry
    fill_exits = np.concatenate(([False], exits[:-1]))
    assert not fill_entries[-1], "vectorbt cannot open and close a position on one bar"
    slippage = np.full(len(close), config.slippage_bps / 10_000.0)
    price = open_.copy()
    if not fill_exits[-1]:
        fill_exits[-1] = True
        price[-1], slippage[-1] = close[-1], 0.0
    return vbt.Portfolio.from_signals(
        close,
        entries=fill_entries,
        exits=fill_exits,
        price=price,
        fees=config.commission_rate,
        slippage=slippage,
        size=config.position_fraction,
        size_type="percent",
        size_granularity=np.nan if config.fractional else 1.0,
        init_cash=config.initial_capital,
        direction="longonly",
        accumulate=False,
        min_size=0.0,  # the default of 1e-8 units would refuse orders ours fills
    )


def assert_same_backtest(ours: EngineResult, portfolio) -> None:
    theirs = portfolio.trades.records
    assert len(ours.trades) == len(theirs) > 20
    assert (theirs["status"] == 1).all(), "every vectorbt trade is closed, like ours"
    assert [t.entry_bar for t in ours.trades] == theirs["entry_idx"].tolist()
    assert [t.exit_bar for t in ours.trades] == theirs["exit_idx"].tolist()
    for field, column in [
        ("entry_price", "entry_price"),
        ("exit_price", "exit_price"),
        ("quantity", "size"),
        ("pnl", "pnl"),
    ]:
        np.testing.assert_allclose([getattr(t, field) for t in ours.trades], theirs[column], rtol=RTOL, err_msg=field)
    np.testing.assert_allclose(ours.equity[1:], portfolio.value().to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(ours.equity[-1], portfolio.final_value(), rtol=RTOL)
    # Our position column shows a force-closed position as still held at the last close; vectorbt's is sold.
    assets = portfolio.assets().to_numpy()
    np.testing.assert_allclose(ours.position[:-1], assets[:-1], rtol=RTOL, atol=0)
    last = ours.trades[-1]
    expected_last = last.quantity if last.exit_reason == "force_close" else assets[-1]
    assert ours.position[-1] == pytest.approx(expected_last, rel=RTOL)


CASES = {
    "commission": ExecutionConfig(initial_capital=CAPITAL, commission_rate=0.001),
    "commission, slippage, part of equity": ExecutionConfig(
        initial_capital=CAPITAL, commission_rate=0.0005, slippage_bps=5, position_fraction=0.6
    ),
    "whole units": ExecutionConfig(initial_capital=CAPITAL, commission_rate=0.001, slippage_bps=2, fractional=False),
}


@pytest.mark.parametrize("open_position", [True, False], ids=["ends holding", "ends flat"])
@pytest.mark.parametrize("config", CASES.values(), ids=CASES.keys())
def test_same_trades_and_equity_as_vectorbt(config: ExecutionConfig, open_position: bool):
    open_, close, entries, exits = bars_ending(open_position)
    ours = run(open_, close, entries, exits, config)
    assert (ours.trades[-1].exit_reason == "force_close") == open_position
    assert np.all(open_ != close)
    assert_same_backtest(ours, from_signals((open_, close, entries, exits), config))


def one_bar_late(entries: np.ndarray) -> np.ndarray:
    return np.concatenate(([False], entries[:-1]))


NEAR_MISSES = {
    "commission": lambda bars, config: (bars, replace(config, commission_rate=config.commission_rate * 1.01)),
    "slippage": lambda bars, config: (bars, replace(config, slippage_bps=0.01)),
    "whole units": lambda bars, config: (bars, replace(config, fractional=False)),
    "part of equity": lambda bars, config: (bars, replace(config, position_fraction=0.999)),
    "an entry a bar late": lambda bars, config: ((*bars[:2], one_bar_late(bars[2]), bars[3]), config),
}


@pytest.mark.parametrize("near_miss", NEAR_MISSES.values(), ids=NEAR_MISSES.keys())
def test_the_comparison_notices_a_small_difference(near_miss):
    config = CASES["commission"]
    bars = bars_ending(open_position=True)
    ours = run(*bars, config)
    with pytest.raises(AssertionError):
        assert_same_backtest(ours, from_signals(*near_miss(bars, config)))
