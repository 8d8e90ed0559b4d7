"""Jobs: the lifecycle every long operation shares, and the registry of task types with their SLA tiers
(reference §2.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from domain import ledger
from domain.market import IndicatorsRequest, SyncRequest
from domain.portfolios import EvaluatePayload, RebalancePayload
from domain.strategy_health import HealthPayload

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, CANCELLED})
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED}),
    FAILED: frozenset({QUEUED, CANCELLED}),
    SUCCEEDED: frozenset(),
    CANCELLED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


@dataclass(frozen=True)
class SlaTier:
    name: str
    priority: int
    timeout_seconds: int
    max_retries: int
    concurrency_limit: int

    @property
    def priority_key(self) -> int:
        """Temporal's task priority (1 is served first, 5 last) for the reference's 100/50/10."""
        return 1 if self.priority >= 100 else 3 if self.priority >= 50 else 5


INTERACTIVE = SlaTier("interactive", priority=100, timeout_seconds=1800, max_retries=1, concurrency_limit=1)
BATCH = SlaTier("batch", priority=50, timeout_seconds=1800, max_retries=0, concurrency_limit=2)
MAINTENANCE = SlaTier("maintenance", priority=10, timeout_seconds=900, max_retries=0, concurrency_limit=1)


class BacktestRunPayload(BaseModel):
    """A backtest's run: the backtest row says what to run."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    backtest_id: str = Field(min_length=1, max_length=64)
    strategy_id: str = Field(min_length=1, max_length=80)


class ResearchPayload(BaseModel):
    """A research job of a strategy: the request as it was sent (what a repeated idempotency key must match);
    the sweep's row holds it resolved."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    strategy_id: str = Field(min_length=1, max_length=80)
    request: dict[str, Any]


# Who may start a kind: any user through POST /jobs, only admins, or only the route of the record it runs for.
ANY_USER, ADMIN, RECORD_ROUTE = "user", "admin", "record"


@dataclass(frozen=True)
class TaskType:
    """A kind of job, declared once: services start every kind the same way from this entry."""

    name: str
    tier: SlaTier
    description: str
    payload: type[BaseModel]  # checked before a job exists
    workflow: str  # the workflow type that runs it
    id_prefix: str  # its workflow id is "<prefix>-<id>"
    # The payload field naming the record the workflow is about (its id in the workflow id); None: the job's id.
    id_field: str | None = None
    started_by: str = ANY_USER
    created_by: str | None = None  # for RECORD_ROUTE kinds: the route that creates them
    # Payload fields carried as search attributes besides kind and user (payload field → attribute name).
    search_attributes: tuple[tuple[str, str], ...] = ()

    def workflow_id(self, job_id: str, payload: dict[str, Any]) -> str:
        return f"{self.id_prefix}-{payload[self.id_field] if self.id_field else job_id}"


# Only task types that a worker can actually run are registered; each later capability adds its own.
REGISTRY: dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType(
            "market_data_sync",
            BATCH,
            "Fetch missing bars for symbols into the bar store.",
            payload=SyncRequest,
            workflow="JobWorkflowV2",
            id_prefix="job",
        ),
        TaskType(
            "market_indicators_calculate",
            BATCH,
            "Compute technical indicators over stored bars.",
            payload=IndicatorsRequest,
            workflow="JobWorkflowV2",
            id_prefix="job",
        ),
        TaskType(
            "backtest_run",
            INTERACTIVE,
            "Backtest a strategy over stored bars, syncing what is missing.",
            payload=BacktestRunPayload,
            workflow="BacktestWorkflowV3",
            id_prefix="backtest",
            id_field="backtestId",
            started_by=RECORD_ROUTE,
            created_by="POST /backtests/tasks",
            search_attributes=(("strategyId", "QuantpolyStrategyId"),),
        ),
        TaskType(
            "strategy_optimization_suggest",
            BATCH,
            "Sweep a strategy's parameters with optuna: every trial a backtest, validated out of sample.",
            payload=ResearchPayload,
            workflow="ResearchWorkflow",
            id_prefix="research",
            started_by=RECORD_ROUTE,
            created_by="POST /strategies/{id}/research/optimization-task",
            search_attributes=(("strategyId", "QuantpolyStrategyId"),),
        ),
        TaskType(
            "strategy_performance_analyze",
            INTERACTIVE,
            "Backtest a strategy over its last days against buy-and-hold and its own earlier results.",
            payload=ResearchPayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=RECORD_ROUTE,
            created_by="POST /strategies/{id}/research/performance-task",
            search_attributes=(("strategyId", "QuantpolyStrategyId"),),
        ),
        TaskType(
            "portfolio_evaluate",
            BATCH,
            "Evaluate a portfolio from its members' latest completed backtests.",
            payload=EvaluatePayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=RECORD_ROUTE,
            created_by="POST /portfolios/{id}/evaluation-task",
        ),
        TaskType(
            "portfolio_rebalance",
            BATCH,
            "Propose (and optionally apply) target weights for a portfolio within its constraints.",
            payload=RebalancePayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=RECORD_ROUTE,
            created_by="POST /portfolios/{id}/rebalance-task",
        ),
        TaskType(
            "strategy_health_analyze",
            INTERACTIVE,
            "A strategy health report: the parameters perturbed by ±10/20/50%, in and out of sample.",
            payload=HealthPayload,
            workflow="ResearchWorkflow",
            id_prefix="health",
            started_by=RECORD_ROUTE,
            created_by="POST /strategy-health",
            search_attributes=(("strategyId", "QuantpolyStrategyId"),),
        ),
        TaskType(
            "trading_refresh_prices",
            MAINTENANCE,
            "Mark paper-trading positions to market: given prices, or the latest quotes of every symbol held.",
            payload=ledger.RefreshPricesPayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=ADMIN,
        ),
        TaskType(
            "trading_pending_process",
            MAINTENANCE,
            "Fill pending limit orders whose price the market has reached.",
            payload=ledger.PendingProcessPayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=ADMIN,
        ),
        TaskType(
            "trading_daily_stats_calculate",
            MAINTENANCE,
            "Store each paper-trading account's book at the end of a day.",
            payload=ledger.DailyStatsPayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=ADMIN,
        ),
        TaskType(
            "trading_batch_execute",
            BATCH,
            "Fill a batch of paper trades on any accounts, each in its account's transaction.",
            payload=ledger.BatchExecutePayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=ADMIN,
        ),
        TaskType(
            "trading_risk_monitor",
            MAINTENANCE,
            "Assess the risk of paper-trading accounts and store each assessment.",
            payload=ledger.RiskMonitorPayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=ADMIN,
        ),
        TaskType(
            "trading_account_cleanup",
            MAINTENANCE,
            "Delete inactive paper-trading accounts without activity for a number of days, with their ledger.",
            payload=ledger.AccountCleanupPayload,
            workflow="JobWorkflowV2",
            id_prefix="job",
            started_by=ADMIN,
        ),
    )
}


def task_type(name: str) -> TaskType | None:
    return REGISTRY.get(name)
