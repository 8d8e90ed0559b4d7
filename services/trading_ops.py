"""The paper ledger's operations (admin only, reference §2.6 ops): marking positions to given prices now, the
global list of pending orders, and the ledger's jobs (price refresh, pending-order processing, daily
statistics) with their status; and, for every user, the stored daily statistics of their accounts."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from core.errors import Conflict, NotFound
from db.base import utcnow
from db.models import Job, TradingConfirmation, TradingDailyStat, TradingOrder, User
from db.models.trading import mark_positions
from domain import ledger
from services import jobs
from services.platform import Platform
from services.schemas.trading import DailyStatOut, OrderOut, RefreshedOut
from services.trading import accounts_of, checked, owned_account
from services.users import require_admin

REFRESH, PENDING, DAILY_STATS = "trading_refresh_prices", "trading_pending_process", "trading_daily_stats_calculate"
BATCH, RISK_MONITOR, CLEANUP = "trading_batch_execute", "trading_risk_monitor", "trading_account_cleanup"
OPS_TASK_TYPES = (REFRESH, PENDING, DAILY_STATS, BATCH, RISK_MONITOR, CLEANUP)
# How long a confirmation token of a destructive request stays valid.
CONFIRMATION_SECONDS = 300


async def refresh_prices(
    platform: Platform, admin: User, price_updates: dict[str, Decimal], account_id: str | None
) -> RefreshedOut:
    """Open positions in these symbols marked at these prices now (one account, or every account)."""
    require_admin(admin)
    prices = {
        symbol: checked(ledger.positive, price, f"the price of {symbol}") for symbol, price in price_updates.items()
    }
    marked = await mark_positions(platform.db, prices, account_id)
    return RefreshedOut(updated_positions=marked, prices=prices)


async def pending_orders(platform: Platform, admin: User, limit: int) -> list[OrderOut]:
    """Every account's pending orders, oldest first (the order the processing job takes them in)."""
    require_admin(admin)
    async with platform.db.reading() as session:
        rows = await session.scalars(
            select(TradingOrder)
            .where(TradingOrder.status == ledger.PENDING)
            .order_by(TradingOrder.created_at, TradingOrder.id)
            .limit(limit)
        )
        return [OrderOut.model_validate(row) for row in rows]


async def submit(
    platform: Platform, admin: User, task_type: str, payload: dict[str, Any], idempotency_key: str | None
) -> tuple[Job, bool]:
    """One of the ledger's jobs (True), or the one this key already made for the same request (False)."""
    require_admin(admin)
    return await jobs.submit(platform, admin, task_type, payload, idempotency_key or f"{task_type}:{uuid.uuid4()}")


async def task(platform: Platform, admin: User, task_id: str) -> Job:
    """A job of the ledger's kinds, whoever started it (an admin, or a system schedule)."""
    require_admin(admin)
    async with platform.db.reading() as session:
        job = await session.get(Job, task_id)
    if job is None or job.task_type not in OPS_TASK_TYPES:
        raise NotFound("no such trading task", code="TASK_NOT_FOUND")
    return job


async def daily_stats(platform: Platform, user: User, day: date | None, account_id: str | None) -> list[DailyStatOut]:
    """The stored statistics of the day (today, UTC, by default): of one account, or of each of the user's."""
    day = day or datetime.now(UTC).date()
    async with platform.db.reading() as session:
        if account_id is not None:
            await owned_account(session, user, account_id)
            accounts = [account_id]
        else:
            accounts = [account.id for account in await accounts_of(session, user)]
        rows = await session.scalars(
            select(TradingDailyStat)
            .where(TradingDailyStat.account_id.in_(accounts), TradingDailyStat.day == day)
            .order_by(TradingDailyStat.account_id)
        )
        return [DailyStatOut.model_validate(row) for row in rows]


async def cleanup(
    platform: Platform,
    admin: User,
    payload: dict[str, Any],
    confirmation_token: str | None,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """A ``trading_account_cleanup`` job, once confirmed. Without a token: 409 ``CONFIRMATION_REQUIRED`` whose
    details carry a fresh single-use token for this admin and this request (valid CONFIRMATION_SECONDS);
    repeated with it, the job starts and the token is spent. A wrong, spent or expired token, or one for
    another request, is 409 ``CONFIRMATION_INVALID``. A repeated idempotency key answers its job again."""
    require_admin(admin)
    key = idempotency_key or f"{CLEANUP}:{uuid.uuid4()}"
    if idempotency_key is not None and await jobs.job_by_key(platform, admin, key) is not None:
        return await jobs.submit(platform, admin, CLEANUP, payload, key)
    target = _digest(json.dumps(payload, sort_keys=True))
    if confirmation_token is None:
        token = secrets.token_urlsafe(32)
        expires = utcnow() + timedelta(seconds=CONFIRMATION_SECONDS)
        async with platform.db.session() as session:
            session.add(
                TradingConfirmation(
                    user_id=admin.id, action=CLEANUP, target=target, token_digest=_digest(token), expires_at=expires
                )
            )
        raise Conflict(
            "deleting accounts needs confirmation: send the request again with this confirmationToken",
            code="CONFIRMATION_REQUIRED",
            details={"confirmationToken": token, "expiresAt": expires.isoformat()},
        )
    async with platform.db.session() as session:
        spent = await session.execute(
            update(TradingConfirmation)
            .where(
                TradingConfirmation.token_digest == _digest(confirmation_token),
                TradingConfirmation.user_id == admin.id,
                TradingConfirmation.action == CLEANUP,
                TradingConfirmation.target == target,
                TradingConfirmation.used_at.is_(None),
                TradingConfirmation.expires_at > utcnow(),
            )
            .values(used_at=utcnow())
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("the confirmation token is not valid for this request", code="CONFIRMATION_INVALID")
    return await jobs.submit(platform, admin, CLEANUP, payload, key)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
