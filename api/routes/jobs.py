"""/jobs: every long operation as a job, run by a Temporal workflow."""

from __future__ import annotations

from typing import Literal

from fastapi import Query

from api.deps import CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import ok, page
from api.routing import api_router
from api.schemas import JobSubmitIn
from services import jobs
from services.views import JobOut

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
