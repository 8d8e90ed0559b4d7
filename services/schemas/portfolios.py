"""Portfolios: a user's strategies at weights, the read model, evaluation and rebalancing, and what is asked."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field

from domain import portfolios as rules
from services.schemas.base import Schema
from services.schemas.jobs import JobError, JobOut

PortfolioStatus = Literal["draft", "active", "archived"]
RebalanceMethod = rules.RebalanceMethod
# Weights and constraints are any finite number here: the service names what is wrong with them (422
# PORTFOLIO_INVALID_WEIGHTS / PORTFOLIO_INVALID_CONSTRAINTS), not the schema.


class ConstraintsIn(Schema):
    max_total_weight: float = 1.0
    max_single_weight: float = 1.0


class ConstraintsPatch(Schema):
    """Constraints to change; an omitted one keeps its value."""

    max_total_weight: float | None = None
    max_single_weight: float | None = None


class ConstraintsOut(Schema):
    max_total_weight: float
    max_single_weight: float


class MemberIn(Schema):
    strategy_id: str = Field(min_length=1, max_length=80)
    weight: float


class PortfolioIn(Schema):
    name: str = Field(min_length=1, max_length=120)
    constraints: ConstraintsIn | None = None
    members: list[MemberIn] = Field(default_factory=list, max_length=rules.MAX_MEMBERS)


class PortfolioUpdateIn(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    # draft ↔ active, either → archived (final): 409 PORTFOLIO_INVALID_TRANSITION otherwise.
    status: PortfolioStatus | None = None
    constraints: ConstraintsPatch | None = None


class MemberOut(Schema):
    strategy_id: str
    weight: float
    created_at: datetime
    updated_at: datetime


class PortfolioOut(Schema):
    id: str
    user_id: str
    name: str
    status: PortfolioStatus
    version: int  # incremented by every change of the portfolio or its members
    constraints: ConstraintsOut
    members: list[MemberOut]
    total_weight: float
    created_at: datetime
    updated_at: datetime


class PortfolioDeletedOut(Schema):
    portfolio_id: str


# --- read model and evaluation ---------------------------------------------------------------------------


class MemberMetricsOut(Schema):
    """A member with a completed backtest: its weight and the headline metrics of that backtest."""

    strategy_id: str
    weight: float
    backtest_id: str
    return_rate: float | None
    cagr: float | None
    annual_volatility: float | None
    sharpe_ratio: float | None
    sortino_ratio: float | None
    max_drawdown: float | None
    win_rate: float | None
    trade_count: int | None


class PerformanceSummaryOut(Schema):
    # Σ wᵢ·returnRateᵢ / Σ wᵢ and Σ wᵢ·|maxDrawdownᵢ| / Σ wᵢ over the members with a completed backtest.
    weighted_average_pnl: float | None
    weighted_max_drawdown: float | None
    total_weight: float
    evaluated_weight: float
    evaluated_count: int


class CombinedPoint(Schema):
    date: str
    equity: float


class CombinedOut(Schema):
    """The portfolio at constant weights over the dates its members' backtests share; equity starts at 1."""

    shared_dates: int
    start_date: str
    end_date: str
    cash_weight: float  # 1 − the weight of the members with a completed backtest
    periods_per_year: int
    equity_curve: list[CombinedPoint]
    metrics: dict[str, float | None]


class CorrelationPairOut(Schema):
    strategy_ids: list[str]
    correlation: float | None  # None when a member is flat over the shared dates


class CorrelationSummaryOut(Schema):
    # The mean pairwise Pearson correlation of the daily returns over the shared dates.
    average_correlation: float | None
    # The weighted standard deviation of the members' returnRate around their weighted mean.
    dispersion: float | None
    pairs: list[CorrelationPairOut]
    shared_dates: int


class ReadModelOut(Schema):
    portfolio_id: str
    name: str
    status: PortfolioStatus
    version: int
    constraints: ConstraintsOut
    total_weight: float
    members: list[MemberMetricsOut]
    missing: list[str]  # members without a completed backtest: left out of every figure
    performance_summary: PerformanceSummaryOut
    combined: CombinedOut | None
    correlation_summary: CorrelationSummaryOut


class RiskSummaryOut(Schema):
    risk_score: float | None  # the weighted max drawdown
    status: Literal["ok", "warn", "unknown"]  # warn above 0.3; unknown without a completed backtest


class EvaluationOut(ReadModelOut):
    risk_summary: RiskSummaryOut


# --- rebalancing -----------------------------------------------------------------------------------------


class AdjustmentOut(Schema):
    strategy_id: str
    from_weight: float
    to_weight: float
    delta: float


class SkippedOut(Schema):
    strategy_id: str
    reason: str  # no_completed_backtest | no_volatility: the member keeps its weight


class RebalanceRiskOut(Schema):
    concentration: float | None  # Herfindahl index of the target weights' shares
    total_target_weight: float
    max_allowed_weight: float  # maxTotalWeight
    max_single_weight: float


class RebalanceOut(Schema):
    portfolio_id: str
    version: int  # the version the proposal was computed from
    method: RebalanceMethod
    target_weights: dict[str, float]
    adjustments: list[AdjustmentOut]
    skipped: list[SkippedOut]
    risk_summary: RebalanceRiskOut
    applied: bool
    applied_version: int | None  # the version the applied weights made


# --- tasks -----------------------------------------------------------------------------------------------


class EvaluationTaskIn(Schema):
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class RebalanceTaskIn(Schema):
    # Explicit weights for some members (the others keep theirs); with them the method is "target".
    target_weights: dict[str, float] | None = Field(default=None, max_length=rules.MAX_MEMBERS)
    method: RebalanceMethod | None = None  # default: "target" with targetWeights, else "score"
    apply: bool = False  # also write the target weights (one new version)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class _TaskOut(Schema):
    """The reference's task shape ``{taskId, taskType, status, result, error}``, plus the whole job."""

    task_id: str
    task_type: str
    status: str
    portfolio_id: str
    error: JobError | None
    job: JobOut

    @classmethod
    def of(cls, job: Any) -> Self:
        """The task of a job whose result, once it has one, is the ``result`` field's model."""
        run = JobOut.of(job)
        return cls(
            task_id=run.task_id,
            task_type=run.task_type,
            status=run.status,
            portfolio_id=job.payload["portfolioId"],
            result=job.result or None,  # validated as the subclass's result model
            error=run.error,
            job=run,
        )


class EvaluationTaskOut(_TaskOut):
    result: EvaluationOut | None


class RebalanceTaskOut(_TaskOut):
    result: RebalanceOut | None
