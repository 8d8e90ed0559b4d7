from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, IdMixin, TimestampMixin


class Backtest(IdMixin, TimestampMixin, Base):
    """One backtest of a strategy. Its status is its job's (``backtest_run``), so it cannot drift from the
    workflow; the template and parameters are a snapshot taken at submission, so a retry reruns the same."""

    __tablename__ = "backtests"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_backtests_user_id_idempotency_key"),
        Index("ix_backtests_user_id_created_at", "user_id", "created_at"),
        Index("ix_backtests_strategy_id_created_at", "strategy_id", "created_at"),
    )

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    strategy_id: Mapped[str] = mapped_column(ForeignKey("strategies.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    template: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_digest: Mapped[str] = mapped_column(String(64))  # what a repeated idempotency key must match
    display_name: Mapped[str | None] = mapped_column(String(120))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # One point per bar: loaded only by the routes that return it, not with every read of the row.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)


async def latest_symbol_config(session: AsyncSession, strategy_id: str) -> dict[str, Any] | None:
    """The config of the strategy's latest backtest on a symbol's stored bars (not inline prices), as it was
    sent: what research runs on when it is given none. Its periods per year are left to be resolved again."""
    configs = await session.scalars(
        select(Backtest.config)
        .where(Backtest.strategy_id == strategy_id)
        .order_by(Backtest.created_at.desc())
        .limit(20)
    )
    runnable = next((c for c in configs if c.get("symbol") and not c.get("prices")), None)
    return None if runnable is None else {k: v for k, v in runnable.items() if k != "periodsPerYear"}
