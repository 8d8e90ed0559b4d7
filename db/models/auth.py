from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, IdMixin, UTCDateTime, utcnow


class AuthSession(IdMixin, Base):
    """A login session; only the SHA-256 digest of its bearer token is kept."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))


class AuthToken(IdMixin, Base):
    """A single-use mailed token (password reset or email verification).

    The row is written when the token is requested; the worker's delivery activity draws the secret,
    stores only its digest and mails it, so the plaintext never passes through Temporal or the API.

    A row written for a request by address (reset, resend) starts without ``user_id``: the request path
    does the same work whether or not the address has an account, and the worker decides. Until then
    the row keeps who asked (for the audit row written at that point); an address without a mailable
    account is then erased from the row and the row is ``refused``.
    """

    __tablename__ = "auth_tokens"

    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(320))
    token_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))

    @property
    def state(self) -> str:
        for name in ("refused", "consumed", "superseded", "expired"):
            if getattr(self, f"{name}_at") is not None:
                return name
        return "issued" if self.delivered_at else "pending"

    @classmethod
    def live_of(cls, user_id: str, purpose: str) -> tuple[ColumnElement[bool], ...]:
        """Conditions matching the user's tokens of ``purpose`` that could still be delivered or used."""
        return (
            cls.user_id == user_id,
            cls.purpose == purpose,
            cls.consumed_at.is_(None),
            cls.superseded_at.is_(None),
            cls.expired_at.is_(None),
            cls.refused_at.is_(None),
        )


class RateLimitHit(IdMixin, Base):
    """One counted event of a sliding-window limit; keys are digests, never raw emails or addresses."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_scope_key_at", "scope", "key", "at"),)

    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuthAuditEvent(IdMixin, Base):
    __tablename__ = "auth_audit_events"
    __table_args__ = (Index("ix_auth_audit_events_created_at", "created_at"),)

    event: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    email_digest: Mapped[str | None] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(String(36))
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
