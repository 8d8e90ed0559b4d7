"""/strategy-health: strategy health reports (``health-<report id>`` workflows), as the reference's front end
posts and reads them."""

from __future__ import annotations

from api.deps import CurrentUser, PageNumber, PageSize, PlatformDep
from api.envelope import Envelope, Page, errors, ok, page
from api.routing import api_router
from services import strategy_health
from services.schemas.strategy_health import HealthIn, HealthReportOut

router = api_router(prefix="/strategy-health", tags=["strategy health"])

# 403: a strategyId that is not the caller's (STRATEGY_ACCESS_DENIED). 422: UNSUPPORTED_TEMPLATE,
# INVALID_CONFIGURATION (parameters, config, inline prices), or the report's job failed within the wait:
# NO_MARKET_DATA (no bars, or too few) or ANALYSIS_FAILED. 503: Temporal unreachable.
CREATE_ERRORS = errors(
    403,
    422,
    503,
    codes={403: "STRATEGY_ACCESS_DENIED", 422: "INVALID_CONFIGURATION", 503: "TASK_ORCHESTRATION_UNAVAILABLE"},
)


@router.post("", status_code=201, response_model=Envelope[HealthReportOut], responses=CREATE_ERRORS)
async def create(body: HealthIn, user: CurrentUser, platform: PlatformDep):
    """Start a report (the parameters perturbed by ±10/20/50%, each run in and out of sample) and wait a few
    seconds for it: the completed report, or the report still ``pending``/``running`` to read again later."""
    report = await strategy_health.create(platform, user, body)
    return ok(report, status=201)


@router.get("", response_model=Envelope[Page[HealthReportOut]])
async def list_reports(user: CurrentUser, platform: PlatformDep, page_number: PageNumber = 1, page_size: PageSize = 10):
    """The caller's reports, newest first."""
    rows, total = await strategy_health.list_reports(platform, user, page=page_number, page_size=page_size)
    return page(rows, total, page_number, page_size)


@router.get(
    "/{report_id}",
    response_model=Envelope[HealthReportOut],
    responses=errors(403, denied="strategy_health"),
)
async def get(report_id: str, user: CurrentUser, platform: PlatformDep):
    """One of the caller's reports; a missing or foreign one is 403 ``STRATEGY_HEALTH_ACCESS_DENIED``."""
    return ok(await strategy_health.get(platform, user, report_id))
