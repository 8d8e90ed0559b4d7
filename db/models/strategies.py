from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, TimestampMixin


class Strategy(TimestampMixin, Base):
    """A user's strategy: a template with parameters, and a lifecycle status."""

    __tablename__ = "strategies"
    __table_args__ = (Index("ix_strategies_user_id_created_at", "user_id", "created_at"),)

    # "{userId}-{uuid}", as in the reference, so its front end's links keep working.
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    template: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="draft")
