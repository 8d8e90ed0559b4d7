"""Password recovery (gap P0-1): uniform requests, mailed single-use tokens, atomic confirmation."""

from __future__ import annotations

from core.errors import InvalidInput
from db.models import User
from domain.passwords import is_strong_password
from services import audit, auth_tokens, sessions
from services.accounts import hash_password, weak_password
from services.auth import lift_login_throttle
from services.platform import ClientInfo, Platform
from services.token_mail import request_token_mail
from workflows.auth_token import PASSWORD_RESET


async def request_reset(platform: Platform, email: str, client: ClientInfo) -> None:
    await request_token_mail(platform, PASSWORD_RESET, email, client)


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
            if token is None or user is None or not user.is_active or user.email != token.email:
                raise InvalidInput("invalid or expired reset token", code="INVALID_RESET_TOKEN")
            user.password_hash = password_hash
            user.email_verified = True
            revoked = await sessions.revoke(session, user.id)
            # A successful reset lifts any sign-in throttle on the account.
            await lift_login_throttle(session, user.email)
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
