from __future__ import annotations

from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, TimestampMixin
from db.models.backtests import Backtest
from db.models.jobs import Job


class Portfolio(TimestampMixin, Base):
    """A user's portfolio of strategies: weights under two constraints, a status and a version that every
    change increments (under the row's lock)."""

    __tablename__ = "portfolios"
    __table_args__ = (Index("ix_portfolios_user_id_created_at", "user_id", "created_at"),)

    # "{userId}-portfolio-{uuid}", as in the reference.
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Fractions of capital: the members' weights sum to at most the first, each is at most the second.
    max_total_weight: Mapped[float] = mapped_column(Float, default=1.0)
    max_single_weight: Mapped[float] = mapped_column(Float, default=1.0)


class PortfolioMember(TimestampMixin, Base):
    """One strategy of a portfolio at its weight. A strategy deleted by its owner leaves its portfolios with it
    (the foreign key cascades)."""

    __tablename__ = "portfolio_members"

    portfolio_id: Mapped[str] = mapped_column(ForeignKey("portfolios.id", ondelete="CASCADE"), primary_key=True)
    strategy_id: Mapped[str] = mapped_column(
        ForeignKey("strategies.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    weight: Mapped[float] = mapped_column(Float)


# --- what the API's read model and the worker's portfolio tasks both read --------------------------------


async def members_of(session: AsyncSession, portfolio_id: str) -> list[PortfolioMember]:
    """The portfolio's members in the order they joined."""
    rows = await session.scalars(
        select(PortfolioMember)
        .where(PortfolioMember.portfolio_id == portfolio_id)
        .order_by(PortfolioMember.created_at, PortfolioMember.strategy_id)
    )
    return list(rows)


async def latest_results(
    session: AsyncSession, user_id: str, strategy_ids: list[str]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Strategy id → (backtest id, result body) of each strategy's latest completed backtest that our engine
    ran (its job succeeded and it stored an equity curve; a run its client reported has metrics only).
    Latest is by the end of the run, so a retried backtest counts when it finished."""
    if not strategy_ids:
        return {}
    candidates = await session.execute(
        select(Backtest.strategy_id, Backtest.id)
        .join(Job, Job.id == Backtest.job_id)
        .where(
            Backtest.user_id == user_id,
            Backtest.strategy_id.in_(strategy_ids),
            Job.status == "succeeded",
        )
        .order_by(Backtest.strategy_id, Job.finished_at.desc(), Backtest.created_at.desc(), Backtest.id)
    )
    by_strategy: dict[str, list[str]] = {}
    for strategy_id, backtest_id in candidates:
        by_strategy.setdefault(strategy_id, []).append(backtest_id)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for strategy_id, backtest_ids in by_strategy.items():
        for backtest_id in backtest_ids:  # the newest first; older ones only when a newer one has no curve
            body = await session.scalar(select(Backtest.result).where(Backtest.id == backtest_id))
            if isinstance(body, dict) and body.get("equityCurve") and body.get("dailyReturns") is not None:
                found[strategy_id] = (backtest_id, body)
                break
    return found
