"""Recurring jobs (reference §2.5): a user's interval and cron schedules, and the platform's own system
schedule templates."""

from __future__ import annotations

from dataclasses import dataclass

INTERVAL, CRON = "interval", "cron"
ACTIVE, STOPPED = "active", "stopped"
# A schedule fires at most this often: every firing is a job, and a job is a workflow run.
MIN_EVERY_SECONDS = 1
MAX_EVERY_SECONDS = 366 * 24 * 3600
# Schedules a user may keep active at once.
MAX_ACTIVE_PER_USER = 20
SYSTEM_NAMESPACE = "system"


def user_namespace(user_id: str) -> str:
    return f"user:{user_id}"


def reconciler_schedule_id(task_queue: str) -> str:
    """The schedule of the job reconciler a worker of this task queue keeps."""
    return f"job-reconciler-{task_queue}"


def schedule_workflow_id(schedule_id: str) -> str:
    """The id of a user's Temporal Schedule (its runs' workflow ids begin with it)."""
    return f"schedule-{schedule_id}"


@dataclass(frozen=True)
class SystemTemplate:
    """One of the platform's own recurring jobs, kept as a Temporal Schedule ``system-<id>``."""

    id: str
    task_type: str
    schedule_type: str
    expression: str
    description: str

    @property
    def schedule_id(self) -> str:
        return f"system-{self.id}"


# The reference's four, and two of the paper ledger's own. A template whose task type no worker runs yet (risk,
# signals) has its schedule, paused until the task type arrives.
SYSTEM_TEMPLATES: tuple[SystemTemplate, ...] = (
    SystemTemplate(
        "trading-refresh-prices-interval",
        "trading_refresh_prices",
        INTERVAL,
        "300",
        "Mark paper-trading positions to market.",
    ),
    SystemTemplate(
        "trading-pending-process-interval",
        "trading_pending_process",
        INTERVAL,
        "60",
        "Fill pending limit orders the market has reached.",
    ),
    SystemTemplate(
        "trading-daily-stats-cron",
        "trading_daily_stats_calculate",
        CRON,
        "55 23 * * *",
        "Store every paper-trading account's book at the end of the day (UTC).",
    ),
    SystemTemplate(
        "risk-continuous-monitor-interval",
        "risk_continuous_monitor",
        INTERVAL,
        "120",
        "Evaluate every account's risk rules.",
    ),
    SystemTemplate(
        "signal-cleanup-expired-cron",
        "signal_cleanup_expired",
        CRON,
        "0 */6 * * *",
        "Expire signals past their validity.",
    ),
    SystemTemplate(
        "strategy-performance-analyze-cron",
        "strategy_performance_analyze",
        CRON,
        "0 2 * * *",
        "Analyse every active strategy's recent performance.",
    ),
)
