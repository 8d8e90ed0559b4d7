"""The job path: a user's jobs take their concurrency slot in turn, each handed it by the job that frees it; a
running backtest that is cancelled stops and stores nothing; parallel claims never exceed the tier's limit.

With QUANTPOLY_RECORD_HISTORIES=1 these tests also write the histories of their runs to tests/histories,
where the replay test of tests/test_foundation.py reads them.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from activities.jobs import JobActivities, locked_job, record_outcome, record_success
from core.settings import Settings
from db.engine import Database
from db.models import Backtest, Job, User
from tests.conftest import data, error
from tests.test_backtests import CONFIG, PASSWORD, active_strategy, settled, submit
from tests.test_jobs import SYNC, wait_for
from tests.test_worker_recovery import running_activity
from worker import build_worker
from workflows.steps import CLAIMED, SLOT_FREED_SIGNAL, WAITING, ClaimInput, JobOutcome

HISTORIES = Path(__file__).parent / "histories"
# Long enough to cancel while it loads: eight years of hourly bars, synced from the provider first.
LONG_CONFIG = {"symbol": "TSLA", "timeframe": "1Hour", "startDate": "2018-01-02", "endDate": "2025-12-31"}


async def keep_history(stack, workflow_id: str, name: str) -> WorkflowHistory:
    history = await stack.temporal.get_workflow_handle(workflow_id).fetch_history()
    if os.environ.get("QUANTPOLY_RECORD_HISTORIES") == "1":
        (HISTORIES / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=2) + "\n")
    return history


def signals_received(history: WorkflowHistory) -> int:
    return sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and event.workflow_execution_signaled_event_attributes.signal_name == SLOT_FREED_SIGNAL
    )


async def queued_then_run(stack, configs: list[dict], settings: Settings) -> tuple[dict, list, list, list]:
    """Backtests of one new user, all queued before a worker (with ``settings``) runs them: their views,
    jobs and workflow histories, once all have settled; the jobs ran one at a time, in the user's slot."""
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        _, _, headers = await stack.new_account(PASSWORD)  # its verification mail needs a worker
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=5, longWindow=60)
    ids = [(await submit(stack, headers, strategy["id"], config))["backtestTask"]["id"] for config in configs]
    async with build_worker(stack.temporal, settings, Database.from_settings(settings)):
        views = [await settled(stack, headers, backtest_id) for backtest_id in ids]
        histories = [await stack.temporal.get_workflow_handle(f"backtest-{i}").fetch_history() for i in ids]
    jobs = [data(await stack.http.get(f"/jobs/{v['jobId']}", headers=headers)) for v in views]
    in_turn = sorted((job["startedAt"], job["finishedAt"]) for job in jobs)
    assert all(finished <= started for (_, finished), (started, _) in zip(in_turn, in_turn[1:], strict=False))
    return headers, views, jobs, histories


def activities_scheduled(history: WorkflowHistory) -> int:
    return sum(1 for event in history.events if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)


async def test_a_users_backtests_hand_the_slot_over_in_their_worker(idle_stack):
    """Three backtests of one user queued at once on one worker: one claims the user's single slot, the
    others wait for it inside their activity and take it from the job finishing in the same worker, so
    each backtest is still one activity and no workflow is signalled."""
    configs = [CONFIG, CONFIG, CONFIG]
    _, views, jobs, histories = await queued_then_run(idle_stack, configs, idle_stack.settings)
    assert [v["status"] for v in views] == ["completed"] * 3, views
    assert [activities_scheduled(h) for h in histories] == [1, 1, 1]
    assert [signals_received(h) for h in histories] == [0, 0, 0]
    last = max(range(len(jobs)), key=lambda i: jobs[i]["startedAt"])
    await keep_history(idle_stack, f"backtest-{views[last]['id']}", "backtest_v3_waited_in_worker")


async def test_a_users_backtests_take_the_slot_in_turn_woken_by_signal(idle_stack):
    """Four backtests of one user whose claims do not wait in their worker (as when the slot is freed by
    another worker): one claims the user's single slot, the others report waiting and are woken in turn by
    the signal of the job that finishes; one fails, which frees its slot too."""
    stack = idle_stack
    too_short = {**CONFIG, "startDate": "2023-11-01", "endDate": "2023-12-31"}
    configs = [CONFIG, CONFIG, too_short, CONFIG]
    signalled = stack.settings.model_copy(update={"job_wait_here_seconds": 0})
    _, views, jobs, histories = await queued_then_run(stack, configs, signalled)
    ids = [view["id"] for view in views]
    assert [v["status"] for v in views] == ["completed", "completed", "failed", "completed"], views
    assert views[2]["error"]["code"] == "BACKTEST_INSUFFICIENT_DATA"
    woken = [signals_received(history) for history in histories]
    assert sum(woken) >= 2, woken  # at least the jobs that started last were woken by a signal
    first_ran = min(range(len(jobs)), key=lambda i: jobs[i]["startedAt"])
    waited = max(range(len(jobs)), key=lambda i: woken[i])
    await keep_history(stack, f"backtest-{ids[first_ran]}", "backtest_v3_completed")
    await keep_history(stack, f"backtest-{ids[waited]}", "backtest_v3_waited_for_signal")
    await keep_history(stack, f"backtest-{ids[2]}", "backtest_v3_failed")


async def test_a_running_backtest_cancelled_stops_at_once_and_stores_nothing(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers)
    backtest_id = (await submit(stack, headers, strategy["id"], LONG_CONFIG))["backtestTask"]["id"]
    workflow_id = f"backtest-{backtest_id}"
    for _ in range(3000):  # until a worker runs it
        if await running_activity(stack, workflow_id) is not None:
            break
        await asyncio.sleep(0.01)
    # The answer waits for the workflow's end (a few seconds at most): it must already say cancelled.
    cancelled = data(await stack.http.post(f"/backtests/{backtest_id}/cancel", headers=headers))
    assert cancelled["status"] == "cancelled", cancelled
    history = await keep_history(stack, workflow_id, "backtest_v3_cancelled")
    requested = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED]
    assert requested, "the running activity was not asked to stop"

    # Its slot is free at once: the user's next backtest runs to completion.
    following = (await submit(stack, headers, strategy["id"]))["backtestTask"]["id"]
    assert (await settled(stack, headers, following))["status"] == "completed"
    assert error(await stack.http.get(f"/backtests/{backtest_id}/result", headers=headers), 404)["code"] == (
        "BACKTEST_RESULT_NOT_READY"
    )
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            stored = await session.execute(select(Backtest.metrics, Backtest.result).where(Backtest.id == backtest_id))
            assert stored.one() == (None, None)
    finally:
        await db.dispose()
    job = data(await stack.http.get(f"/jobs/{cancelled['jobId']}", headers=headers))
    assert job["status"] == "cancelled" and job["result"] is None
    assert job["logs"][-1]["message"].startswith("cancelled")  # nothing written after the cancel


async def test_a_sync_job_runs_in_its_slot_and_succeeds(stack):
    headers = (await stack.new_account(PASSWORD))[2]
    task_id = (await stack.http.post("/market/sync-task", json=SYNC, headers=headers)).json()["data"]["taskId"]
    job = await wait_for(stack, headers, task_id, "succeeded")
    assert job["result"]["summary"]["successCount"] == 2 and job["logs"][-1]["message"] == "succeeded"
    history = await keep_history(stack, f"job-{task_id}", "job_v2_succeeded")
    assert history.events[0].workflow_execution_started_event_attributes.workflow_type.name == "JobWorkflowV2"


@pytest.mark.parametrize("owner", ["user", "platform"])
async def test_parallel_claims_never_exceed_the_users_limit(database_url, owner):
    """Many queued jobs of one user (or of the platform's own, which have none) claim at once: exactly the
    tier's limit of them may run; one that ends names as many waiting jobs as slots it frees."""
    db = Database.from_settings(Settings(database_url=database_url))
    try:
        async with db.session() as session:
            user = User(email=f"claims-{uuid.uuid4().hex[:8]}@example.com", password_hash="-")
            session.add(user)
            await session.flush()
            jobs = [
                Job(
                    user_id=user.id if owner == "user" else None,
                    task_type="market_data_sync",
                    payload={},
                    idempotency_key=f"k{i}",
                    dispatch_id=f"job-{i}",
                    created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
                )
                for i in range(8)
            ]
            session.add_all(jobs)
        # Claims that find no free slot answer at once, rather than wait in the worker for one.
        claimer = JobActivities(db, None, Settings(database_url=database_url, job_wait_here_seconds=0))
        claims = await asyncio.gather(*(claimer.claim_slot(ClaimInput(job.id, f"job-{job.id}", "run")) for job in jobs))
        async with db.session() as session:
            running = await session.scalar(select(func.count()).select_from(Job).where(Job.status == "running"))
            waiting = set(await session.scalars(select(Job.error_code).where(Job.status == "queued")))
        # A claim repeated by the run that made it (a retried attempt) keeps its slot and takes no other.
        again = await claimer.claim_slot(ClaimInput(jobs[0].id, f"job-{jobs[0].id}", "run"))
        first_running = next(job for job, claim in zip(jobs, claims, strict=True) if claim.state == CLAIMED)
        async with db.session() as session:
            ended = await locked_job(session, first_running.id)
            woken = await record_outcome(session, ended, JobOutcome("succeeded"), None, [])
            stored_result = await session.scalar(select(Job.result).where(Job.id == first_running.id))
        # The engine's path: the update itself checks that the job still runs.
        last_running = next(
            job for job, claim in zip(jobs, claims, strict=True) if claim.state == CLAIMED and job is not first_running
        )
        async with db.session() as session:
            ran, woken_by_last = await record_success(session, last_running.id, {"n": 1}, ["done"])
            ended_twice = await record_success(session, first_running.id, {"n": 2}, [])
            results = dict(
                (
                    await session.execute(
                        select(Job.id, Job.result).where(Job.id.in_([first_running.id, last_running.id]))
                    )
                ).all()
            )
    finally:
        await db.dispose()
    states = [claim.state for claim in claims]
    assert states.count(CLAIMED) == running == 2  # the batch tier's limit
    assert states.count(WAITING) == 6 and waiting == {"CONCURRENCY_LIMIT_EXCEEDED"}
    assert again.state == (CLAIMED if states[0] == CLAIMED else WAITING)
    oldest_waiting = next(job for job, claim in zip(jobs, claims, strict=True) if claim.state == WAITING)
    assert woken == [oldest_waiting.dispatch_id] and stored_result is None
    two_oldest = [job.dispatch_id for job, claim in zip(jobs, claims, strict=True) if claim.state == WAITING][:2]
    assert ran is not None and ran.id == last_running.id and woken_by_last == two_oldest  # both slots free now
    assert ended_twice == (None, []) and results == {first_running.id: None, last_running.id: {"n": 1}}
