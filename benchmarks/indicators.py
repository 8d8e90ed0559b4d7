"""Our indicators (domain/indicators.py) against the `ta` library on one 1,000,000-bar OHLC series.

    .venv/bin/python benchmarks/indicators.py [--bars N] [--repeats R]

Both sides get the same pandas Series in the same run and compute every output of the indicator (MACD:
line, signal and histogram; Bollinger: middle, upper and lower). Each timing is the best of several runs
after one warm-up run, with the garbage collector off while timing; runs of ours and of the peer alternate
so that both see the same machine. Before timing, the outputs are checked to agree to 1e-9 (ATR from the
end of its warm-up, which `ta` fills with 0.0). ratio = peer / ours: above 1 means we are faster.

`ta`'s ATR is a Python loop over the bars (about ten seconds per run on a million bars), so every timing
also has a time budget: after the warm-up it runs at least once and stops repeating once the budget is spent.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import ta

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain import indicators  # noqa: E402

TOLERANCE = 1e-9
BUDGET_SECONDS = 15.0


def ohlc(bars: int, seed: int = 20240601) -> pd.DataFrame:
    """A seeded geometric random walk with opens, highs and lows around the closes."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0001, 0.012, bars)))
    open_ = np.empty(bars)
    open_[0] = 100.0
    open_[1:] = close[:-1] * np.exp(rng.normal(0, 0.003, bars - 1))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.006, bars)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.006, bars)))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close})


def cases(bars: pd.DataFrame) -> list[tuple[str, Callable[[], tuple], Callable[[], tuple], int]]:
    """(label, ours, peer, first position compared) per indicator, reference defaults throughout."""
    close, high, low = bars["close"], bars["high"], bars["low"]

    def peer_macd():
        m = ta.trend.MACD(close, window_slow=26, window_fast=12, window_sign=9, fillna=False)
        return m.macd(), m.macd_signal(), m.macd_diff()

    def peer_bollinger():
        b = ta.volatility.BollingerBands(close, window=20, window_dev=2, fillna=False)
        return b.bollinger_mavg(), b.bollinger_hband(), b.bollinger_lband()

    return [
        (
            "sma(20)",
            lambda: (indicators.sma(close, 20),),
            lambda: (ta.trend.SMAIndicator(close, window=20, fillna=False).sma_indicator(),),
            0,
        ),
        (
            "ema(20)",
            lambda: (indicators.ema(close, 20),),
            lambda: (ta.trend.EMAIndicator(close, window=20, fillna=False).ema_indicator(),),
            0,
        ),
        (
            "rsi(14)",
            lambda: (indicators.rsi(close, 14),),
            lambda: (ta.momentum.RSIIndicator(close, window=14, fillna=False).rsi(),),
            0,
        ),
        ("macd(12,26,9)", lambda: tuple(indicators.macd(close, 12, 26, 9)), peer_macd, 0),
        ("bollinger(20,2)", lambda: tuple(indicators.bollinger(close, 20, 2.0)), peer_bollinger, 0),
        (
            "atr(14)",
            lambda: (indicators.atr(high, low, close, 14),),
            lambda: (ta.volatility.AverageTrueRange(high, low, close, window=14, fillna=False).average_true_range(),),
            13,
        ),
    ]


def check_agreement(label: str, ours: tuple, theirs: tuple, start: int) -> None:
    for mine, peer in zip(ours, theirs, strict=True):
        mine, peer = np.asarray(mine)[start:], np.asarray(peer, dtype=np.float64)[start:]
        if not np.array_equal(np.isnan(mine), np.isnan(peer)):
            raise SystemExit(f"{label}: NaN positions differ from the peer")
        defined = ~np.isnan(peer)
        if not np.allclose(mine[defined], peer[defined], rtol=TOLERANCE, atol=TOLERANCE):
            raise SystemExit(f"{label}: values differ from the peer by more than {TOLERANCE}")


def best_times(ours: Callable, peer: Callable, repeats: int) -> tuple[float, float]:
    """Best wall time in ms of each, alternating runs, after one warm-up run of each."""
    best = {"ours": float("inf"), "peer": float("inf")}
    spent = {"ours": 0.0, "peer": 0.0}
    runs = {"ours": 0, "peer": 0}
    ours(), peer()  # warm-up
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for side, fn in (("ours", ours), ("peer", peer)):
                if runs[side] and spent[side] >= BUDGET_SECONDS:
                    continue
                started = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - started
                best[side] = min(best[side], elapsed)
                spent[side] += elapsed
                runs[side] += 1
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return best["ours"] * 1e3, best["peer"] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    bars = ohlc(args.bars)
    print(
        f"{args.bars:,} bars, best of {args.repeats} after a warm-up (peer budget {BUDGET_SECONDS:.0f} s); "
        f"python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}, ta {_ta_version()}"
    )
    rows = []
    for label, ours, peer, start in cases(bars):
        check_agreement(label, ours(), peer(), start)
        ours_ms, peer_ms = best_times(ours, peer, args.repeats)
        rows.append((label, ours_ms, peer_ms, peer_ms / ours_ms))

    print()
    print(f"{'indicator':<16} {'ours (ms)':>10} {'peer (ms)':>11} {'ratio':>8}")
    for label, ours_ms, peer_ms, ratio in rows:
        print(f"{label:<16} {ours_ms:>10.2f} {peer_ms:>11.2f} {ratio:>7.2f}x")
    print(f"\nratio = peer / ours (>1: we are faster); all outputs agree with ta to {TOLERANCE:g}")


def _ta_version() -> str:
    from importlib.metadata import version

    return version("ta")


if __name__ == "__main__":
    main()
