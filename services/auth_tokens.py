"""Mailed single-use tokens: the row, its expiry workflow, and atomic consumption."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from core.security import digest
from core.temporal import KIND, USER_ID
from db.base import utcnow
from db.models import AuthToken, User
from services.platform import ClientInfo, Platform
from workflows.auth_token import AuthTokenInput, AuthTokenWorkflow, workflow_id

log = logging.getLogger(__name__)


def lifetime(platform: Platform, purpose: str) -> timedelta:
    s = platform.settings
    seconds = s.reset_token_ttl_seconds if purpose == "password_reset" else s.verification_token_ttl_seconds
    return timedelta(seconds=seconds)


async def create(session: AsyncSession, platform: Platform, user: User, purpose: str) -> AuthToken:
    """A new token row for ``user``; it supersedes every live token of the same purpose."""
    await withdraw_live(session, user.id, purpose)
    token = AuthToken(
        user_id=user.id, purpose=purpose, email=user.email, expires_at=utcnow() + lifetime(platform, purpose)
    )
    session.add(token)
    await session.flush()
    return token


async def create_request(
    session: AsyncSession, platform: Platform, purpose: str, email: str, client: ClientInfo
) -> AuthToken:
    """A token row for whoever owns ``email``, if anyone. The request path writes it for every address and
    never looks the address up: the worker resolves it to an account (or to none) off the request path."""
    token = AuthToken(
        purpose=purpose,
        email=email,
        expires_at=utcnow() + lifetime(platform, purpose),
        client_address=client.address,
        user_agent=(client.user_agent or "")[:255] or None,
        request_id=client.request_id,
    )
    session.add(token)
    await session.flush()
    return token


async def withdraw_live(session: AsyncSession, user_id: str, purpose: str) -> None:
    """Make every live ``purpose`` token of the user unusable (their workflows settle them later)."""
    await session.execute(
        update(AuthToken).where(*AuthToken.live_of(user_id, purpose)).values(superseded_at=utcnow(), token_digest=None)
    )


def _search_attributes(token: AuthToken) -> TypedSearchAttributes:
    pairs = [SearchAttributePair(KIND, token.purpose)]
    # A request by address has no user yet (and may never have one).
    if token.user_id is not None:
        pairs.append(SearchAttributePair(USER_ID, token.user_id))
    return TypedSearchAttributes(pairs)


async def start_workflow(platform: Platform, token: AuthToken) -> None:
    """Start the token's workflow (after its row is committed). Delivery and expiry happen there.

    If Temporal cannot be reached the token is withdrawn, so no live token exists without its timer.
    """
    try:
        await platform.temporal.start_workflow(
            AuthTokenWorkflow.run,
            AuthTokenInput(token_id=token.id, purpose=token.purpose, expires_at=token.expires_at),
            id=workflow_id(token.purpose, token.id),
            task_queue=platform.settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=_search_attributes(token),
        )
    except Exception:
        log.exception("could not start the workflow of %s token %s; withdrawing it", token.purpose, token.id)
        async with platform.db.session() as session:
            await session.execute(update(AuthToken).where(AuthToken.id == token.id).values(superseded_at=utcnow()))


async def consume(session: AsyncSession, purpose: str, secret: str) -> AuthToken | None:
    """Mark the live token matching ``secret`` consumed, in one conditional UPDATE: of two concurrent
    callers exactly one gets the token, the other None."""
    now = utcnow()
    token_id = await session.scalar(
        update(AuthToken)
        .where(
            AuthToken.token_digest == digest(secret),
            AuthToken.purpose == purpose,
            AuthToken.consumed_at.is_(None),
            AuthToken.superseded_at.is_(None),
            AuthToken.expired_at.is_(None),
            AuthToken.refused_at.is_(None),
            AuthToken.expires_at > now,
        )
        .values(consumed_at=now)
        .returning(AuthToken.id)
    )
    if token_id is None:
        return None
    return await session.scalar(select(AuthToken).where(AuthToken.id == token_id))


async def signal_consumed(platform: Platform, token: AuthToken) -> None:
    """Let the token's workflow finish early; if this fails its timer settles the token anyway."""
    try:
        handle = platform.temporal.get_workflow_handle(workflow_id(token.purpose, token.id))
        await handle.signal(AuthTokenWorkflow.consumed)
    except Exception:
        log.warning("could not signal the workflow of %s token %s; its timer will settle it", token.purpose, token.id)
