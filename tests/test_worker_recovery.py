"""A sync job whose worker process is killed (SIGKILL) mid-run finishes on a new worker, with every bar
stored once: none missing, none twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import PendingActivityState

from db.engine import Database
from db.models import MarketBar
from integrations.market_data.synthetic import SyntheticProvider
from tests.conftest import open_stack

ROOT = Path(__file__).parent.parent
SYMBOLS = ["AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "IBM"]
REQUEST = {"symbols": SYMBOLS, "startDate": "2020-01-01", "endDate": "2024-12-31", "timeframe": "1Hour"}


@pytest.fixture
async def idle_stack(database_url, dev_server, smtp_server, tmp_path):
    # A killed worker's activity is retried once this passes without a heartbeat; short, but long enough that
    # a live worker sharing two cores with the rest of the suite (two processes of it) never misses it.
    overrides = dict(market_sync_parallelism=1, job_heartbeat_timeout_seconds=8)
    async for stack in open_stack(
        database_url, dev_server.client, smtp_server, tmp_path, with_worker=False, **overrides
    ):
        yield stack


def start_worker(stack, code: str | None = None) -> subprocess.Popen:
    """``worker.py`` in a process of its own, or ``code`` that starts it."""
    env = {**os.environ, **stack.env, "QUANTPOLY_MARKET_SYNC_PARALLELISM": "1", "QUANTPOLY_LOG_LEVEL": "WARNING"}
    command = ["-c", code] if code else [str(ROOT / "worker.py")]
    return subprocess.Popen([sys.executable, *command], env=env, cwd=ROOT)


def kill_worker(process: subprocess.Popen) -> None:
    """Kill a worker outright (SIGKILL), and see that the processes it started (its pool, the pool's fork
    server) end with it rather than outlive it."""
    started = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(started, timeout=15)
    assert not alive, [" ".join(p.cmdline())[:120] for p in alive]


async def stop_workers(stack, *workers: subprocess.Popen | None) -> None:
    """Stop the workers still running, and the reconciler schedule the first one created."""
    for process in workers:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
    await stack.temporal.get_schedule_handle(f"job-reconciler-{stack.settings.task_queue}").delete()


async def job_state(stack, headers, job_id) -> dict:
    return (await stack.http.get(f"/jobs/{job_id}", headers=headers)).json()["data"]


async def test_killed_worker_loses_nothing(idle_stack):
    stack = idle_stack
    address = f"recovery-{uuid.uuid4().hex[:8]}@example.com"
    first = start_worker(stack)
    second = None
    try:
        await stack.register_verified(address, "Recover1Password")
        headers = await stack.login(address, "Recover1Password")
        job_id = (await stack.http.post("/market/sync-task", json=REQUEST, headers=headers)).json()["data"]["taskId"]
        for _ in range(600):  # until some, not all, symbols are stored
            job = await job_state(stack, headers, job_id)
            if job["progress"] >= 0.25:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # let the heartbeat carrying the finished symbols reach the server
        job = await job_state(stack, headers, job_id)
        assert job["status"] == "running" and 0 < job["progress"] < 1, job
        kill_worker(first)

        second = start_worker(stack)
        for _ in range(1200):
            job = await job_state(stack, headers, job_id)
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
        assert job["status"] == "succeeded", job
        assert job["result"]["summary"]["successCount"] == len(SYMBOLS)
        assert any(line["message"].startswith("resuming:") for line in job["logs"])

        provider = SyntheticProvider(seed=stack.settings.synthetic_seed)
        start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)
        db = Database.from_settings(stack.settings)
        try:
            async with db.session() as session:
                for symbol in SYMBOLS:
                    expected = len(provider.bars(symbol, "1Hour", start, end))
                    stored = await session.scalar(
                        select(func.count()).select_from(MarketBar).where(MarketBar.symbol == symbol)
                    )
                    assert stored == expected, symbol
        finally:
            await db.dispose()
    finally:
        await stop_workers(stack, first, second)


BACKTEST_CONFIG = {"symbol": "NVDA", "timeframe": "1Hour", "startDate": "2018-01-02", "endDate": "2025-12-31"}


async def backtest_state(stack, headers, backtest_id) -> dict:
    return (await stack.http.get(f"/backtests/{backtest_id}", headers=headers)).json()["data"]


async def completed_result(stack, headers, backtest_id) -> dict:
    for _ in range(1200):
        backtest = await backtest_state(stack, headers, backtest_id)
        if backtest["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.1)
    assert backtest["status"] == "completed", backtest
    return (await stack.http.get(f"/backtests/{backtest_id}/result", headers=headers)).json()["data"]


# A worker that waits 4 s at the start of one store call, after marking that it got there, so that a kill
# lands inside that part of the backtest's activity: sync_symbol while it loads the bars, stored_arrays while
# it reads them for the engine.
SLOW_WORKER = """
import asyncio, pathlib, worker
from activities.market_data import MarketDataActivities
original = MarketDataActivities.{method}
async def slow(self, *args, **kwargs):
    pathlib.Path({marker!r}).touch()
    await asyncio.sleep(4)
    return await original(self, *args, **kwargs)
MarketDataActivities.{method} = slow
worker.main()
"""
SLOWED = {"loading": "sync_symbol", "engine": "stored_arrays"}
RUN_IN_SLOT = "backtest_run_in_slot"


async def running_activity(stack, workflow_id: str) -> str | None:
    """The name of the workflow's activity that a worker is running now, if any."""
    description = await stack.temporal.get_workflow_handle(workflow_id).describe()
    for pending in description.raw_description.pending_activities:
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
            return pending.activity_type.name
    return None


def activity_attempts(history, name: str) -> list[int]:
    """The attempt number of each start of the named activity in a workflow history."""
    scheduled = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    return [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
        and scheduled[event.activity_task_started_event_attributes.scheduled_event_id] == name
    ]


@pytest.mark.parametrize("part", list(SLOWED))
async def test_killed_worker_mid_backtest_gives_the_uninterrupted_result(idle_stack, tmp_path, part):
    """Killed while syncing bars, or while reading them for the engine: the next worker finishes the
    backtest in a second attempt of its activity, and the result equals an uninterrupted run's."""
    stack = idle_stack
    email, password = f"backtest-{uuid.uuid4().hex[:8]}@example.com", "Recover1Password"
    created = await stack.cli("users", "create", "--email", email, input=f"{password}\n{password}\n")
    assert created.exit_code == 0, created.output
    headers = await stack.login(email, password)
    body = {"name": "cross", "template": "moving_average", "parameters": {"shortWindow": 10, "longWindow": 50}}
    strategy = (await stack.http.post("/strategies", json=body, headers=headers)).json()["data"]
    await stack.http.post(f"/strategies/{strategy['id']}/activate", headers=headers)

    async def submit() -> str:
        task = {"strategyId": strategy["id"], "config": BACKTEST_CONFIG}
        answer = await stack.http.post("/backtests/tasks", json=task, headers=headers)
        return answer.json()["data"]["backtestTask"]["id"]

    interrupted = await submit()
    marker = tmp_path / "slowed"
    first, second = start_worker(stack, SLOW_WORKER.format(method=SLOWED[part], marker=str(marker))), None
    try:
        for _ in range(6000):  # until the activity is inside the slowed call
            if marker.exists():
                break
            await asyncio.sleep(0.01)
        assert await running_activity(stack, f"backtest-{interrupted}") == RUN_IN_SLOT
        await asyncio.sleep(1)  # inside the slowed call
        kill_worker(first)
        at_kill = await backtest_state(stack, headers, interrupted)
        assert at_kill["status"] == "running", at_kill  # killed mid-run, not before or after

        second = start_worker(stack)
        resumed = await completed_result(stack, headers, interrupted)
        history = await stack.temporal.get_workflow_handle(f"backtest-{interrupted}").fetch_history()
        uninterrupted = await completed_result(stack, headers, await submit())
    finally:
        await stop_workers(stack, first, second)
    assert activity_attempts(history, RUN_IN_SLOT) == [2]
    assert resumed["metrics"]["barCount"] > 10_000
    for key in ("equityCurve", "dailyReturns", "trades", "metrics"):
        assert resumed[key] == uninterrupted[key], key
