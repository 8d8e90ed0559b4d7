"""Sliding-window limits kept in the database, so that a restart of any process does not reset them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.base import utcnow
from db.engine import serialize
from db.models import RateLimitHit


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` events per ``window_seconds`` for one key of one scope."""

    scope: str
    key: str
    limit: int
    window_seconds: int


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
    if oldest_blocking is None:  # the hits counted above have since been pruned
        return None
    return max(1, math.ceil((oldest_blocking + timedelta(seconds=window_seconds) - now).total_seconds()))


async def hit(session: AsyncSession, scope: str, key: str, window_seconds: int) -> None:
    session.add(RateLimitHit(scope=scope, key=key))
    # Keep the table small: hits older than this window can never count again.
    horizon = utcnow() - timedelta(seconds=window_seconds)
    await session.execute(delete(RateLimitHit).where(RateLimitHit.scope == scope, RateLimitHit.at <= horizon))


async def clear(session: AsyncSession, scope: str, key: str) -> None:
    await session.execute(delete(RateLimitHit).where(RateLimitHit.scope == scope, RateLimitHit.key == key))


async def clear_prefix(session: AsyncSession, scope: str, prefix: str) -> None:
    """Forget every key of ``scope`` that starts with ``prefix`` (keys built as owner digest + detail)."""
    await session.execute(
        delete(RateLimitHit).where(RateLimitHit.scope == scope, RateLimitHit.key.startswith(prefix, autoescape=True))
    )


async def consume(session: AsyncSession, scope: str, key: str, limit: int, window_seconds: int) -> int | None:
    """Count one event against the limit, serialized per key so parallel requests cannot slip past it.

    Returns None when the event is allowed (and counted), else the seconds until it would be.
    """
    return await consume_all(session, [Limit(scope, key, limit, window_seconds)])


async def consume_all(session: AsyncSession, limits: Sequence[Limit]) -> int | None:
    """Count one event against every limit if all allow it; else count nothing and return the longest wait.

    Callers list the limits in one fixed order (narrowest first), so the per-key locks cannot deadlock.
    """
    for limit in limits:
        await serialize(session, f"{limit.scope}:{limit.key}")
    waits = [
        wait
        for limit in limits
        if (wait := await retry_after(session, limit.scope, limit.key, limit.limit, limit.window_seconds)) is not None
    ]
    if waits:
        return max(waits)
    for limit in limits:
        await hit(session, limit.scope, limit.key, limit.window_seconds)
    return None
