"""The platform a command works on: the same settings, database and Temporal client the API uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.errors import ServiceUnavailable
from core.settings import get_settings
from core.temporal import connect_temporal
from db.engine import Database
from services.platform import Platform


@asynccontextmanager
async def platform(*, need_temporal: bool = True) -> AsyncIterator[Platform]:
    settings = get_settings()
    db = Database.from_settings(settings)
    try:
        try:
            client = await connect_temporal(settings, lazy=not need_temporal)
        except Exception:
            raise ServiceUnavailable(
                f"Temporal is not reachable at {settings.temporal_address}", code="TEMPORAL_UNAVAILABLE"
            ) from None
        yield Platform(settings=settings, db=db, temporal=client)
    finally:
        await db.dispose()
