"""Login sessions: opaque bearer tokens whose SHA-256 digest is the only stored form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Unauthorized
from core.security import digest, new_token
from db.base import utcnow
from db.models import AuthSession, User
from services.platform import ClientInfo, Platform


@dataclass(frozen=True)
class IssuedSession:
    token: str
    session: AuthSession
    user: User


async def open_session(session: AsyncSession, platform: Platform, user: User, client: ClientInfo) -> IssuedSession:
    token = new_token()
    row = AuthSession(
        user_id=user.id,
        token_digest=digest(token),
        expires_at=utcnow() + timedelta(seconds=platform.settings.session_ttl_seconds),
        client_address=client.address,
        user_agent=(client.user_agent or "")[:255] or None,
    )
    session.add(row)
    await session.flush()
    return IssuedSession(token=token, session=row, user=user)


# Every authenticated request runs it: built once, not per request.
_LIVE_SESSION = (
    select(AuthSession, User)
    .join(User, User.id == AuthSession.user_id)
    .where(
        AuthSession.token_digest == bindparam("token_digest"),
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > bindparam("now"),
    )
)


async def authenticate(platform: Platform, token: str | None) -> tuple[User, AuthSession]:
    if not token:
        raise Unauthorized("authentication required", code="MISSING_TOKEN")
    async with platform.db.reading() as session:
        row = await session.execute(_LIVE_SESSION, {"token_digest": digest(token), "now": utcnow()})
        found = row.first()
    if found is None:
        raise Unauthorized("invalid or expired session", code="INVALID_TOKEN")
    auth_session, user = found
    if not user.is_active:
        raise Unauthorized("invalid or expired session", code="INVALID_TOKEN")
    return user, auth_session


async def revoke(session: AsyncSession, user_id: str, *, only: str | None = None, keep: str | None = None) -> int:
    """Revoke the user's live sessions: all, just ``only``, or all but ``keep``. Returns how many."""
    conditions = [AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)]
    if only is not None:
        conditions.append(AuthSession.id == only)
    if keep is not None:
        conditions.append(AuthSession.id != keep)
    result = await session.execute(update(AuthSession).where(*conditions).values(revoked_at=utcnow()))
    return cast(CursorResult[Any], result).rowcount or 0  # an UPDATE answers a CursorResult
