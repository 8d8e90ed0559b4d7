"""/jobs: every long operation as a job, run by a Temporal workflow."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Query
from pydantic import Field

from api.deps import AdminUser, CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import ok, page
from api.routing import api_router
from domain import schedules as schedule_rules
from services import jobs, schedules
from services.schemas.base import Schema
from services.schemas.jobs import JobOut, JobSubmitIn

router = api_router(prefix="/jobs", tags=["jobs"])

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def accepted(job, created: bool):
    """202 for a new job; 200 when an idempotent repeat returns the existing one."""
    body = JobOut.of(job)
    return ok(body, status=202 if created else 200, message="accepted" if created else "ok")


@router.post("", status_code=202)
async def submit(body: JobSubmitIn, user: CurrentUser, platform: PlatformDep):
    job, created = await jobs.submit(platform, user, body.task_type, body.payload, body.idempotency_key)
    return accepted(job, created)


@router.get("")
async def list_jobs(
    user: CurrentUser,
    platform: PlatformDep,
    status: Status | None = None,
    task_type: str | None = Query(None, alias="taskType"),
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    rows, total = await jobs.list_jobs(
        platform, user, status=status, task_type=task_type, page=page_number, page_size=page_size
    )
    return page([JobOut.of(j) for j in rows], total, page_number, page_size)


@router.get("/task-types")
async def task_types(_user: CurrentUser):
    return ok(jobs.task_types())


# --- schedules (literal paths before /{job_id}) ---------------------------------------------------------


class IntervalScheduleIn(Schema):
    task_type: str = Field(min_length=1, max_length=64)
    every_seconds: int = Field(ge=schedule_rules.MIN_EVERY_SECONDS, le=schedule_rules.MAX_EVERY_SECONDS)
    payload: dict[str, Any] = Field(default_factory=dict)


class CronScheduleIn(Schema):
    task_type: str = Field(min_length=1, max_length=64)
    cron_expr: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict)


@router.post("/schedules/interval", status_code=201)
async def schedule_interval(body: IntervalScheduleIn, user: CurrentUser, platform: PlatformDep):
    created = await schedules.create(
        platform, user, body.task_type, schedule_rules.INTERVAL, str(body.every_seconds), body.payload
    )
    return ok(created, status=201, message="schedule created")


@router.post("/schedules/cron", status_code=201)
async def schedule_cron(body: CronScheduleIn, user: CurrentUser, platform: PlatformDep):
    created = await schedules.create(
        platform, user, body.task_type, schedule_rules.CRON, body.cron_expr.strip(), body.payload
    )
    return ok(created, status=201, message="schedule created")


@router.get("/schedules")
async def list_schedules(
    user: CurrentUser,
    platform: PlatformDep,
    status: Literal["active", "stopped"] | None = None,
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    rows, total = await schedules.list_schedules(platform, user, status=status, page=page_number, page_size=page_size)
    return page(rows, total, page_number, page_size)


@router.get("/schedules/{schedule_id}")
async def get_schedule(schedule_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await schedules.get(platform, user, schedule_id))


@router.post("/schedules/{schedule_id}/stop")
async def stop_schedule(schedule_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await schedules.stop(platform, user, schedule_id), message="schedule stopped")


@router.get("/system-schedules/templates")
async def system_templates(admin: AdminUser, platform: PlatformDep):
    return ok(await schedules.system_templates(platform, admin))


@router.post("/system-schedules/templates/recover")
async def recover_system_templates(admin: AdminUser, platform: PlatformDep):
    return ok(await schedules.recover_system_templates(platform, admin), message="system schedules recovered")


@router.get("/runtime")
async def runtime(admin: AdminUser, platform: PlatformDep):
    return ok(await schedules.runtime(platform, admin))


# --- one job --------------------------------------------------------------------------------------------


class TransitionIn(Schema):
    to_status: Status


@router.post("/{job_id}/transition")
async def transition_job(job_id: str, body: TransitionIn, user: CurrentUser, platform: PlatformDep):
    return ok(JobOut.of(await jobs.transition(platform, user, job_id, body.to_status)))


@router.get("/{job_id}")
async def get_job(job_id: str, user: CurrentUser, platform: PlatformDep):
    job = await jobs.get(platform, user, job_id)
    return ok(JobOut.of(job, await jobs.logs(platform, job.id)))


@router.post("/{job_id}/cancel")
async def cancel_job(job_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(JobOut.of(await jobs.cancel(platform, user, job_id)))


@router.post("/{job_id}/retry", status_code=202)
async def retry_job(job_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(JobOut.of(await jobs.retry(platform, user, job_id)), status=202, message="accepted")
