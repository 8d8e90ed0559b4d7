"""Password recovery (gap P0-1): uniform requests, mailed single-use tokens, atomic confirmation."""

from __future__ import annotations

from core.errors import InvalidInput
from core.security import email_digest
from db.models import User
from domain.passwords import is_strong_password
from services import audit, auth_tokens, rate_limits, sessions
from services.accounts import hash_password, weak_password
from services.auth import LOGIN_ATTEMPTS
from services.platform import ClientInfo, Platform
from services.token_mail import request_token_mail
from workflows.auth_token import PASSWORD_RESET

REQUEST_EVENT = "password_reset_request"


def _refusal(user: User) -> str | None:
    # Unverified accounts may reset: the mail proves the address as well as verification would.
    return "user_disabled" if not user.is_active else None


async def request_reset(platform: Platform, email: str, client: ClientInfo) -> None:
    await request_token_mail(platform, PASSWORD_RESET, REQUEST_EVENT, email, client, _refusal)


async def confirm_reset(platform: Platform, secret: str, new_password: str, client: ClientInfo) -> int:
    """Consume the token, set the password, revoke every session. Returns the number revoked.

    Invalid, expired, superseded and reused tokens all get the same error, and a refused confirmation
    changes nothing: the token stays as it was.
    """
    if not is_strong_password(new_password):
        await _audit_failure(platform, "weak_password", client)
        raise weak_password()
    password_hash = await hash_password(platform, new_password)
    try:
        async with platform.db.session() as session:
            token = await auth_tokens.consume(session, PASSWORD_RESET, secret)
            user = await session.get(User, token.user_id) if token else None
            # The link must have gone to the account's current address, and the account must be live.
            if user is None or not user.is_active or user.email != token.email:
                raise InvalidInput("invalid or expired reset token", code="INVALID_RESET_TOKEN")
            user.password_hash = password_hash
            user.email_verified = True
            revoked = await sessions.revoke(session, user.id)
            # A successful reset lifts any sign-in throttle on the account.
            await rate_limits.clear(session, LOGIN_ATTEMPTS, email_digest(user.email))
            await audit.record(
                session, "password_reset_confirm", "password_updated", client, user_id=user.id, email=user.email
            )
    except InvalidInput:
        await _audit_failure(platform, "invalid_or_expired_token", client)
        raise
    await auth_tokens.signal_consumed(platform, token)
    return revoked


async def _audit_failure(platform: Platform, outcome: str, client: ClientInfo) -> None:
    async with platform.db.session() as session:
        await audit.record(session, "password_reset_confirm", outcome, client)
