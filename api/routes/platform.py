"""/health and /internal/metrics: unauthenticated, for probes and scrapers."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import PlatformDep
from api.envelope import Envelope, error, errors, ok
from api.routing import api_router
from services import health, jobs
from services.schemas.platform import HealthOut

router = api_router(tags=["platform"])


@router.get(
    "/health",
    response_model=Envelope[HealthOut],
    # The 503's details name each dependency's state, as the 200's checks do.
    responses=errors(503),
)
async def get_health(platform: PlatformDep):
    checks = await health.check(platform)
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return error(503, "SERVICE_UNAVAILABLE", f"unavailable: {', '.join(down)}", details=checks)
    return ok(HealthOut(status="ok", checks=checks))


@router.get(
    "/internal/metrics",
    response_class=PlainTextResponse,
    response_description="Prometheus text exposition format",
)
async def metrics(request: Request, platform: PlatformDep):
    registry = request.app.state.metrics
    registry.jobs.clear()
    for (task_type, status), count in (await jobs.counts_by_status(platform)).items():
        registry.jobs.labels(task_type, status).set(count)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
