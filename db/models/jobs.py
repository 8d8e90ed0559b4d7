from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, IdMixin, TimestampMixin, UTCDateTime, utcnow


class Job(IdMixin, TimestampMixin, Base):
    """The read model of one long operation; its Temporal workflow owns the status transitions."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_id_idempotency_key"),
        Index("ix_jobs_user_id_status", "user_id", "status"),
    )

    # None for a job of the platform's own, started by a system schedule.
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    task_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    # The schedule that started it: a user's schedule id, or "system:<template>".
    schedule_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    executor_name: Mapped[str | None] = mapped_column(String(32))
    dispatch_id: Mapped[str | None] = mapped_column(String(128))
    run_id: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobLogLine(IdMixin, Base):
    __tablename__ = "job_logs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)


class JobSchedule(IdMixin, TimestampMixin, Base):
    """A user's recurring job: the read model of its Temporal Schedule ``schedule-<id>``, which fires it."""

    __tablename__ = "job_schedules"
    __table_args__ = (Index("ix_job_schedules_user_id_created_at", "user_id", "created_at"),)

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    namespace: Mapped[str] = mapped_column(String(64))  # "user:<id>", as the reference names it
    task_type: Mapped[str] = mapped_column(String(64))
    schedule_type: Mapped[str] = mapped_column(String(16))  # interval | cron
    expression: Mapped[str] = mapped_column(String(128))  # seconds between runs, or the cron expression
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | stopped
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
