"""Research: sweeps of a strategy's parameters and performance analyses; their results and trials."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from services.schemas.base import Schema
from services.schemas.jobs import JobError

# Metric name → value; an undefined metric (a ratio over no trades) is null.
Metrics = dict[str, int | float | None]
ParameterSet = dict[str, int | float]


class PerformanceIn(Schema):
    analysis_period_days: int = Field(default=30, ge=1, le=365)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class SweepProgressOut(Schema):
    """A sweep while it runs: trials recorded and planned, and the best score so far."""

    trials_done: int
    trials_planned: int
    best_score: float | None
    best_trial_id: str | None


class TrialOut(Schema):
    """One trial: a backtest over its window's train period (``metrics``, whose objective metric is its
    ``score``) and, when the window has one, over the test period (``testMetrics``)."""

    trial_id: str
    number: int
    window: int
    method: str
    parameters: ParameterSet
    metric: str
    score: float | None
    feasible: bool
    violations: list[str]
    state: Literal["complete", "failed"]
    metrics: Metrics | None
    test_metrics: dict[str, Any] | None


class BudgetUsageOut(Schema):
    used_trials: int
    remaining_trials: int
    used_duration_ms: int
    max_trials: int
    max_duration_seconds: float
    total_candidates: int


class ConvergenceOut(Schema):
    status: Literal["converged", "budget_exhausted", "cancelled"]
    early_stop_reason: str
    best_score: float | None
    best_so_far: list[float | None]  # after each trial of the last window


class SuggestionOut(Schema):
    code: str
    message: str
    metric: str
    direction: Literal["maximize", "minimize"]
    parameters: ParameterSet | None = None


class ObjectiveOut(Schema):
    metric: str
    direction: Literal["maximize", "minimize"]


class WindowOut(Schema):
    index: int
    train_start: str
    train_end: str
    test_start: str | None
    test_end: str | None
    best_trial_id: str | None
    best_parameters: ParameterSet | None
    in_sample: Metrics | None
    out_of_sample: Metrics | None


class ValidationOut(Schema):
    mode: Literal["holdout", "walk_forward", "none"]
    windows: list[WindowOut]
    out_of_sample: Metrics | None  # holdout: the best over the test period; walk-forward: the stitched windows
    in_sample: Metrics | None


class DeflatedSharpeOut(Schema):
    deflated_sharpe_ratio: float
    sharpe_ratio: float
    expected_maximum_sharpe: float
    trials: int
    observations: int
    skewness: float
    kurtosis: float
    per_period: bool


class PboOut(Schema):
    probability: float
    combinations: int
    blocks: int
    trials: int
    median_logit: float
    performance_degradation: float | None
    probability_of_loss: float


class OverfittingOut(Schema):
    deflated_sharpe: DeflatedSharpeOut | None
    probability_of_backtest_overfitting: PboOut | None


class OptimizationResultOut(Schema):
    """The reference's ``v3`` result, with every trial's metrics, the windows' in- and out-of-sample figures,
    parameter importances and overfitting figures. ``trials`` holds at most the 200 best (``trialCount`` says
    how many ran); the trial listing pages through them all."""

    version: Literal["v3"]
    method: str
    objective: ObjectiveOut
    trials: list[TrialOut]
    trial_count: int
    best_candidate: TrialOut | None
    metrics: Metrics | None
    score: float | None
    budget_usage: BudgetUsageOut
    convergence: ConvergenceOut
    validation: ValidationOut
    importances: dict[str, float]
    overfitting: OverfittingOut
    suggestions: list[SuggestionOut]
    metadata: dict[str, Any]


class ResearchResultOut(Schema):
    """A research job as the results listing shows it."""

    task_id: str
    task_type: str
    strategy_id: str
    method: str
    version: Literal["v3"]
    status: str
    progress: SweepProgressOut
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    optimization_result: OptimizationResultOut | None
    error: JobError | None


class ResearchResultsOut(Schema):
    items: list[ResearchResultOut]
    total: int


class ResearchTaskOut(Schema):
    """The answer of a research task's start, as the reference gives it."""

    task_id: str
    task_type: str
    status: str
    result: dict[str, Any] | None
    error: JobError | None
    created_at: datetime
