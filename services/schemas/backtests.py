"""Backtests: a task, its result, statistics and comparisons, and what is asked of them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from services.schemas.base import Schema
from services.schemas.jobs import JobError
from services.schemas.strategies import ParameterValues

MAX_COMPARE = 20
BacktestStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
RunBy = Literal["engine", "client"]
# Metric name → value; an undefined metric (a ratio over no trades) is null.
Metrics = dict[str, int | float | None]
# The config as it was sent and resolved (dates, symbol, capital, inline prices): echoed, never interpreted here.
ConfigEcho = dict[str, Any]


class BacktestOut(Schema):
    """A backtest task as the reference shows it; ``taskId`` is its id, ``jobId`` its current run's job."""

    id: str
    task_id: str
    user_id: str
    strategy_id: str
    job_id: str
    template: str
    parameters: ParameterValues
    config: ConfigEcho
    idempotency_key: str | None
    status: BacktestStatus
    progress: float
    metrics: Metrics
    # "engine" when our engine runs it; "client" when its client runs it and reports its metrics.
    run_by: RunBy
    display_name: str | None
    error: JobError | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, backtest: Any, job: Any, status: str) -> BacktestOut:
        return cls(
            id=backtest.id,
            task_id=backtest.id,
            user_id=backtest.user_id,
            strategy_id=backtest.strategy_id,
            job_id=job.id,
            template=backtest.template,
            parameters=backtest.parameters,
            config=backtest.config,
            idempotency_key=backtest.idempotency_key,
            status=status,
            progress=job.progress,
            metrics=backtest.metrics or {},
            run_by="client" if job.executor_name == "client" else "engine",
            display_name=backtest.display_name,
            error=JobError.of(job),
            created_at=backtest.created_at,
            updated_at=max(backtest.updated_at, job.updated_at),
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class BacktestRunOut(Schema):
    """What the run's job produced: the backtest and its headline metrics."""

    backtest_id: str
    metrics: Metrics


class BacktestTaskOut(Schema):
    """``POST /backtests/tasks``: the job that runs the backtest, and the backtest."""

    task_id: str
    task_type: str
    status: str
    result: BacktestRunOut | None
    error: JobError | None
    backtest_task: BacktestOut


class BacktestStatisticsOut(Schema):
    pending_count: int
    running_count: int
    completed_count: int
    failed_count: int
    cancelled_count: int
    total_count: int
    # Averages over the completed backtests that have the metric; 0 when none has (the front end formats
    # them as numbers, and the counts tell an empty average from a zero one).
    average_return_rate: float
    average_max_drawdown: float
    average_win_rate: float
    average_sharpe_ratio: float


class StrategyBacktestStatisticsOut(BacktestStatisticsOut):
    strategy_id: str


class ComparedTaskOut(Schema):
    task_id: str
    strategy_id: str
    display_name: str | None
    template: str
    status: BacktestStatus
    metrics: Metrics | None


class ComparisonSummaryOut(Schema):
    compared_count: int
    completed_count: int
    best_return_rate: float | None
    worst_return_rate: float | None
    best_task_id: str | None
    worst_task_id: str | None


class ComparisonOut(Schema):
    tasks: list[ComparedTaskOut]
    # One flat metric object per requested id, in the request's order: the front end's comparison table.
    metrics: list[Metrics]
    summary: ComparisonSummaryOut


class EquityPoint(Schema):
    index: int
    timestamp: str
    equity: float


class TradeOut(Schema):
    index: int
    timestamp: str
    side: Literal["BUY", "SELL"]
    price: float
    quantity: float
    reason: str
    # Kept in the reference's spelling: the front end's type names it so.
    triggered_indicator: str = Field(alias="triggered_indicator")
    pnl: float | None
    metadata: dict[str, int]
    symbol: str


class EngineResultOut(Schema):
    """The result of a run of our engine."""

    run_by: Literal["engine"]
    task_id: str
    strategy_id: str
    template: str
    parameters: ParameterValues
    symbol: str
    timeframe: str
    start_date: str
    end_date: str
    config: ConfigEcho
    equity_curve: list[EquityPoint]
    daily_returns: list[float | None]
    trades: list[TradeOut]
    metrics: Metrics
    display_name: str | None
    status: Literal["completed"]


class ClientResultOut(Schema):
    """What a client reported of its own run: metrics only."""

    run_by: Literal["client"]
    task_id: str
    strategy_id: str
    metrics: Metrics
    display_name: str | None
    status: Literal["completed"]


BacktestResultOut = Annotated[EngineResultOut | ClientResultOut, Field(discriminator="run_by")]


class BacktestDeletedOut(Schema):
    task_id: str


class BacktestIn(Schema):
    strategy_id: str = Field(min_length=1, max_length=80)
    config: ConfigEcho = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    display_name: str | None = Field(default=None, min_length=1, max_length=120)


class StrategyBacktestIn(Schema):
    config: ConfigEcho = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    display_name: str | None = Field(default=None, min_length=1, max_length=120)


class CompareIn(Schema):
    task_ids: list[str] = Field(min_length=1, max_length=MAX_COMPARE)


class NameIn(Schema):
    display_name: str = Field(min_length=1, max_length=120)


class TransitionIn(Schema):
    to_status: BacktestStatus
    # What a client reports of its own run when it completes; an engine-run backtest's come from its run.
    metrics: dict[Annotated[str, Field(min_length=1, max_length=64)], float] | None = Field(default=None, max_length=64)
