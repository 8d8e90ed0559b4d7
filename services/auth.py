"""Registration, email verification and login (reference §2.1, with verification and throttling made real)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AppError, Conflict, Forbidden, InvalidInput, RateLimited, Unauthorized
from core.security import digest, email_digest, normalize_email
from db.models import User
from domain.passwords import is_strong_password
from services import audit, auth_tokens, rate_limits, sessions
from services.accounts import find_by_email, hash_password, verify_password, weak_password
from services.platform import ClientInfo, Platform
from services.sessions import IssuedSession
from services.token_mail import request_token_mail
from workflows.auth_token import EMAIL_VERIFICATION

# Failed sign-ins are counted twice: per account and client address, with a low limit, so that a stranger's
# guesses do not lock the owner out of another address; and per account, with a ceiling high enough for
# that, so that guesses spread over many addresses are still throttled.
LOGIN_ATTEMPTS = "login_attempts"
LOGIN_ATTEMPTS_PER_ACCOUNT = "login_attempts_account"


async def register(platform: Platform, email: str, password: str, client: ClientInfo) -> User:
    email = normalize_email(email)
    if not is_strong_password(password):
        raise weak_password()
    password_hash = await hash_password(platform, password)
    try:
        async with platform.db.session() as session:
            if await find_by_email(session, email) is not None:
                raise Conflict("email already registered", code="DUPLICATE_EMAIL")
            user = User(email=email, password_hash=password_hash)
            session.add(user)
            await session.flush()
            token = await auth_tokens.create(session, platform, user, EMAIL_VERIFICATION)
            await audit.record(session, "register", "created", client, user_id=user.id, email=email)
    except IntegrityError:
        raise Conflict("email already registered", code="DUPLICATE_EMAIL") from None
    await auth_tokens.start_workflow(platform, token)
    return user


async def verify_email(platform: Platform, secret: str, client: ClientInfo) -> User:
    async with platform.db.session() as session:
        token = await auth_tokens.consume(session, EMAIL_VERIFICATION, secret)
        user = await session.get(User, token.user_id) if token else None
        # A token mailed to an address the user has since changed proves nothing about the new one.
        if user is not None and token is not None and user.email == token.email:
            user.email_verified = True
            await audit.record(session, "verify_email", "verified", client, user_id=user.id, email=user.email)
        else:
            user = None
            await audit.record(session, "verify_email", "invalid_or_expired_token", client)
    if user is None or token is None:
        raise InvalidInput("invalid or expired verification token", code="INVALID_VERIFICATION_TOKEN")
    await auth_tokens.signal_consumed(platform, token)
    return user


def _login_limits(platform: Platform, email: str, client: ClientInfo) -> list[rate_limits.Limit]:
    """Keyed by the email's digest (so unknown emails are throttled alike); the pair key starts with the
    account's part, so a password reset can lift the throttle for every address at once."""
    s = platform.settings
    account = email_digest(email)
    pair = account[:32] + digest(client.address or "unknown")[:32]
    window = s.login_failure_window_seconds
    return [
        rate_limits.Limit(LOGIN_ATTEMPTS, pair, s.login_max_failures, window),
        rate_limits.Limit(LOGIN_ATTEMPTS_PER_ACCOUNT, account, s.login_max_failures_per_account, window),
    ]


async def lift_login_throttle(session: AsyncSession, email: str) -> None:
    """Forget the account's failed sign-ins, from every address."""
    account = email_digest(email)
    await rate_limits.clear_prefix(session, LOGIN_ATTEMPTS, account[:32])
    await rate_limits.clear(session, LOGIN_ATTEMPTS_PER_ACCOUNT, account)


async def login(platform: Platform, email: str, password: str, client: ClientInfo) -> IssuedSession:
    """Throttled per account and client address, and per account with a higher ceiling.

    Every attempt counts until one succeeds; the password is checked outside any transaction so a
    flood of sign-ins cannot hold the connection pool while argon2 runs.
    """
    email = normalize_email(email)
    limits = _login_limits(platform, email, client)
    async with platform.db.session() as session:
        wait = await rate_limits.consume_all(session, limits)
        user = await find_by_email(session, email) if wait is None else None
        if wait is not None:
            await audit.record(session, "login", "throttled", client, email=email)
    if wait is not None:
        raise RateLimited("too many failed sign-in attempts; try again later", retry_after=wait, code="LOGIN_THROTTLED")
    ok = await verify_password(platform, password, user.password_hash if user else None)
    async with platform.db.session() as session:
        error = await _login_refusal(session, platform, user if ok else None, email, client)
        if error is None:
            assert user is not None  # _login_refusal refuses a missing account
            # The password was right: what was counted against this account is forgiven.
            for limit in limits:
                await rate_limits.clear(session, limit.scope, limit.key)
            issued = await sessions.open_session(session, platform, user, client)
            await audit.record(session, "login", "success", client, user_id=user.id, email=email)
    if error is not None:
        raise error
    return issued


async def _login_refusal(
    session: AsyncSession, platform: Platform, user: User | None, email: str, client: ClientInfo
) -> AppError | None:
    if user is None:
        await audit.record(session, "login", "failure", client, email=email)
        return Unauthorized("invalid email or password", code="INVALID_CREDENTIALS")
    if not user.is_active:
        await audit.record(session, "login", "user_disabled", client, user_id=user.id, email=email)
        return Forbidden("this account is disabled", code="USER_DISABLED")
    if platform.settings.require_email_verification and not user.email_verified:
        await audit.record(session, "login", "email_not_verified", client, user_id=user.id, email=email)
        return Forbidden("verify your email address before signing in", code="EMAIL_NOT_VERIFIED")
    return None


async def logout(platform: Platform, user: User, session_id: str, client: ClientInfo) -> None:
    async with platform.db.session() as session:
        await sessions.revoke(session, user.id, only=session_id)
        await audit.record(session, "logout", "success", client, user_id=user.id)


async def request_verification_mail(platform: Platform, email: str, client: ClientInfo) -> None:
    """Resend: the caller learns nothing about the address; only an unverified live account gets mail."""
    await request_token_mail(platform, EMAIL_VERIFICATION, email, client)
