"""The auth audit trail: one row per security-relevant event, never a secret in it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.security import email_digest
from db.models import AuthAuditEvent
from services.platform import ClientInfo


async def record(
    session: AsyncSession,
    event: str,
    outcome: str,
    client: ClientInfo,
    *,
    user_id: str | None = None,
    email: str | None = None,
    actor_id: str | None = None,
) -> None:
    session.add(
        AuthAuditEvent(
            event=event,
            outcome=outcome,
            user_id=user_id,
            email_digest=email_digest(email) if email else None,
            actor_id=actor_id,
            client_address=client.address,
            user_agent=(client.user_agent or "")[:255] or None,
            request_id=client.request_id,
        )
    )


@dataclass(frozen=True)
class AuditFilter:
    event: str | None = None
    outcome: str | None = None
    user_id: str | None = None
    email: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _as_utc(moment: datetime) -> datetime:
    """Times without a zone are taken as UTC, the zone every stored time is in."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def list_events(
    session: AsyncSession, filters: AuditFilter, page: int, page_size: int
) -> tuple[list[AuthAuditEvent], int]:
    conditions = []
    if filters.event:
        conditions.append(AuthAuditEvent.event == filters.event)
    if filters.outcome:
        conditions.append(AuthAuditEvent.outcome == filters.outcome)
    if filters.user_id:
        conditions.append(AuthAuditEvent.user_id == filters.user_id)
    if filters.email:
        conditions.append(AuthAuditEvent.email_digest == email_digest(filters.email))
    if filters.since:
        conditions.append(AuthAuditEvent.created_at >= _as_utc(filters.since))
    if filters.until:
        conditions.append(AuthAuditEvent.created_at < _as_utc(filters.until))
    total = await session.scalar(select(func.count()).select_from(AuthAuditEvent).where(*conditions))
    rows = await session.scalars(
        select(AuthAuditEvent)
        .where(*conditions)
        .order_by(AuthAuditEvent.created_at.desc(), AuthAuditEvent.id)
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return list(rows), int(total or 0)


async def search(platform, filters: AuditFilter, page: int, page_size: int) -> tuple[list[AuthAuditEvent], int]:
    async with platform.db.session() as session:
        return await list_events(session, filters, page, page_size)
