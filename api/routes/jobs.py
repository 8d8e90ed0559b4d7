"""/jobs: every long operation as a job, run by a Temporal workflow."""

from __future__ import annotations

from typing import Literal

from fastapi import Query

from api.deps import AdminUser, CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import Envelope, Page, errors, ok, page
from api.routing import api_router
from domain import schedules as schedule_rules
from services import jobs, schedules
from services.schemas.jobs import (
    CronScheduleIn,
    IntervalScheduleIn,
    JobOut,
    JobStatus,
    JobSubmitIn,
    JobTransitionIn,
    RuntimeOut,
    ScheduleOut,
    SystemTemplateOut,
    TaskTypeOut,
)

router = api_router(prefix="/jobs", tags=["jobs"])

DENIED = errors(403, denied="job")
# A state the job is not in (409), or Temporal unreachable when a run must start (503).
MOVE_ERRORS = errors(403, 409, 503, denied="job", codes={409: "INVALID_TRANSITION"})
SCHEDULE_DENIED = errors(403, denied="schedule")
ADMIN_ONLY = errors(403, codes={403: "ADMIN_REQUIRED"})
# An unknown or record-only task type (400), a payload or spec that cannot run (422), too many schedules (409).
SCHEDULE_CREATE_ERRORS = errors(
    400, 403, 409, 422, codes={400: "INVALID_ARGUMENT", 403: "ADMIN_REQUIRED", 409: "SCHEDULE_LIMIT_EXCEEDED"}
)


def accepted(job, created: bool):
    """202 for a new job; 200 when an idempotent repeat returns the existing one."""
    body = JobOut.of(job)
    return ok(body, status=202 if created else 200, message="accepted" if created else "ok")


@router.post(
    "",
    status_code=202,
    response_model=Envelope[JobOut],
    responses={
        200: {"model": Envelope[JobOut], "description": "An idempotent repeat: the job this key already made"},
        **errors(400, 403, 409, 422, 503, codes={400: "INVALID_ARGUMENT", 409: "IDEMPOTENCY_CONFLICT"}),
    },
)
async def submit(body: JobSubmitIn, user: CurrentUser, platform: PlatformDep):
    job, created = await jobs.submit(platform, user, body.task_type, body.payload, body.idempotency_key)
    return accepted(job, created)


@router.get("", response_model=Envelope[Page[JobOut]])
async def list_jobs(
    user: CurrentUser,
    platform: PlatformDep,
    status: JobStatus | None = None,
    task_type: str | None = Query(None, alias="taskType", max_length=64),
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    rows, total = await jobs.list_jobs(
        platform, user, status=status, task_type=task_type, page=page_number, page_size=page_size
    )
    return page([JobOut.of(j) for j in rows], total, page_number, page_size)


@router.get("/task-types", response_model=Envelope[list[TaskTypeOut]])
async def task_types(_user: CurrentUser):
    return ok(jobs.task_types())


# --- schedules (literal paths before /{job_id}) ---------------------------------------------------------


@router.post(
    "/schedules/interval", status_code=201, response_model=Envelope[ScheduleOut], responses=SCHEDULE_CREATE_ERRORS
)
async def schedule_interval(body: IntervalScheduleIn, user: CurrentUser, platform: PlatformDep):
    created = await schedules.create(
        platform, user, body.task_type, schedule_rules.INTERVAL, str(body.every_seconds), body.payload
    )
    return ok(created, status=201, message="schedule created")


@router.post("/schedules/cron", status_code=201, response_model=Envelope[ScheduleOut], responses=SCHEDULE_CREATE_ERRORS)
async def schedule_cron(body: CronScheduleIn, user: CurrentUser, platform: PlatformDep):
    created = await schedules.create(
        platform, user, body.task_type, schedule_rules.CRON, body.cron_expr.strip(), body.payload
    )
    return ok(created, status=201, message="schedule created")


@router.get("/schedules", response_model=Envelope[Page[ScheduleOut]])
async def list_schedules(
    user: CurrentUser,
    platform: PlatformDep,
    status: Literal["active", "stopped"] | None = None,
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    rows, total = await schedules.list_schedules(platform, user, status=status, page=page_number, page_size=page_size)
    return page(rows, total, page_number, page_size)


@router.get("/schedules/{schedule_id}", response_model=Envelope[ScheduleOut], responses=SCHEDULE_DENIED)
async def get_schedule(schedule_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await schedules.get(platform, user, schedule_id))


@router.post(
    "/schedules/{schedule_id}/stop",
    response_model=Envelope[ScheduleOut],
    responses=errors(403, 409, denied="schedule", codes={409: "SCHEDULE_ALREADY_STOPPED"}),
)
async def stop_schedule(schedule_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(await schedules.stop(platform, user, schedule_id), message="schedule stopped")


@router.get("/system-schedules/templates", response_model=Envelope[list[SystemTemplateOut]], responses=ADMIN_ONLY)
async def system_templates(admin: AdminUser, platform: PlatformDep):
    return ok(await schedules.system_templates(platform, admin))


@router.post(
    "/system-schedules/templates/recover", response_model=Envelope[list[SystemTemplateOut]], responses=ADMIN_ONLY
)
async def recover_system_templates(admin: AdminUser, platform: PlatformDep):
    return ok(await schedules.recover_system_templates(platform, admin), message="system schedules recovered")


@router.get("/runtime", response_model=Envelope[RuntimeOut], responses=ADMIN_ONLY)
async def runtime(admin: AdminUser, platform: PlatformDep):
    return ok(await schedules.runtime(platform, admin))


# --- one job --------------------------------------------------------------------------------------------


@router.get("/{job_id}", response_model=Envelope[JobOut], responses=DENIED)
async def get_job(job_id: str, user: CurrentUser, platform: PlatformDep):
    job = await jobs.get(platform, user, job_id)
    return ok(JobOut.of(job, await jobs.logs(platform, job.id)))


@router.post("/{job_id}/transition", response_model=Envelope[JobOut], responses=MOVE_ERRORS)
async def transition_job(job_id: str, body: JobTransitionIn, user: CurrentUser, platform: PlatformDep):
    return ok(JobOut.of(await jobs.transition(platform, user, job_id, body.to_status)))


@router.post("/{job_id}/cancel", response_model=Envelope[JobOut], responses=MOVE_ERRORS)
async def cancel_job(job_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(JobOut.of(await jobs.cancel(platform, user, job_id)))


@router.post("/{job_id}/retry", status_code=202, response_model=Envelope[JobOut], responses=MOVE_ERRORS)
async def retry_job(job_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(JobOut.of(await jobs.retry(platform, user, job_id)), status=202, message="accepted")
