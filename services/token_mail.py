"""The uniform "mail me a token" request shared by password reset and verification resend.

Whatever the address (known, unknown, unverified, disabled) the caller gets the same answer; only the
audit trail and the outbox differ. Limits are counted per email digest and per client address, for unknown
addresses exactly as for known ones.
"""

from __future__ import annotations

from collections.abc import Callable

from core.errors import AppError, RateLimited
from core.security import digest, email_digest, normalize_email
from db.models import AuthToken, User
from services import audit, auth_tokens, rate_limits
from services.accounts import find_by_email
from services.platform import ClientInfo, Platform


async def request_token_mail(
    platform: Platform,
    purpose: str,
    event: str,
    email: str,
    client: ClientInfo,
    refusal: Callable[[User], str | None],
) -> None:
    """Issue and mail a ``purpose`` token if the account exists and ``refusal(user)`` is None.

    Over the per-address limit the caller gets 429; over the per-email limit the answer stays the
    uniform one (so the limit reveals nothing) and no mail goes out.
    """
    email = normalize_email(email)
    s = platform.settings
    error: AppError | None = None
    token: AuthToken | None = None
    client_key = digest(client.address or "unknown")
    async with platform.db.session() as session:
        client_scope, email_scope = f"{event}:client", f"{event}:email"
        wait = await rate_limits.consume(
            session, client_scope, client_key, s.reset_per_client_limit, s.reset_per_client_window_seconds
        )
        if wait is not None:
            await audit.record(session, event, "rate_limited_client", client, email=email)
            error = RateLimited("too many requests from this address; try again later", retry_after=wait)
        elif await rate_limits.consume(
            session, email_scope, email_digest(email), s.reset_per_email_limit, s.reset_per_email_window_seconds
        ):
            await audit.record(session, event, "rate_limited", client, email=email)
        else:
            user = await find_by_email(session, email)
            outcome = "user_not_found" if user is None else refusal(user)
            if outcome is None:
                token = await auth_tokens.create(session, platform, user, purpose)
            await audit.record(
                session, event, outcome or "issued", client, user_id=user.id if user else None, email=email
            )
    if error is not None:
        raise error
    if token is not None:
        await auth_tokens.start_workflow(platform, token)
