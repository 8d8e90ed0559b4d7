"""Strategy health (reference §2.11): a report of how a strategy's return holds up when its parameters move
and out of sample, as a ``strategy_health_analyze`` job on the research sweep machinery (every perturbation a
trial of a ``ResearchWorkflow``, workflow id ``health-<report id>``).

The request is resolved when it is made (template, parameters, config, perturbations, periods): one that
cannot run is a 422 and creates nothing. The job, its sweep's row and the report's row are one transaction;
the workflow starts after it. The reference computed a report inside the request and its front end shows it
at once, so ``create`` waits for the job a bounded while (``strategy_health_wait_seconds``) and answers with
the report as it then stands: completed, or still pending or running (read it again later). The work itself
always runs in a worker. The report's figures are computed from the job's result whenever it is read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from core.errors import AccessDenied, AppError
from db.models import HealthReport, Job, ResearchSweep, User
from domain import market as market_limits
from domain import research as sweeps
from domain import strategies as strategy_rules
from domain import strategy_health as rules
from domain.backtest import BacktestConfig
from services import jobs, research
from services.platform import Platform
from services.schemas.strategy_health import HealthIn, HealthReportOut

ANALYZE = "strategy_health_analyze"
NO_MARKET_DATA, ANALYSIS_FAILED = "NO_MARKET_DATA", "ANALYSIS_FAILED"


def invalid_configuration(message: str, details: list[dict[str, str]]) -> AppError:
    return AppError(message, code="INVALID_CONFIGURATION", status=422, details=details)


async def create(platform: Platform, user: User, request: HealthIn) -> HealthReportOut:
    """A new report: its job started, then waited for a bounded while. A job that failed meanwhile is a 422
    (``NO_MARKET_DATA`` when the bars were missing or too few, else ``ANALYSIS_FAILED``)."""
    template = request.template
    if template not in strategy_rules.TEMPLATES:
        raise AppError(
            f"unsupported template {template!r}; one of {', '.join(strategy_rules.TEMPLATES)}",
            code="UNSUPPORTED_TEMPLATE",
            status=422,
        )
    if request.prices is not None:
        raise invalid_configuration(
            "a report runs on stored bars: give a symbol",
            [{"field": "prices", "message": "inline prices are not accepted: give a symbol"}],
        )
    try:
        original = strategy_rules.validate_parameters(template, request.parameters)
    except strategy_rules.ParameterError as error:
        raise invalid_configuration(
            "invalid strategy parameters", [{"field": "parameters", "message": p} for p in error.problems]
        ) from None
    config = _config(platform, request)
    if request.strategy_id is not None:
        await research.owned_strategy(platform, user, request.strategy_id)
    try:
        plan, layout = rules.plan_of(template, original, config.stored())
    except sweeps.InvalidSweep as error:
        raise invalid_configuration(
            "the range cannot be split into in- and out-of-sample periods",
            [{"field": "endDate", "message": problem} for problem in error.problems],
        ) from None
    assert plan.points is not None  # a report lists its trials
    asked = request.model_dump(mode="json", by_alias=True, exclude_none=True)
    payload: dict[str, Any] = {"request": asked}
    if request.strategy_id is not None:
        payload["strategyId"] = request.strategy_id  # also its workflow's search attribute
    stored = {"parameters": original, "backtest": plan.config, "window": plan.windows[0]}

    def rows(job: Job) -> list[Any]:
        return [
            # What the sweep's activities read. No strategy: the research listings of a strategy show its
            # sweeps, not its health reports (the report's row names the strategy).
            ResearchSweep(
                job_id=job.id,
                user_id=user.id,
                strategy_id=None,
                method=plan.method,
                plan=plan.model_dump(mode="json", by_alias=True),
                trials_planned=len(plan.points or []),
                trials_done=0,
            ),
            HealthReport(
                job_id=job.id,
                user_id=user.id,
                strategy_id=request.strategy_id,
                template=template,
                config=stored,
                perturbations=[p.stored() for p in layout],
            ),
        ]

    skipped = sum(1 for p in layout if p.skipped)
    message = f"queued health report of {template}: {len(plan.points)} trials, {skipped} perturbations skipped"
    job, _ = await jobs.submit_for_record(platform, user, ANALYZE, payload, None, message, rows)
    await _settled(platform, job, platform.settings.strategy_health_wait_seconds)
    report, cause = await _report(platform, user, job.id)
    if report.status == rules.FAILED:
        raise AppError(
            report.error or "the report failed",
            code=NO_MARKET_DATA if cause in rules.NO_DATA_CODES else ANALYSIS_FAILED,
            status=422,
            details={"reportId": report.report_id, "cause": cause},
        )
    return report


def _config(platform: Platform, request: HealthIn) -> BacktestConfig:
    """The backtest config of the report: the request's symbol (else the platform's default), dates (as a
    backtest's default), capital, commission and timeframe, over a range a request may cover."""
    given: dict[str, Any] = {
        "symbol": (request.symbol or "").strip() or platform.settings.research_default_symbol,
        "startDate": request.start_date,
        "endDate": request.end_date,
        "initialCapital": request.initial_capital,
        "commissionRate": request.commission_rate,
        "timeframe": request.timeframe,
    }
    try:
        config = BacktestConfig.model_validate({key: value for key, value in given.items() if value is not None})
        span = config.span()
        market_limits.check_range(
            span.start_date, span.end_date, span.timeframe, platform.settings.market_max_bars_per_request
        )
    except ValidationError as error:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]) or "config", "message": e["msg"]} for e in error.errors()
        ]
        raise invalid_configuration("invalid backtest config", fields) from None
    except ValueError as error:  # the range (PydanticCustomError is a ValueError)
        raise invalid_configuration(
            "invalid backtest config", [{"field": "startDate", "message": str(error)}]
        ) from None
    return config


async def _settled(platform: Platform, job: Job, seconds: float) -> None:
    """Wait at most ``seconds`` for the job's workflow to end."""
    if seconds <= 0 or job.dispatch_id is None:
        return
    handle = platform.temporal.get_workflow_handle(job.dispatch_id)
    try:
        await asyncio.wait_for(handle.result(), seconds)
    except Exception:  # still running (the bound passed), or it failed: the job's row tells which
        pass


# --- reading ------------------------------------------------------------------------------------------------


async def get(platform: Platform, user: User, report_id: str) -> HealthReportOut:
    report, _ = await _report(platform, user, report_id)
    return report


async def _report(platform: Platform, user: User, report_id: str) -> tuple[HealthReportOut, str | None]:
    async with platform.db.reading() as session:
        row = (
            await session.execute(
                select(HealthReport, Job)
                .join(Job, Job.id == HealthReport.job_id)
                .where(HealthReport.job_id == report_id)
            )
        ).first()
    if row is None or row[0].user_id != user.id:
        raise AccessDenied("strategy_health")
    return view(row[0], row[1])


async def list_reports(
    platform: Platform, user: User, *, page: int, page_size: int
) -> tuple[list[HealthReportOut], int]:
    """The user's reports, newest first."""
    mine = HealthReport.user_id == user.id
    async with platform.db.reading() as session:
        total = await session.scalar(select(func.count()).select_from(HealthReport).where(mine))
        rows = (
            await session.execute(
                select(HealthReport, Job)
                .join(Job, Job.id == HealthReport.job_id)
                .where(mine)
                .order_by(HealthReport.created_at.desc(), HealthReport.job_id.desc())
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
        ).all()
    return [view(report, job)[0] for report, job in rows], int(total or 0)


def view(report: HealthReport, job: Job) -> tuple[HealthReportOut, str | None]:
    """The report as the front end reads it, and the error code of a failed one (the job's, or why no report
    could be made of its result)."""
    status = rules.STATUS_OF_JOB.get(job.status, rules.PENDING)
    fields: dict[str, Any] = {}
    cause: str | None = None
    if status == rules.COMPLETED:
        try:
            found = (job.result or {}).get("optimizationResult")
            if not found:
                raise rules.ReportUnavailable(ANALYSIS_FAILED, "任务没有留下结果")
            fields = rules.report_of(found, report.config["parameters"], report.perturbations)
        except rules.ReportUnavailable as unavailable:
            status, cause, fields = rules.FAILED, unavailable.code, {"error": unavailable.message}
    elif status == rules.FAILED:
        cause = job.error_code or ANALYSIS_FAILED
        fields = {"error": rules.job_error(job.error_code, job.error_message, job.status)}
    backtest, window = report.config["backtest"], report.config["window"]
    out = HealthReportOut.model_validate(
        {
            "reportId": report.job_id,
            "userId": report.user_id,
            "strategyId": report.strategy_id,
            "status": status,
            "createdAt": job.created_at,
            "completedAt": job.finished_at if status in (rules.COMPLETED, rules.FAILED) else None,
            "config": {
                "template": report.template,
                "parameters": report.config["parameters"],
                "symbol": backtest["symbol"],
                "timeframe": backtest["timeframe"],
                "startDate": backtest["startDate"],
                "endDate": backtest["endDate"],
                "initialCapital": backtest["initialCapital"],
                "commissionRate": backtest["commissionRate"],
                "inSampleStart": window["trainStart"],
                "inSampleEnd": window["trainEnd"],
                "outSampleStart": window["testStart"],
                "outSampleEnd": window["testEnd"],
            },
            **fields,
        }
    )
    return out, cause
