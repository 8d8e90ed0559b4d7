"""The job framework through HTTP: durable jobs on Temporal, idempotency, ownership, cancel, retry, and a
read model that is repaired when a workflow is ended from outside (as from the Web UI)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pandas as pd
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError

from activities.jobs import JobActivities
from core.settings import Settings
from db.engine import Database
from db.models import Job, MarketBar, User
from worker import build_worker, ensure_schedules

PASSWORD = "Jobs1Password"
SYNC = {"symbols": ["AAPL", "MSFT"], "startDate": "2024-01-01", "endDate": "2024-03-31", "timeframe": "1Day"}
BUSINESS_DAYS_Q1_2024 = 65


async def user_headers(stack) -> dict[str, str]:
    return (await stack.new_account(PASSWORD))[2]


async def wait_for(stack, headers, job_id: str, *statuses: str, timeout: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = (await stack.http.get(f"/jobs/{job_id}", headers=headers)).json()["data"]
        if job["status"] in statuses:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} stayed {job['status']}, expected {statuses}")
        await asyncio.sleep(0.2)


async def stored_bars(stack, symbol: str) -> int:
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            return await session.scalar(select(func.count()).select_from(MarketBar).where(MarketBar.symbol == symbol))
    finally:
        await db.dispose()


async def test_sync_task_runs_as_a_job_and_fetches_only_what_is_missing(stack):
    headers = await user_headers(stack)
    submitted = await stack.http.post("/market/sync-task", json=SYNC, headers=headers)
    assert submitted.status_code == 202
    task = submitted.json()["data"]
    assert task["taskType"] == "market_data_sync" and task["status"] in ("queued", "running", "succeeded")
    job = await wait_for(stack, headers, task["taskId"], "succeeded")
    summary = job["result"]["summary"]
    assert summary["totalSymbols"] == 2 and summary["successCount"] == 2 and summary["failureCount"] == 0
    assert summary["fetchedCount"] == 2 * BUSINESS_DAYS_Q1_2024 and summary["source"] == "synthetic"
    assert job["executor"]["dispatchId"] == f"job-{task['taskId']}" and job["executor"]["runId"]
    described = await stack.temporal.get_workflow_handle(f"job-{task['taskId']}").describe()
    assert described.raw_description.workflow_execution_info.priority.priority_key == 3  # the batch tier
    assert job["progress"] == 1.0 and job["startedAt"] and job["finishedAt"]
    messages = [line["message"] for line in job["logs"]]
    assert messages[0] == "queued market_data_sync" and messages[-1] == "succeeded"
    assert any(m.startswith("AAPL: fetched 65 1Day bars from synthetic") for m in messages)
    assert await stored_bars(stack, "AAPL") == BUSINESS_DAYS_Q1_2024

    again = await stack.http.post("/market/sync-task", json=SYNC, headers=headers)
    second = await wait_for(stack, headers, again.json()["data"]["taskId"], "succeeded")
    assert second["result"]["summary"]["fetchedCount"] == 0
    assert second["result"]["summary"]["rowCount"] == 2 * BUSINESS_DAYS_Q1_2024
    wider = {**SYNC, "symbols": ["AAPL"], "endDate": "2024-04-30"}
    third = await stack.http.post("/market/sync-task", json=wider, headers=headers)
    grown = await wait_for(stack, headers, third.json()["data"]["taskId"], "succeeded")
    assert grown["result"]["summary"]["fetchedCount"] == 22  # April only
    assert await stored_bars(stack, "AAPL") == BUSINESS_DAYS_Q1_2024 + 22
    metrics = (await stack.http.get("/internal/metrics")).text
    assert 'quantpoly_jobs{status="succeeded",task_type="market_data_sync"} 3.0' in metrics
    view = await stack.http.get(f"/market/sync-task/{task['taskId']}", headers=headers)
    assert view.json()["data"]["result"]["items"][0]["symbol"] == "AAPL"


async def test_idempotency_key_returns_the_same_job_or_conflicts(stack):
    headers = await user_headers(stack)
    body = {"taskType": "market_data_sync", "payload": SYNC, "idempotencyKey": "nightly-1"}
    first = await stack.http.post("/jobs", json=body, headers=headers)
    assert first.status_code == 202
    repeat = await stack.http.post("/jobs", json=body, headers=headers)
    assert repeat.status_code == 200 and repeat.json()["data"]["taskId"] == first.json()["data"]["taskId"]
    other = await stack.http.post("/jobs", json={**body, "payload": {**SYNC, "symbols": ["IBM"]}}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    listed = (await stack.http.get("/jobs", params={"taskType": "market_data_sync"}, headers=headers)).json()["data"]
    assert listed["total"] == 1


async def test_bad_submissions_are_refused_before_any_job_exists(stack):
    headers = await user_headers(stack)
    unknown = await stack.http.post(
        "/jobs", json={"taskType": "mine_bitcoin", "payload": {}, "idempotencyKey": "k1"}, headers=headers
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "INVALID_ARGUMENT"
    bad = {**SYNC, "endDate": "2023-01-01"}
    invalid = await stack.http.post(
        "/jobs", json={"taskType": "market_data_sync", "payload": bad, "idempotencyKey": "k2"}, headers=headers
    )
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "VALIDATION_ERROR"
    missing_key = await stack.http.post(
        "/jobs", json={"taskType": "market_data_sync", "payload": SYNC}, headers=headers
    )
    assert missing_key.status_code == 422
    assert (await stack.http.get("/jobs", headers=headers)).json()["data"]["total"] == 0


async def test_task_types_list_the_registry_with_sla(stack):
    headers = await user_headers(stack)
    types = (await stack.http.get("/jobs/task-types", headers=headers)).json()["data"]
    sync = next(t for t in types if t["taskType"] == "market_data_sync")
    assert sync["slaTier"] == "batch" and sync["concurrencyLimit"] == 2 and sync["timeoutSeconds"] == 1800


async def test_another_users_job_is_access_denied_everywhere(stack):
    owner, stranger = await user_headers(stack), await user_headers(stack)
    task_id = (await stack.http.post("/market/sync-task", json=SYNC, headers=owner)).json()["data"]["taskId"]
    for method, path in [
        ("GET", f"/jobs/{task_id}"),
        ("POST", f"/jobs/{task_id}/cancel"),
        ("POST", f"/jobs/{task_id}/retry"),
        ("GET", f"/market/sync-task/{task_id}"),
        ("POST", f"/market/sync-task/{task_id}/retry"),
        ("GET", f"/jobs/{uuid.uuid4()}"),
    ]:
        response = await stack.http.request(method, path, headers=stranger)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "JOB_ACCESS_DENIED"
    assert (await stack.http.get("/jobs", headers=stranger)).json()["data"]["total"] == 0


async def test_cancel_through_temporal_ends_cancelled(idle_stack):
    stack = idle_stack
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        headers = await user_headers(stack)
    task_id = (await stack.http.post("/market/sync-task", json=SYNC, headers=headers)).json()["data"]["taskId"]
    cancelled = await stack.http.post(f"/jobs/{task_id}/cancel", headers=headers)
    assert cancelled.status_code == 200
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        job = await wait_for(stack, headers, task_id, "cancelled")
    assert job["error"]["code"] == "JOB_CANCELLED" and job["startedAt"] is None
    again = await stack.http.post(f"/jobs/{task_id}/cancel", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_TRANSITION"


async def test_a_workflow_terminated_outside_is_repaired_then_retried(idle_stack):
    stack = idle_stack
    stack.settings.job_reconcile_interval_seconds = 1
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        headers = await user_headers(stack)
    task_id = (await stack.http.post("/market/sync-task", json=SYNC, headers=headers)).json()["data"]["taskId"]
    await stack.temporal.get_workflow_handle(f"job-{task_id}").terminate(reason="stopped from the Web UI")
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        await ensure_schedules(stack.temporal, stack.settings)
        try:
            job = await wait_for(stack, headers, task_id, "failed")
            assert job["error"]["code"] == "WORKFLOW_TERMINATED"
            retried = await stack.http.post(f"/jobs/{task_id}/retry", headers=headers)
            assert retried.status_code == 202 and retried.json()["data"]["attempt"] == 2
            done = await wait_for(stack, headers, task_id, "succeeded")
            assert done["error"] is None and done["result"]["summary"]["successCount"] == 2
            again = await stack.http.post(f"/jobs/{task_id}/retry", headers=headers)
            assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_TRANSITION"
        finally:
            await stack.temporal.get_schedule_handle(f"job-reconciler-{stack.settings.task_queue}").delete()


async def test_cli_sync_waits_for_the_job_and_reads_it_back(stack):
    address = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    await stack.register_verified(address, PASSWORD)
    synced = await stack.cli(
        "market", "sync", "AAPL", "IBM", "--start", "2024-01-01", "--end", "2024-03-31", "--wait", "--user", address
    )
    assert synced.exit_code == 0, synced.output
    job = json.loads(synced.stdout)
    assert job["status"] == "succeeded" and job["result"]["summary"]["successCount"] == 2
    assert job["task_type"] == "market_data_sync" and job["logs"][-1]["message"] == "succeeded"
    listed = json.loads((await stack.cli("jobs", "list", "--user", address)).stdout)
    assert listed["total"] == 1 and listed["items"][0]["task_id"] == job["task_id"]
    logs = json.loads((await stack.cli("jobs", "logs", job["task_id"], "--user", address)).stdout)
    assert any("IBM: fetched 65" in line["message"] for line in logs)
    types = json.loads((await stack.cli("jobs", "types")).stdout)
    assert [t["task_type"] for t in types] == [
        "market_data_sync",
        "market_indicators_calculate",
        "backtest_run",
        "strategy_optimization_suggest",
        "strategy_performance_analyze",
        "portfolio_evaluate",
        "portfolio_rebalance",
        "strategy_health_analyze",
        "trading_refresh_prices",
        "trading_pending_process",
        "trading_daily_stats_calculate",
        "trading_batch_execute",
        "trading_risk_monitor",
        "trading_account_cleanup",
    ]
    again = await stack.cli("jobs", "retry", job["task_id"], "--user", address)
    assert again.exit_code == 1 and "INVALID_TRANSITION" in again.stderr
    stranger = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    await stack.register_verified(stranger, PASSWORD)
    denied = await stack.cli("jobs", "show", job["task_id"], "--user", stranger)
    assert denied.exit_code == 1 and "JOB_ACCESS_DENIED" in denied.stderr


async def test_a_sync_fills_holes_between_earlier_ranges(stack):
    headers = await user_headers(stack)

    async def sync(start: str, end: str) -> dict:
        body = {"symbols": ["KO"], "startDate": start, "endDate": end}
        task_id = (await stack.http.post("/market/sync-task", json=body, headers=headers)).json()["data"]["taskId"]
        return (await wait_for(stack, headers, task_id, "succeeded"))["result"]["summary"]

    def days(start: str, end: str) -> int:  # the synthetic calendar: every weekday
        return len(pd.bdate_range(start, end))

    assert (await sync("2023-01-01", "2023-02-28"))["fetchedCount"] == days("2023-01-01", "2023-02-28")
    assert (await sync("2023-06-01", "2023-07-31"))["fetchedCount"] == days("2023-06-01", "2023-07-31")
    whole = await sync("2023-01-01", "2023-07-31")
    assert whole["fetchedCount"] == days("2023-03-01", "2023-05-31")  # the hole only
    assert whole["rowCount"] == days("2023-01-01", "2023-07-31") == await stored_bars(stack, "KO")
    assert (await sync("2023-02-01", "2023-06-30"))["fetchedCount"] == 0


async def test_parallel_starts_never_exceed_the_users_limit(database_url):
    """Many queued jobs of one user start at once: exactly the tier's limit of them may run."""
    db = Database.from_settings(Settings(database_url=database_url))
    try:
        async with db.session() as session:
            user = User(email=f"limit-{uuid.uuid4().hex[:8]}@example.com", password_hash="-")
            session.add(user)
            await session.flush()
            jobs = [
                Job(user_id=user.id, task_type="market_data_sync", payload={}, idempotency_key=f"k{i}")
                for i in range(8)
            ]
            session.add_all(jobs)
        starter = JobActivities(db, None, Settings(database_url=database_url))

        async def start(job_id: str) -> bool | str:
            try:
                return await starter.start_job(job_id, f"job-{job_id}", "run")
            except ApplicationError as refused:
                return refused.type

        outcomes = await asyncio.gather(*(start(job.id) for job in jobs))
        async with db.session() as session:
            running = await session.scalar(select(func.count()).select_from(Job).where(Job.status == "running"))
            waiting = set(await session.scalars(select(Job.error_code).where(Job.status == "queued")))
    finally:
        await db.dispose()
    assert outcomes.count(True) == running == 2  # the batch tier's limit
    assert outcomes.count("CONCURRENCY_LIMIT_EXCEEDED") == 6
    assert waiting == {"CONCURRENCY_LIMIT_EXCEEDED"}  # each refused job says why it waits


async def test_manual_transitions_leave_the_workflow_its_own(idle_stack):
    stack = idle_stack
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        headers = await user_headers(stack)
    task_id = (await stack.http.post("/market/sync-task", json=SYNC, headers=headers)).json()["data"]["taskId"]

    async def move(to: str):
        return await stack.http.post(f"/jobs/{task_id}/transition", json={"toStatus": to}, headers=headers)

    for owned in ("running", "succeeded"):  # only its workflow records these
        assert (await move(owned)).json()["error"]["code"] == "INVALID_TRANSITION"
    cancelled = await move("cancelled")
    assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "cancelled"
    assert (await move("queued")).status_code == 409  # cancelled is final
    stranger = await user_headers_with_worker(stack)
    denied = await stack.http.post(f"/jobs/{task_id}/transition", json={"toStatus": "cancelled"}, headers=stranger)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "JOB_ACCESS_DENIED"


async def user_headers_with_worker(stack) -> dict[str, str]:
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        return await user_headers(stack)
