from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, TimestampMixin


class ResearchSweep(TimestampMixin, Base):
    """A parameter sweep of a strategy: the resolved request and its progress. Its status, final result and
    error are its job's (``strategy_optimization_suggest``), whose id it shares."""

    __tablename__ = "research_sweeps"
    __table_args__ = (Index("ix_research_sweeps_strategy_id_created_at", "strategy_id", "created_at"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # None for a strategy health report's sweep (its HealthReport row names the strategy, if any).
    strategy_id: Mapped[str | None] = mapped_column(ForeignKey("strategies.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(16))
    # The request as resolved: template, space, fixed parameters, objective, constraints, budget, config,
    # validation and its windows; what every activity of the sweep reads.
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    trials_planned: Mapped[int] = mapped_column(Integer)
    trials_done: Mapped[int] = mapped_column(Integer, default=0)
    best_score: Mapped[float | None] = mapped_column(Float)
    best_trial: Mapped[str | None] = mapped_column(String(32))  # its trial id


class ResearchTrial(Base):
    """One trial of a sweep: a backtest over its window's train period with the trial's parameters, and over
    the test period when the window has one. A batch's trials are written in one transaction."""

    __tablename__ = "research_trials"
    __table_args__ = (Index("ix_research_trials_job_id_window_score", "job_id", "window", "score"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # complete, failed
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    point: Mapped[dict[str, Any]] = mapped_column(JSON)  # the searched parameters' values
    score: Mapped[float | None] = mapped_column(Float)
    feasible: Mapped[bool] = mapped_column(Boolean)
    violations: Mapped[list[str]] = mapped_column(JSON)
    constraint_values: Mapped[list[float]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    # Sums and squares of the trial's train returns by block, for the probability of backtest overfitting.
    blocks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    system_attrs: Mapped[dict[str, Any]] = mapped_column(JSON)  # the sampler's state kept on the trial
