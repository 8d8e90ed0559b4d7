"""The uniform "mail me a token" request shared by password reset and verification resend.

Whatever the address (known, unknown, unverified, disabled) the request path does the same work and the
caller gets the same answer: past the limits it writes a token row and starts the token's workflow, and
never looks the address up. The workflow's delivery activity decides whether an account may receive
the mail, and records the outcome in the audit trail. Limits are counted per email digest and per client
address, for unknown addresses exactly as for known ones.
"""

from __future__ import annotations

from core.errors import AppError, RateLimited
from core.security import digest, email_digest, normalize_email
from db.models import AuthToken
from services import audit, auth_tokens, rate_limits
from services.platform import ClientInfo, Platform
from workflows.auth_token import REQUEST_EVENT


async def request_token_mail(platform: Platform, purpose: str, email: str, client: ClientInfo) -> None:
    """Ask the worker to mail a ``purpose`` token to ``email`` if it belongs to an account that may have one.

    Over the per-address limit the caller gets 429; over the per-email limit the answer stays the
    uniform one (so the limit reveals nothing) and no mail goes out.
    """
    email = normalize_email(email)
    event = REQUEST_EVENT[purpose]
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
            token = await auth_tokens.create_request(session, platform, purpose, email, client)
    if error is not None:
        raise error
    if token is not None:
        await auth_tokens.start_workflow(platform, token)
