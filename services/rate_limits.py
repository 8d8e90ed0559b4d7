"""Sliding-window limits kept in the database, so that a restart of any process does not reset them."""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import utcnow
from db.engine import serialize
from db.models import RateLimitHit


async def retry_after(session: AsyncSession, scope: str, key: str, limit: int, window_seconds: int) -> int | None:
    """Seconds until one more hit is allowed, or None if the key is under its limit."""
    now = utcnow()
    window_start = now - timedelta(seconds=window_seconds)
    in_window = (RateLimitHit.scope == scope, RateLimitHit.key == key, RateLimitHit.at > window_start)
    count = await session.scalar(select(func.count()).select_from(RateLimitHit).where(*in_window))
    if not count or count < limit:
        return None
    # The window frees a slot when the oldest hit that still counts against the limit leaves it.
    oldest_blocking = await session.scalar(
        select(RateLimitHit.at).where(*in_window).order_by(RateLimitHit.at.desc()).offset(limit - 1).limit(1)
    )
    return max(1, math.ceil((oldest_blocking + timedelta(seconds=window_seconds) - now).total_seconds()))


async def hit(session: AsyncSession, scope: str, key: str, window_seconds: int) -> None:
    session.add(RateLimitHit(scope=scope, key=key))
    # Keep the table small: hits older than this window can never count again.
    horizon = utcnow() - timedelta(seconds=window_seconds)
    await session.execute(delete(RateLimitHit).where(RateLimitHit.scope == scope, RateLimitHit.at <= horizon))


async def clear(session: AsyncSession, scope: str, key: str) -> None:
    await session.execute(delete(RateLimitHit).where(RateLimitHit.scope == scope, RateLimitHit.key == key))


async def consume(session: AsyncSession, scope: str, key: str, limit: int, window_seconds: int) -> int | None:
    """Count one event against the limit, serialized per key so parallel requests cannot slip past it.

    Returns None when the event is allowed (and counted), else the seconds until it would be.
    """
    await serialize(session, f"{scope}:{key}")
    wait = await retry_after(session, scope, key, limit, window_seconds)
    if wait is None:
        await hit(session, scope, key, window_seconds)
    return wait
