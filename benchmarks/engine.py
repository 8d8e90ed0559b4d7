"""Our backtest engine (domain/engine.py) against vectorbt's Portfolio.from_signals, at several lengths.

    .venv/bin/python benchmarks/engine.py [--bars 10000 100000 1000000] [--repeats R]

Both sides run one moving-average crossover (5/20, a trade every thirty bars or so: many trades, the hard
case for us) on the same seeded random walk, with the same fractional sizing, commission and slippage, and
fills at the next bar's open. vectorbt fills on a signal's own bar, so it gets the signals shifted one bar,
the opens as prices, and an exit at the last close for a position still open (our force close); building
those inputs is not timed. Both sides deliver the same things: ours `run` (equity curve, positions, trades
as a list of Trade objects), vectorbt `from_signals` followed by `value()` (the equity curve, which it
computes lazily) and its trade records; from_signals alone is timed too, for reference. Before timing,
final equity must agree to 1e-6 and the trades (count, entry and exit bars) exactly.

Each timing is the best of several runs after a warm-up run (which also compiles vectorbt's numba
kernels), with the garbage collector off while timing; runs of ours and vectorbt's alternate so that both
see the same machine. ratio = ours / vectorbt in bars per second: above 1 means we are faster.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import vectorbt as vbt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain import engine, signals  # noqa: E402

TOLERANCE = 1e-6
CONFIG = engine.ExecutionConfig(initial_capital=100_000.0, commission_rate=0.0001, slippage_bps=0.5)


def bars(count: int, seed: int = 20240601) -> tuple[np.ndarray, np.ndarray]:
    """Intraday-sized moves, so that a million bars of costs leave a sane account."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.00002, 0.001, count)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0, 0.0003, count))
    return open_, close


def crossover(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The moving_average template's rule (5/20) as the platform runs it."""
    rule = signals.signals("moving_average", close, {"shortWindow": 5, "longWindow": 20})
    return rule.entries, rule.exits


def vectorbt_inputs(open_, close, entries, exits, config: engine.ExecutionConfig) -> dict:
    """Our execution rules in from_signals' terms."""
    fill_entries = np.concatenate(([False], (entries & ~exits)[:-1]))
    fill_exits = np.concatenate(([False], exits[:-1]))
    if fill_entries[-1]:
        raise SystemExit("an entry on the last bar: vectorbt cannot open and close there, pick other bars")
    slippage = np.full(len(close), config.slippage_bps / 10_000.0)
    price = open_.copy()
    if not fill_exits[-1]:
        fill_exits[-1] = True
        price[-1], slippage[-1] = close[-1], 0.0
    return {
        "close": close,
        "entries": fill_entries,
        "exits": fill_exits,
        "price": price,
        "fees": config.commission_rate,
        "slippage": slippage,
        "size": config.position_fraction,
        "size_type": "percent",
        "init_cash": config.initial_capital,
        "direction": "longonly",
        "accumulate": False,
        "min_size": 0.0,
    }


def vectorbt_run(inputs: dict) -> tuple[np.ndarray, np.ndarray]:
    portfolio = vbt.Portfolio.from_signals(**inputs)
    return portfolio.value().to_numpy(), portfolio.trades.values


def check_agreement(count: int, ours: engine.EngineResult, theirs: tuple[np.ndarray, np.ndarray]) -> None:
    equity, trades = theirs
    if len(ours.trades) != len(trades):
        raise SystemExit(f"{count} bars: {len(ours.trades)} trades here, {len(trades)} in vectorbt")
    if [t.entry_bar for t in ours.trades] != trades["entry_idx"].tolist():
        raise SystemExit(f"{count} bars: entry bars differ from vectorbt")
    if [t.exit_bar for t in ours.trades] != trades["exit_idx"].tolist():
        raise SystemExit(f"{count} bars: exit bars differ from vectorbt")
    if not np.isclose(ours.equity[-1], equity[-1], rtol=TOLERANCE, atol=0):
        raise SystemExit(f"{count} bars: final equity {ours.equity[-1]} here, {equity[-1]} in vectorbt")


def best_times(runs: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Best wall time in seconds of each, alternating runs, after one warm-up run of each."""
    best = dict.fromkeys(runs, float("inf"))
    for fn in runs.values():
        fn()  # warm-up
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for side, fn in runs.items():
                started = time.perf_counter()
                fn()  # what it returns is freed before the clock stops: the caller pays for that too
                best[side] = min(best[side], time.perf_counter() - started)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return best


def measure(count: int, repeats: int) -> tuple:
    open_, close = bars(count)
    entries, exits = crossover(close)
    inputs = vectorbt_inputs(open_, close, entries, exits, CONFIG)
    ours_result = engine.run(open_, close, entries, exits, CONFIG)
    check_agreement(count, ours_result, vectorbt_run(inputs))
    times = best_times(
        {
            "ours": lambda: engine.run(open_, close, entries, exits, CONFIG),
            "vectorbt": lambda: vectorbt_run(inputs),
            "simulation alone": lambda: vbt.Portfolio.from_signals(**inputs),
        },
        repeats,
    )
    return count, len(ours_result.trades), ours_result.equity[-1], times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    print(
        f"best of {args.repeats} after a warm-up; python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"vectorbt {version('vectorbt')} (numba {version('numba')})"
    )
    print(
        f"sma(5)/sma(20) crossover, commission {CONFIG.commission_rate:g}, slippage {CONFIG.slippage_bps:g} bps, "
        f"fractional units, all of equity per trade"
    )
    rows = [measure(count, args.repeats) for count in args.bars]

    print()
    print(
        f"{'bars':>10} {'trades':>7} {'final equity':>13} {'ours (ms)':>10} {'vbt (ms)':>9} "
        f"{'ours (bars/s)':>14} {'vbt (bars/s)':>13} {'ratio':>7} {'vbt sim (ms)':>13} {'ratio':>7}"
    )
    for count, trades, final, times in rows:
        ours, peer, simulation = times["ours"], times["vectorbt"], times["simulation alone"]
        print(
            f"{count:>10,} {trades:>7,} {final:>13,.2f} {ours * 1e3:>10.2f} {peer * 1e3:>9.2f} "
            f"{count / ours:>14,.0f} {count / peer:>13,.0f} {peer / ours:>6.2f}x "
            f"{simulation * 1e3:>13.2f} {simulation / ours:>6.2f}x"
        )
    print(
        "\nratio = ours / vectorbt in bars per second (>1: we are faster). vbt: from_signals, value() and trade "
        "records, the outputs our run returns; vbt sim: from_signals alone, which leaves the equity curve uncomputed. "
        f"At every length both agree on the trades (count, entry and exit bars) and on final equity to {TOLERANCE:g}."
    )


if __name__ == "__main__":
    main()
