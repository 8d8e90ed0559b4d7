"""Recurring jobs as Temporal Schedules: they fire real jobs of the registry, stop when told, keep firing across
a restart of the API, the worker and the Temporal server, and belong to their user; the system templates and
the runtime view for operators."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from core.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES
from db.engine import Database
from db.models import Job
from domain.schedules import SYSTEM_TEMPLATES
from tests.conftest import data, error, open_stack
from tests.test_admin import create_admin
from tests.test_jobs import SYNC
from worker import ensure_schedules

PASSWORD = "Schedule1Password"
BIN = Path(sys.executable).parent


async def scheduled_jobs(stack, schedule_id: str) -> list[Job]:
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            return list(await session.scalars(select(Job).where(Job.schedule_id == schedule_id)))
    finally:
        await db.dispose()


async def until(probe, *args, timeout: float = 30.0, step: float = 0.25):
    """Ask ``probe(*args)`` until it answers something true; that answer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := await probe(*args)):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(step)
    return found


async def every_two_seconds(stack, headers) -> dict:
    body = {"taskType": "market_data_sync", "everySeconds": 2, "payload": SYNC}
    return data(await stack.http.post("/jobs/schedules/interval", json=body, headers=headers), 201)


async def test_an_interval_schedule_fires_jobs_until_stopped(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    schedule = await every_two_seconds(stack, headers)
    assert schedule["status"] == "active" and schedule["scheduleType"] == "interval" and schedule["nextRuns"]
    fired = await until(_at_least, stack, schedule["id"], 2)
    assert all(job.task_type == "market_data_sync" and job.payload == fired[0].payload for job in fired)
    finished = await until(_succeeded, stack, schedule["id"])
    assert finished.user_id == schedule["namespace"].removeprefix("user:")

    stopped = data(await stack.http.post(f"/jobs/schedules/{schedule['id']}/stop", headers=headers))
    assert stopped["status"] == "stopped" and stopped["nextRuns"] == []
    count = len(await scheduled_jobs(stack, schedule["id"]))
    await asyncio.sleep(4.5)  # two periods: a live schedule would have fired twice more
    assert len(await scheduled_jobs(stack, schedule["id"])) == count
    again = error(await stack.http.post(f"/jobs/schedules/{schedule['id']}/stop", headers=headers), 409)
    assert again["code"] == "SCHEDULE_ALREADY_STOPPED"
    listed = data(await stack.http.get("/jobs/schedules", headers=headers))
    assert [s["id"] for s in listed["items"]] == [schedule["id"]] and listed["items"][0]["jobsStarted"] == count


async def _at_least(stack, schedule_id: str, count: int) -> list[Job] | None:
    jobs = await scheduled_jobs(stack, schedule_id)
    return jobs if len(jobs) >= count else None


async def _succeeded(stack, schedule_id: str) -> Job | None:
    return next((j for j in await scheduled_jobs(stack, schedule_id) if j.status == "succeeded"), None)


async def test_schedules_belong_to_their_user(stack):
    _, _, owner = await stack.new_account(PASSWORD)
    _, _, stranger = await stack.new_account(PASSWORD)
    body = {"taskType": "market_data_sync", "cronExpr": "0 2 * * *", "payload": SYNC}
    schedule = data(await stack.http.post("/jobs/schedules/cron", json=body, headers=owner), 201)
    for method, path in (("get", ""), ("post", "/stop")):
        response = await getattr(stack.http, method)(f"/jobs/schedules/{schedule['id']}{path}", headers=stranger)
        assert error(response, 403)["code"] == "SCHEDULE_ACCESS_DENIED"
    missing = await stack.http.get("/jobs/schedules/no-such-schedule", headers=owner)
    assert error(missing, 403)["code"] == "SCHEDULE_ACCESS_DENIED"
    assert data(await stack.http.get("/jobs/schedules", headers=stranger))["total"] == 0
    assert data(await stack.http.get(f"/jobs/schedules/{schedule['id']}", headers=owner))["status"] == "active"
    data(await stack.http.post(f"/jobs/schedules/{schedule['id']}/stop", headers=owner))


@pytest.mark.parametrize(
    "path, body, status, code",
    [
        ("interval", {"taskType": "market_data_sync", "everySeconds": 0, "payload": SYNC}, 422, "VALIDATION_ERROR"),
        ("interval", {"taskType": "market_data_sync", "everySeconds": 5, "payload": {}}, 422, "VALIDATION_ERROR"),
        ("interval", {"taskType": "nope", "everySeconds": 5}, 400, "INVALID_ARGUMENT"),
        ("interval", {"taskType": "backtest_run", "everySeconds": 5}, 400, "INVALID_ARGUMENT"),
        ("cron", {"taskType": "market_data_sync", "cronExpr": "every day", "payload": SYNC}, 422, None),
        ("cron", {"taskType": "market_data_sync", "cronExpr": "61 * * * *", "payload": SYNC}, 422, None),
    ],
)
async def test_a_schedule_that_cannot_run_is_refused_and_nothing_is_kept(stack, path, body, status, code):
    _, _, headers = await stack.new_account(PASSWORD)
    refused = error(await stack.http.post(f"/jobs/schedules/{path}", json=body, headers=headers), status)
    assert refused["code"] == (code or "SCHEDULE_INVALID_EXPRESSION")
    assert data(await stack.http.get("/jobs/schedules", headers=headers))["total"] == 0


async def test_runtime_shows_the_worker_s_pollers_and_the_system_templates(stack):
    _, _, user = await stack.new_account(PASSWORD)
    assert error(await stack.http.get("/jobs/runtime", headers=user), 403)["code"] == "ADMIN_REQUIRED"
    assert error(await stack.http.get("/jobs/system-schedules/templates", headers=user), 403)["code"] == (
        "ADMIN_REQUIRED"
    )
    _, admin = await create_admin(stack)
    await ensure_schedules(stack.temporal, stack.settings)
    runtime = await until(_with_pollers, stack, admin)
    assert runtime["executor"]["taskQueue"] == stack.settings.task_queue
    assert runtime["recovery"]["reconcilerRunning"] is True and runtime["recovery"]["nextReconcileAt"]
    assert set(runtime["execution"]["byStatus"]) == {"queued", "running", "succeeded", "failed", "cancelled"}

    templates = data(await stack.http.get("/jobs/system-schedules/templates", headers=admin))
    assert [t["templateId"] for t in templates] == [t.id for t in SYSTEM_TEMPLATES]
    assert all(t["exists"] for t in templates)
    # Their task types come with later capabilities: until a worker runs one, its schedule waits paused.
    # Research brought the daily performance analysis of every active strategy, the paper ledger its three.
    running = {
        "strategy_performance_analyze",
        "trading_refresh_prices",
        "trading_pending_process",
        "trading_daily_stats_calculate",
    }
    for template in templates:
        available = template["taskType"] in running
        assert template["taskTypeAvailable"] is available and template["paused"] is not available, template
        assert bool(template["nextRuns"]) is available
    await stack.temporal.get_schedule_handle(SYSTEM_TEMPLATES[0].schedule_id).delete()
    gone = data(await stack.http.get("/jobs/system-schedules/templates", headers=admin))
    assert gone[0]["exists"] is False
    recovered = data(await stack.http.post("/jobs/system-schedules/templates/recover", headers=admin))
    assert [t["recreated"] for t in recovered] == [True] + [False] * (len(SYSTEM_TEMPLATES) - 1)
    assert all(t["exists"] for t in recovered)


async def _with_pollers(stack, headers) -> dict | None:
    runtime = data(await stack.http.get("/jobs/runtime", headers=headers))
    executor = runtime["executor"]
    return runtime if executor["workflowPollers"] and executor["activityPollers"] else None


async def test_the_cli_schedules_lists_and_stops(stack):
    email, _, _ = await stack.new_account(PASSWORD)
    payload = json.dumps({"symbols": ["IBM"], "startDate": "2024-01-01", "endDate": "2024-01-31"})
    created = await stack.cli(
        "jobs", "schedule-interval", "market_data_sync", "--every", "3600", "--payload", payload, "--user", email
    )
    assert created.exit_code == 0, created.output
    schedule = json.loads(created.stdout)
    assert schedule["schedule_type"] == "interval" and schedule["expression"] == "3600"
    listed = json.loads((await stack.cli("jobs", "schedules", "--user", email)).stdout)
    assert listed["total"] == 1 and listed["items"][0]["id"] == schedule["id"]
    stopped = await stack.cli("jobs", "schedule-stop", schedule["id"], "--user", email)
    assert stopped.exit_code == 0 and json.loads(stopped.stdout)["status"] == "stopped"
    refused = await stack.cli("jobs", "runtime", "--user", email)
    assert refused.exit_code == 1 and "ADMIN_REQUIRED" in refused.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _persistent_server(db_file: Path, port: int) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        dev_server_database_filename=str(db_file),
        port=port,
        data_converter=DATA_CONVERTER,
        search_attributes=list(SEARCH_ATTRIBUTES),
    )


async def test_a_schedule_keeps_firing_after_the_whole_stack_restarts(database_url, smtp_server, tmp_path):
    db_file, port = tmp_path / "temporal.db", _free_port()
    server = await _persistent_server(db_file, port)
    try:
        async for stack in open_stack(database_url, server.client, smtp_server, tmp_path, task_queue="restart-q"):
            _, _, headers = await stack.new_account(PASSWORD)
            schedule = await every_two_seconds(stack, headers)
            await until(_at_least, stack, schedule["id"], 1)
    finally:
        await server.shutdown()  # API, worker and Temporal are all gone now
    server = await _persistent_server(db_file, port)
    try:
        async for stack in open_stack(database_url, server.client, smtp_server, tmp_path, task_queue="restart-q"):
            before = len(await scheduled_jobs(stack, schedule["id"]))
            fired = await until(_at_least, stack, schedule["id"], before + 2)
            assert len(fired) >= before + 2
            assert await until(_succeeded_after, stack, schedule["id"], before)
            data(await stack.http.post(f"/jobs/schedules/{schedule['id']}/stop", headers=headers))
    finally:
        await server.shutdown()


async def _succeeded_after(stack, schedule_id: str, count: int) -> bool:
    jobs = sorted(await scheduled_jobs(stack, schedule_id), key=lambda j: j.created_at)
    return any(job.status == "succeeded" for job in jobs[count:])
