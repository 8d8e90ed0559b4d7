"""Research sweeps through the stack against the same sweeps in-process, and a grid against vectorbt's.

    .venv/bin/python benchmarks/research.py [--grid-trials 400] [--tpe-trials 1000] [--rounds 5]
                                            [--database-url URL]

The stack runs as in `benchmarks/backtests_e2e.py`: a Temporal dev server from the installed binary, the API
in this process through httpx's ASGI transport, `worker.py` in a process of its own (then a second one), and
SQLite in a temporary directory or a fresh PostgreSQL schema. One user and one `moving_average` strategy;
the bars are 1Day synthetic bars of AAPL 2019-01-01..2023-12-31 (five years), stored by a warm-up backtest.

Measured, each round:

- one backtest, submit → completed: from the moment before the POST to the `finishedAt` that
  `GET /backtests/{id}` shows once it is completed (the median of five): the yardstick of a grid's latency;
- a grid of `--grid-trials` points (shortWindow × longWindow, every point feasible), validation `none`,
  submit → succeeded, the same way from `GET /strategies/{id}/research/results/{taskId}`; trials per second;
- a seeded TPE sweep (`bayesian`, seed 7) of `--tpe-trials` trials on the same space, the same way.

In-process peers over the same bars (read from the provider, as the worker reads them from the store): optuna's
GridSampler and TPESampler (seeded, multivariate, constant liar, as ours) calling our engine in one process;
and vectorbt's broadcast parameter grid (every window pair at once, `Portfolio.from_signals`). Then the grid
and the TPE sweep again with a second worker process on the task queue.

Printed: trials per second of each, the grid's time over one backtest's, and the ratios through the stack to
in-process (medians over the rounds). Checked: every trial's score equals the in-process one to 1e-9 (the
grid), and each sweep ran every trial it planned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import optuna
from temporalio.client import Client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from benchmarks.backtests_e2e import (  # noqa: E402
    Child,
    data,
    database,
    platform_settings,
    polling,
    require,
    sign_in,
    spawned,
    started_dev_server,
    watched,
)
from core.settings import Settings  # noqa: E402
from domain import backtest as backtests  # noqa: E402
from domain.backtest import BacktestConfig, BarArrays  # noqa: E402
from integrations.market_data import provider_from_settings  # noqa: E402

CONFIG = {"symbol": "AAPL", "timeframe": "1Day", "startDate": "2019-01-01", "endDate": "2023-12-31"}
SEED = 7
SINGLES = 5
# The read model is polled only to learn that a job ended: its time is the job's own finishedAt, so polling
# often would only take CPU from the job measured.
POLL_SECONDS = 0.05
TOLERANCE = 1e-9
optuna.logging.set_verbosity(optuna.logging.WARNING)


def grid_space(trials: int) -> dict[str, dict[str, int]]:
    """About ``trials`` points, every one feasible: short windows 2.. by 2, long windows 100.. by 5."""
    side = max(2, round(trials**0.5))
    return {
        "shortWindow": {"min": 2, "max": 2 + 2 * (side - 1), "step": 2},
        "longWindow": {"min": 100, "max": 100 + 5 * (side - 1), "step": 5},
    }


def sweep_body(method: str, space: dict, trials: int) -> dict[str, Any]:
    return {
        "method": method,
        "objective": {"metric": "sharpeRatio"},
        "parameterSpace": space,
        "budget": {"maxTrials": trials, "maxDurationSeconds": 3600},
        "seed": SEED,
        "config": CONFIG,
        "validation": {"mode": "none"},
    }


# --- in-process -------------------------------------------------------------------------------------------


def stored_bars(settings: Settings) -> BarArrays:
    config = BacktestConfig.model_validate(CONFIG)
    start = datetime.combine(config.start_date, datetime.min.time(), tzinfo=UTC)  # type: ignore[arg-type]
    end = datetime.combine(config.end_date, datetime.max.time(), tzinfo=UTC)  # type: ignore[arg-type]
    return BarArrays.of(provider_from_settings(settings).bars("AAPL", "1Day", start, end))


def in_process(bars: BarArrays, space: dict, trials: int, sampler: optuna.samplers.BaseSampler) -> tuple[float, dict]:
    """Optuna in this process calling our engine: (seconds, score by parameters)."""
    config = BacktestConfig.model_validate(CONFIG)
    scores: dict[tuple[int, int], float] = {}

    def objective(trial: optuna.Trial) -> float:
        short = trial.suggest_int("shortWindow", space["shortWindow"]["min"], space["shortWindow"]["max"], step=2)
        long = trial.suggest_int("longWindow", space["longWindow"]["min"], space["longWindow"]["max"], step=5)
        value = backtests.evaluate(bars, "moving_average", {"shortWindow": short, "longWindow": long}, config)
        score = value.metrics["sharpeRatio"]
        scores[short, long] = score
        return score

    study = optuna.create_study(direction="maximize", sampler=sampler)
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - started, scores


def grid_sampler(space: dict) -> optuna.samplers.GridSampler:
    values = {name: list(range(int(r["min"]), int(r["max"]) + 1, int(r["step"]))) for name, r in space.items()}
    return optuna.samplers.GridSampler(values, seed=SEED)


def vectorbt_grid(bars: BarArrays, space: dict) -> float:
    """Seconds for vectorbt's broadcast grid: every (short, long) pair's crossover signals and portfolio at once."""
    import pandas as pd
    import vectorbt as vbt

    close = pd.Series(bars.close)
    shorts = list(range(int(space["shortWindow"]["min"]), int(space["shortWindow"]["max"]) + 1, 2))
    longs = list(range(int(space["longWindow"]["min"]), int(space["longWindow"]["max"]) + 1, 5))
    pairs = [(short, long) for short in shorts for long in longs]
    started = time.perf_counter()
    fast = vbt.MA.run(close, window=[short for short, _ in pairs], short_name="fast")
    slow = vbt.MA.run(close, window=[long for _, long in pairs], short_name="slow")
    entries, exits = fast.ma_crossed_above(slow, level_name=None), fast.ma_crossed_below(slow, level_name=None)
    portfolio = vbt.Portfolio.from_signals(close, entries.values, exits.values, freq="1D")
    portfolio.sharpe_ratio()
    return time.perf_counter() - started


# --- through the stack ------------------------------------------------------------------------------------


class Stack:
    def __init__(self, http: httpx.AsyncClient, client: Client, headers: dict[str, str], strategy_id: str) -> None:
        self.http, self.client, self.headers, self.strategy_id = http, client, headers, strategy_id

    async def backtest(self) -> float:
        """Submit → completed, as the read model's ``finishedAt`` tells it; then its workflow's end, untimed."""
        submitted = datetime.now(UTC)
        body = {"strategyId": self.strategy_id, "config": CONFIG}
        task = data(await self.http.post("/backtests/tasks", json=body, headers=self.headers), 202)
        backtest_id = task["backtestTask"]["id"]
        finished = await self.polled(f"/backtests/{backtest_id}", "completed")
        await self.client.get_workflow_handle(f"backtest-{backtest_id}").result()
        return (finished - submitted).total_seconds()

    async def sweep(self, body: dict[str, Any]) -> tuple[float, str]:
        """The same for a sweep; its workflow ends after writing the sweep to optuna's storage."""
        submitted = datetime.now(UTC)
        url = f"/strategies/{self.strategy_id}/research/optimization-task"
        task = data(await self.http.post(url, json=body, headers=self.headers), 202)
        finished = await self.polled(f"/strategies/{self.strategy_id}/research/results/{task['taskId']}", "succeeded")
        await self.client.get_workflow_handle(f"research-{task['taskId']}").result()
        return (finished - submitted).total_seconds(), task["taskId"]

    async def polled(self, url: str, done: str) -> datetime:
        """When the job finished, as it recorded it, once the read model shows it ``done``."""
        while True:
            shown = data(await self.http.get(url, headers=self.headers))
            if shown["status"] == done:
                return datetime.fromisoformat(shown["finishedAt"])
            require(shown["status"] not in ("failed", "cancelled"), f"{url} ended {shown['status']}")
            await asyncio.sleep(POLL_SECONDS)

    async def trials(self, task_id: str) -> list[dict[str, Any]]:
        url = f"/strategies/{self.strategy_id}/research/results/{task_id}/trials"
        found: list[dict[str, Any]] = []
        while True:
            page = data(
                await self.http.get(url, params={"page": len(found) // 200 + 1, "pageSize": 200}, headers=self.headers)
            )
            found += page["items"]
            if len(found) >= page["total"]:
                return found


@contextlib.contextmanager
def worker_process(overrides: dict[str, Any], tmp: Path, name: str) -> Iterator[Child]:
    env = {**os.environ, **{f"QUANTPOLY_{key.upper()}": str(v) for key, v in overrides.items()}}
    with spawned(name, [sys.executable, str(ROOT / "worker.py")], env, tmp / f"{name}.log") as child:
        yield child


async def run(args: argparse.Namespace, database_url: str, tmp: Path) -> dict[str, Any]:
    env = await started_dev_server()
    try:
        overrides = platform_settings(env, database_url, tmp)
        settings = Settings(**overrides)
        with worker_process(overrides, tmp, "worker") as first:
            await polling(env.client, settings.task_queue, first)
            app = create_app(settings, temporal=env.client)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as http:
                    headers = (await sign_in(http, app.state.platform, 1))[0]
                    body = {"name": "bench", "template": "moving_average", "parameters": {}}
                    created = data(await http.post("/strategies", json=body, headers=headers), 201)
                    data(await http.post(f"/strategies/{created['id']}/activate", headers=headers))
                    stack = Stack(http, env.client, headers, created["id"])
                    await stack.backtest()  # the bars stored; the pool and the sandbox warm
                    for _ in range(2):  # as a worker that has run sweeps before: its processes warm
                        await stack.sweep(sweep_body("grid", grid_space(args.grid_trials), args.grid_trials))
                    one = await watched([first], measure(stack, args, "one worker"))
                    with worker_process(overrides, tmp, "second worker") as second:
                        await polling(env.client, settings.task_queue, second)
                        for _ in range(4):  # both workers' pools started, whichever takes a batch
                            await stack.sweep(sweep_body("grid", grid_space(64), 64))
                        two = await watched([first, second], measure(stack, args, "two workers", singles=False))
        return {"one": one, "two": two, "settings": settings}
    finally:
        await env.shutdown()


async def measure(stack: Stack, args: argparse.Namespace, label: str, *, singles: bool = True) -> dict[str, Any]:
    space = grid_space(args.grid_trials)
    rounds = []
    for number in range(args.rounds):
        backtest = statistics.median([await stack.backtest() for _ in range(SINGLES)]) if singles else None
        grid_time, grid_id = await stack.sweep(sweep_body("grid", space, args.grid_trials))
        tpe_time, tpe_id = await stack.sweep(sweep_body("bayesian", space, args.tpe_trials))
        rounds.append({"backtest": backtest, "grid": grid_time, "tpe": tpe_time, "grid_id": grid_id, "tpe_id": tpe_id})
        print(f"  {label}, round {number + 1}: grid {grid_time:.2f} s, TPE {tpe_time:.2f} s", file=sys.stderr)
    grid_trials = await stack.trials(rounds[-1]["grid_id"])
    tpe_trials = await stack.trials(rounds[-1]["tpe_id"])
    return {"rounds": rounds, "grid_trials": grid_trials, "tpe_count": len(tpe_trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-trials", type=int, default=400, help="points of the grid (default 400)")
    parser.add_argument("--tpe-trials", type=int, default=1000, help="trials of the TPE sweep (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL (or SQLite) URL; default a temp SQLite")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    space = grid_space(args.grid_trials)
    side = len(range(space["shortWindow"]["min"], space["shortWindow"]["max"] + 1, 2))
    args.grid_trials = side * len(range(space["longWindow"]["min"], space["longWindow"]["max"] + 1, 5))

    with tempfile.TemporaryDirectory(prefix="quantpoly-research-") as tmp, database(args.database_url, Path(tmp)) as db:
        url, label = db
        stacked = asyncio.run(run(args, url, Path(tmp)))
    bars = stored_bars(stacked["settings"])
    grid_local = [in_process(bars, space, args.grid_trials, grid_sampler(space)) for _ in range(args.rounds)]
    tpe_local = [
        in_process(
            bars, space, args.tpe_trials, optuna.samplers.TPESampler(seed=SEED, multivariate=True, constant_liar=True)
        )[0]
        for _ in range(args.rounds)
    ]
    vectorbt = [vectorbt_grid(bars, space) for _ in range(args.rounds)]
    check(stacked, grid_local[0][1], args)
    report(stacked, [t for t, _ in grid_local], tpe_local, vectorbt, label, args)


def check(stacked: dict[str, Any], local: dict[tuple[int, int], float], args: argparse.Namespace) -> None:
    for run_ in ("one", "two"):
        trials = stacked[run_]["grid_trials"]
        require(len(trials) == args.grid_trials, f"{run_}: the grid ran {len(trials)} trials of {args.grid_trials}")
        for trial in trials:
            key = (trial["parameters"]["shortWindow"], trial["parameters"]["longWindow"])
            require(
                abs(trial["score"] - local[key]) <= TOLERANCE,
                f"trial {trial['trialId']}: {trial['score']} vs {local[key]}",
            )
        require(
            stacked[run_]["tpe_count"] == args.tpe_trials, f"{run_}: the TPE sweep ran {stacked[run_]['tpe_count']}"
        )


def report(stacked, grid_local: list[float], tpe_local: list[float], vectorbt: list[float], label: str, args) -> None:
    def median(run_: str, key: str) -> float:
        return statistics.median(r[key] for r in stacked[run_]["rounds"])

    grid_n, tpe_n = args.grid_trials, args.tpe_trials
    backtest = median("one", "backtest")
    rows = [
        ("grid, through the stack (1 worker)", grid_n / median("one", "grid")),
        ("grid, through the stack (2 workers)", grid_n / median("two", "grid")),
        ("grid, optuna + our engine in-process", grid_n / statistics.median(grid_local)),
        ("grid, vectorbt broadcast", grid_n / statistics.median(vectorbt)),
        ("TPE, through the stack (1 worker)", tpe_n / median("one", "tpe")),
        ("TPE, through the stack (2 workers)", tpe_n / median("two", "tpe")),
        ("TPE, optuna + our engine in-process", tpe_n / statistics.median(tpe_local)),
    ]
    print(f"\nResearch sweeps on {label}; {os.cpu_count()} cores; medians of {args.rounds} rounds")
    print(
        f"submit → completed: one backtest {backtest * 1000:.0f} ms, "
        f"a grid of {grid_n} {median('one', 'grid') * 1000:.0f} ms"
    )
    width = max(len(name) for name, _ in rows)
    for name, rate in rows:
        print(f"  {name.ljust(width)}  {rate:9.1f} trials/s")
    print("ratios:")
    print(f"  grid time / one backtest's                    {median('one', 'grid') / backtest:6.2f}  (aim ≤ 4)")
    print(f"  grid through the stack / in-process           {rows[0][1] / rows[2][1]:6.2f}  (aim ≥ 0.5)")
    print(f"  grid through the stack / vectorbt             {rows[0][1] / rows[3][1]:6.2f}")
    print(f"  TPE through the stack / in-process            {rows[4][1] / rows[6][1]:6.2f}  (aim ≥ 0.8)")
    print(f"  second worker: grid ×{rows[1][1] / rows[0][1]:.2f}, TPE ×{rows[5][1] / rows[4][1]:.2f}")


if __name__ == "__main__":
    main()
