from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, TimestampMixin


class HealthReport(TimestampMixin, Base):
    """A strategy health report: what it was asked for and its perturbations. Its status, result and error
    are its job's (``strategy_health_analyze``, a research sweep whose ``ResearchSweep`` row the workflow
    reads), whose id it shares; the report itself is computed from the job's result when it is read."""

    __tablename__ = "health_reports"
    __table_args__ = (Index("ix_health_reports_user_id_created_at", "user_id", "created_at"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The strategy it was asked for, if any; a deleted strategy leaves its reports (they name their template
    # and parameters).
    strategy_id: Mapped[str | None] = mapped_column(ForeignKey("strategies.id", ondelete="SET NULL"), index=True)
    template: Mapped[str] = mapped_column(String(32))
    # The validated parameters, the resolved backtest config and the in- and out-of-sample periods.
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Every perturbation: parameter, label, value and, when it was not run, why (a warning of the report).
    perturbations: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
