"""Reachability of what the platform stands on."""

from __future__ import annotations

import asyncio
import logging

from services.platform import Platform

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 3.0


async def _probe(name: str, check) -> tuple[str, str]:
    try:
        await asyncio.wait_for(check(), TIMEOUT_SECONDS)
        return name, "ok"
    except Exception as error:  # any failure means "down"; the reason goes to the log only
        log.warning("health check %s failed: %s", name, type(error).__name__)
        return name, "down"


async def check(platform: Platform) -> dict[str, str]:
    results = await asyncio.gather(
        _probe("database", platform.db.ping),
        _probe("temporal", platform.temporal.service_client.check_health),
    )
    return dict(results)
