"""The metric definitions of metrics.md, on its golden vector (empyrical and vectorbt agree to 1e-8)."""

from __future__ import annotations

import numpy as np
import pytest

from domain import metrics

GOLDEN_RETURNS = np.array([0.01, -0.02, 0.015, 0, -0.005, 0.02, -0.01, 0.005, 0.03, -0.025])


def equity_of(returns: np.ndarray, start: float = 100_000.0) -> np.ndarray:
    return start * np.concatenate(([1.0], np.cumprod(1.0 + returns)))


def test_golden_vector():
    equity = equity_of(GOLDEN_RETURNS)
    result = metrics.summary(equity, trade_pnl=[], in_position=[], periods=252)
    expected = {
        "returnRate": 0.01877866,
        "cagr": 0.59812959,
        "annualVolatility": 0.27799281,
        "sharpeRatio": 1.81299656,
        "sortinoRatio": 2.96061098,
        "maxDrawdown": 0.025,
        "calmarRatio": 23.92518363,
    }
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=1e-8), name
    assert np.allclose(metrics.returns_of(equity), GOLDEN_RETURNS, atol=1e-15)


def test_trade_metrics():
    pnl = np.array([120.0, -40.0, 60.0, -20.0])
    assert metrics.win_rate(pnl) == 0.5
    assert metrics.profit_factor(pnl) == pytest.approx(180 / 60)
    assert metrics.expectancy(pnl) == pytest.approx(30.0)
    assert metrics.sqn(pnl) == pytest.approx(2 * 30.0 / np.std(pnl, ddof=1))
    assert metrics.exposure(np.array([True, False, True, True])) == 0.75


def test_undefined_metrics_are_none():
    flat = np.zeros(5)
    assert metrics.sharpe_ratio(flat) is None and metrics.sortino_ratio(flat) is None
    assert metrics.calmar_ratio(flat, 0.0) is None
    empty = np.array([])
    assert metrics.win_rate(empty) is None and metrics.profit_factor(np.array([5.0])) is None
    assert metrics.max_drawdown([100.0, 110.0, 120.0]) == 0.0
    assert metrics.cagr(empty) is None


@pytest.mark.parametrize("length", [2, 7, 9, 130, 1_259, 10_007])
def test_each_row_is_reduced_as_numpy_reduces_it_alone(length):
    # A sweep's trials are computed as rows of one matrix, and a backtest as a row of its own: the same figures.
    rng = np.random.default_rng(length)
    rows = np.vstack([rng.normal(0.0005, 0.02, length), rng.normal(0, 1, length) * 1e6, rng.random(length)])
    for row, mean, deviation in zip(rows, metrics._means(rows), metrics._deviations(rows), strict=True):
        assert mean == np.mean(row) and deviation == np.std(row, ddof=1)


def test_summaries_of_a_batch_are_each_curves_summary():
    rng = np.random.default_rng(3)
    curves = 100_000.0 * np.cumprod(1.0 + rng.normal(0.0003, 0.01, (5, 300)), axis=1)
    positions = rng.random((5, 299)) > 0.4
    pnls = [rng.normal(10.0, 50.0, size) for size in (0, 1, 2, 7, 30)]
    batch = metrics.summaries(curves, pnls, positions, 252)
    assert batch == [metrics.summary(c, p, h, 252) for c, p, h in zip(curves, pnls, positions, strict=True)]
