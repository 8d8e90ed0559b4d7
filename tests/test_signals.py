"""The templates' signal rules: hand-checked crossings and levels, and no rule reads a later bar."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from domain import backtest, signals
from domain.backtest import BacktestConfig
from domain.strategies import TEMPLATES, validate_parameters


def walk(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, n)))


def test_crossings_need_both_bars_defined():
    fast = np.array([np.nan, 1.0, 3.0, 3.0, 1.0, 2.0])
    slow = np.array([2.0, 2.0, 2.0, 3.0, 2.0, 2.0])
    above, below = signals.crosses(fast, slow)
    assert above.tolist() == [False, False, True, False, False, False]
    assert below.tolist() == [False, False, False, True, False, False]


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_shared_indicators_give_the_same_signals(template):
    close = walk(300, 5)
    parameters = validate_parameters(template, {})
    alone = signals.signals(template, close, parameters)
    with signals.indicators_shared():
        first = signals.signals(template, close, parameters)
        again = signals.signals(template, close, parameters)
        other = signals.signals(template, close * 1.5, parameters)  # other prices: computed, not reused
        sent = signals.signals(template, pickle.loads(pickle.dumps(close)), parameters)  # as a process gets them
    for rule in (first, again, sent):
        assert (rule.entries == alone.entries).all() and (rule.exits == alone.exits).all()
    scaled = signals.signals(template, close * 1.5, parameters)
    assert (other.entries == scaled.entries).all() and (other.exits == scaled.exits).all()


def test_moving_average_rule_by_hand():
    close = np.array([5.0, 4, 3, 2, 3, 4, 5, 4, 3, 2])
    rule = signals.signals("moving_average", close, {"shortWindow": 2, "longWindow": 3})
    # SMA2 - SMA3 turns positive at bar 4 (2.5 vs 2.67: not yet) -> bar 5 (3.5 vs 3.0) and back at bar 8.
    assert np.flatnonzero(rule.entries).tolist() == [5]
    assert np.flatnonzero(rule.exits).tolist() == [8]
    assert (rule.entry_reason, rule.exit_reason) == ("moving_average_bullish_cross", "moving_average_bearish_cross")


def test_levels_of_mean_reversion_and_momentum_by_hand():
    close = np.array([10.0, 10, 10, 7, 10, 13, 13])
    z = signals.z_score(close, 3)
    assert np.isnan(z[:3]).all()  # warm-up, and a flat window has no z-score
    rule = signals.signals("mean_reversion", close, {"window": 3, "entryZ": 1.2, "exitZ": 0.5})
    assert z[3] == pytest.approx(-np.sqrt(2)) and rule.entries.tolist() == [False, False, False, True] + [False] * 3
    assert np.flatnonzero(rule.exits).tolist() == [4, 5, 6]
    momentum = signals.signals("momentum", close, {"lookback": 2, "threshold": 0.25})
    assert np.flatnonzero(momentum.entries).tolist() == [5, 6] and np.flatnonzero(momentum.exits).tolist() == [3]


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_no_rule_reads_a_later_bar(template):
    """Changing every price after bar t never changes a signal at or before t."""
    parameters = validate_parameters(template, {})
    close = walk(600, seed=3)
    base = signals.signals(template, close, parameters)
    assert base.entries.any() and base.exits.any()
    for cut in (100, 250, 599):
        changed = close.copy()
        changed[cut + 1 :] = walk(len(close) - cut - 1, seed=cut) * 3
        moved = signals.signals(template, changed, parameters)
        assert (moved.entries[: cut + 1] == base.entries[: cut + 1]).all()
        assert (moved.exits[: cut + 1] == base.exits[: cut + 1]).all()


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_a_backtest_prefix_is_the_backtest_of_the_prefix(template):
    """Bars after t change nothing the backtest did up to t: same trades opened, same equity until t."""
    parameters = validate_parameters(template, {})
    close = walk(800, seed=11)
    bars = pd.DataFrame(
        {
            "timestamp": pd.date_range("2020-01-01", periods=800, freq="D", tz="UTC"),
            "open": close * 0.999,
            "close": close,
        }
    )
    config = BacktestConfig(symbol="TEST", commission_rate=0.001)
    whole = backtest.run(bars, template, parameters, config)
    cut = 500
    part = backtest.run(bars.iloc[:cut], template, parameters, config)
    # The prefix run force-closes at its last bar; before that bar the two runs hold the same positions.
    assert [e["equity"] for e in part["equityCurve"][: cut - 1]] == pytest.approx(
        [e["equity"] for e in whole["equityCurve"][: cut - 1]], rel=1e-12
    )
    opened = [t for t in whole["trades"] if t["side"] == "BUY" and t["index"] < cut]
    assert opened == [t for t in part["trades"] if t["side"] == "BUY"]


def test_too_few_bars_are_refused():
    close = walk(30, seed=1)
    bars = pd.DataFrame({"timestamp": pd.date_range("2020-01-01", periods=30, tz="UTC"), "open": close, "close": close})
    with pytest.raises(backtest.InsufficientData, match="needs 52"):
        backtest.run(bars, "moving_average", {"shortWindow": 5, "longWindow": 50}, BacktestConfig(symbol="X"))


def test_bars_received_by_a_process_share_their_indicators():
    received = pickle.loads(pickle.dumps(walk(300, 6)))  # each np.asarray of these is a new view
    parameters = {"shortWindow": 5, "longWindow": 20}
    with signals.indicators_shared():
        signals.signals("moving_average", received, parameters)
        computed = dict(signals._shared.get() or {})
        signals.signals("moving_average", received, {**parameters, "longWindow": 30})
        assert len(computed) == 2 and len(signals._shared.get() or {}) == 3  # the short SMA reused
