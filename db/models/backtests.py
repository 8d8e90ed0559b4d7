from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
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
