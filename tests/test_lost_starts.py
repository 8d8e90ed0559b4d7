"""Nothing accepted is lost: a process killed after writing a job and before starting its workflow leaves a
queued row with no workflow; whoever finds it next (a repeated request, the reconciler) starts it."""

from __future__ import annotations

import uuid

from db.base import new_id
from db.engine import Database
from db.models import Backtest, Job
from domain.backtest import BacktestConfig
from services import backtests
from tests.conftest import data
from tests.test_backtests import CONFIG, PASSWORD, active_strategy, settled
from tests.test_jobs import SYNC, wait_for
from worker import build_worker, ensure_schedules


async def killed_before_start(stack, user_id: str, strategy: dict, key: str) -> str:
    """The rows `POST /backtests/tasks` commits before it starts the workflow, as a killed API leaves them."""
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            backtest = Backtest(
                id=new_id(),
                user_id=user_id,
                strategy_id=strategy["id"],
                template=strategy["template"],
                parameters=strategy["parameters"],
                config=BacktestConfig.model_validate(CONFIG).stored(),
                idempotency_key=key,
                request_digest=backtests.request_digest(strategy["id"], CONFIG, None),
            )
            await backtests.new_job(session, backtest, attempt=1)
            session.add(backtest)
        return backtest.id
    finally:
        await db.dispose()


async def test_a_repeated_request_starts_the_lost_backtest(stack):
    _, user, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers)
    backtest_id = await killed_before_start(stack, user["id"], strategy, "lost-1")
    body = {"strategyId": strategy["id"], "config": CONFIG, "idempotencyKey": "lost-1"}
    again = data(await stack.http.post("/backtests/tasks", json=body, headers=headers), 200)
    assert again["backtestTask"]["id"] == backtest_id
    assert (await settled(stack, headers, backtest_id))["status"] == "completed"
    assert data(await stack.http.get(f"/backtests/{backtest_id}/result", headers=headers))["metrics"]


async def test_the_reconciler_starts_lost_jobs_instead_of_failing_them(idle_stack):
    stack = idle_stack
    stack.settings.job_reconcile_interval_seconds = 1
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        _, user, headers = await stack.new_account(PASSWORD)  # its verification mail needs a worker
    strategy = await active_strategy(stack, headers)
    backtest_id = await killed_before_start(stack, user["id"], strategy, "lost-2")
    db = Database.from_settings(stack.settings)
    async with db.session() as session:  # a plain job too, lost the same way
        job = Job(user_id=user["id"], task_type="market_data_sync", payload=SYNC, idempotency_key=uuid.uuid4().hex)
        session.add(job)
        await session.flush()
        job.dispatch_id = f"job-{job.id}"
        # Old enough that no live process can still be starting it.
        job.created_at = job.created_at.replace(year=job.created_at.year - 1)
    async with db.session() as session:
        row = await session.get(Backtest, backtest_id)
        lost = await session.get(Job, row.job_id)
        lost.created_at = lost.created_at.replace(year=lost.created_at.year - 1)
    await db.dispose()
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        await ensure_schedules(stack.temporal, stack.settings)
        try:
            assert (await settled(stack, headers, backtest_id))["status"] == "completed"
            synced = await wait_for(stack, headers, job.id, "succeeded")
            assert any("started by the reconciler" in line["message"] for line in synced["logs"])
        finally:
            await stack.temporal.get_schedule_handle(f"job-reconciler-{stack.settings.task_queue}").delete()
