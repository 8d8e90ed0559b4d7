"""/market/*: market data. Long work (sync) runs as jobs."""

from __future__ import annotations

import uuid
from datetime import date

from fastapi import APIRouter
from pydantic import Field

from api.deps import CurrentUser, PlatformDep
from api.envelope import ok
from core.errors import AccessDenied
from services import jobs
from services.views import JobOut, Schema

router = APIRouter(prefix="/market", tags=["market"])
SYNC = "market_data_sync"


class SyncTaskIn(Schema):
    symbols: list[str] = Field(min_length=1, max_length=100)
    start_date: date
    end_date: date
    timeframe: str = "1Day"
    idempotency_key: str | None = Field(default=None, max_length=128)


def task_view(job) -> dict:
    """The reference's task shape: ``{taskId, taskType, status, result, error}`` plus the whole job."""
    body = JobOut.of(job)
    return {
        "taskId": body.task_id,
        "taskType": body.task_type,
        "status": body.status,
        "result": body.result,
        "error": body.error,
        "job": body,
    }


@router.post("/sync-task", status_code=202)
async def submit_sync(body: SyncTaskIn, user: CurrentUser, platform: PlatformDep):
    payload = body.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
    key = body.idempotency_key or f"market-sync-{uuid.uuid4()}"
    job, created = await jobs.submit(platform, user, SYNC, payload, key)
    return ok(task_view(job), status=202 if created else 200)


async def _sync_job(platform, user, task_id: str):
    job = await jobs.get(platform, user, task_id)
    if job.task_type != SYNC:
        raise AccessDenied("job")
    return job


@router.get("/sync-task/{task_id}")
async def get_sync(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(task_view(await _sync_job(platform, user, task_id)))


@router.post("/sync-task/{task_id}/retry", status_code=202)
async def retry_sync(task_id: str, user: CurrentUser, platform: PlatformDep):
    await _sync_job(platform, user, task_id)
    return ok(task_view(await jobs.retry(platform, user, task_id)), status=202)
