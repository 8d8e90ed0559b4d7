"""/health and /internal/metrics: unauthenticated, for probes and scrapers."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import PlatformDep
from api.envelope import error, ok
from api.routing import api_router
from services import health, jobs

router = api_router(tags=["platform"])


@router.get("/health")
async def get_health(platform: PlatformDep):
    checks = await health.check(platform)
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return error(503, "SERVICE_UNAVAILABLE", f"unavailable: {', '.join(down)}", details=checks)
    return ok({"status": "ok", "checks": checks})


@router.get("/internal/metrics")
async def metrics(request: Request, platform: PlatformDep):
    registry = request.app.state.metrics
    registry.jobs.clear()
    for (task_type, status), count in (await jobs.counts_by_status(platform)).items():
        registry.jobs.labels(task_type, status).set(count)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
