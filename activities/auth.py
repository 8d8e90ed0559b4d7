"""Side effects of the token workflow: resolve a request to an account, draw and mail a token, settle it at
its end."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from core.security import digest, email_digest, new_token
from core.settings import Settings
from db.base import utcnow
from db.engine import Database
from db.models import AuthAuditEvent, AuthToken, User
from domain.notifications import MailContent, email_verification_mail, password_changed_mail, password_reset_mail
from integrations.mail import Mailer, compose
from workflows.auth_token import (
    DELIVER_ACTIVITY,
    EMAIL_VERIFICATION,
    PASSWORD_RESET,
    REQUEST_EVENT,
    SETTLE_ACTIVITY,
)


def request_refusal(purpose: str, user: User | None) -> str | None:
    """Why the owner of a requested address gets no mail (the audit outcome), or None if they get one."""
    if user is None:
        return "user_not_found"
    if not user.is_active:
        return "user_disabled"
    # Unverified accounts may reset: the mail proves the address as well as verification would.
    if purpose == EMAIL_VERIFICATION and user.email_verified:
        return "already_verified"
    return None


class AuthActivities:
    def __init__(self, db: Database, mailer: Mailer, settings: Settings) -> None:
        self._db = db
        self._mailer = mailer
        self._settings = settings

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_token(self, token_id: str) -> bool:
        """Draw a fresh secret, keep only its digest, mail the link. False if the token is no longer live
        or, for a request by address, if no account may receive it.

        A retry after a failed send draws a new secret, so only the mailed one ever works; the plaintext
        exists only in this call and in the mail.
        """
        async with self._db.session() as session:
            token = await session.get(AuthToken, token_id, with_for_update=True)
            if token is None or token.state not in ("pending", "issued") or token.email is None:
                return False  # only a refused token has lost its address
            if token.user_id is None and not await self._resolve_request(session, token):
                return False
            secret = new_token()
            token.token_digest = digest(secret)
            token.delivered_at = utcnow()
            recipient, purpose = token.email, token.purpose
        await self._send(recipient, self._token_mail(purpose, secret))
        activity.logger.info("mailed %s token %s", purpose, token_id)
        return True

    async def _resolve_request(self, session: AsyncSession, token: AuthToken) -> bool:
        """Bind a request by address to its account, or refuse it; either way record the outcome.

        A newer request for the same address wins, whichever of the two the worker reaches first.
        """
        user = await session.scalar(select(User).where(User.email == token.email))
        outcome = request_refusal(token.purpose, user)
        if outcome is None and await self._newer_request_exists(session, token):
            outcome = "superseded"
        self._audit(session, token, outcome or "issued", user)
        if outcome is None:
            assert user is not None  # request_refusal refuses a missing account
            # Older links of the account stop working (before this row joins the account, so it stays live).
            await session.execute(
                update(AuthToken)
                .where(*AuthToken.live_of(user.id, token.purpose))
                .values(superseded_at=utcnow(), token_digest=None)
            )
            token.user_id = user.id
        elif outcome == "superseded":
            token.superseded_at = utcnow()
        else:
            # Nothing is kept of an address that gets no mail.
            token.refused_at = utcnow()
            token.email = None
        token.client_address = token.user_agent = token.request_id = None
        return outcome is None

    @staticmethod
    async def _newer_request_exists(session: AsyncSession, token: AuthToken) -> bool:
        newer = await session.scalar(
            select(AuthToken.id)
            .where(
                AuthToken.email == token.email,
                AuthToken.purpose == token.purpose,
                AuthToken.created_at > token.created_at,
                AuthToken.refused_at.is_(None),
            )
            .limit(1)
        )
        return newer is not None

    @staticmethod
    def _audit(session: AsyncSession, token: AuthToken, outcome: str, user: User | None) -> None:
        """The audit row of the request, with who asked as the request path saw it."""
        session.add(
            AuthAuditEvent(
                event=REQUEST_EVENT[token.purpose],
                outcome=outcome,
                user_id=user.id if user else None,
                email_digest=email_digest(token.email) if token.email is not None else None,
                client_address=token.client_address,
                user_agent=token.user_agent,
                request_id=token.request_id,
            )
        )

    @activity.defn(name=SETTLE_ACTIVITY)
    async def settle_token(self, token_id: str) -> str:
        """At the token's end: expire it if unused; for a used reset token, send the change notice once."""
        async with self._db.session() as session:
            token = await session.get(AuthToken, token_id, with_for_update=True)
            if token is None:
                return "deleted"
            if token.state in ("pending", "issued"):
                token.expired_at = utcnow()
                token.token_digest = None
            if token.user_id is None:
                # A request by address that never reached an account keeps nothing of it.
                token.email = token.client_address = token.user_agent = token.request_id = None
            notify = token.purpose == PASSWORD_RESET and token.consumed_at and not token.notice_sent_at
            state = token.state
            recipient = await session.scalar(select(User.email).where(User.id == token.user_id))
        if notify and recipient:
            await self._send(recipient, password_changed_mail())
            async with self._db.session() as session:
                token = await session.get(AuthToken, token_id)
                if token is not None:
                    token.notice_sent_at = utcnow()
        return state

    def _token_mail(self, purpose: str, secret: str) -> MailContent:
        s = self._settings
        if purpose == PASSWORD_RESET:
            link = f"{s.public_app_url.rstrip('/')}{s.reset_password_path}?token={secret}"
            return password_reset_mail(link, s.reset_token_ttl_seconds // 60)
        # The front end has no page that reads a verification token: the link goes to the API, which
        # verifies and sends the browser on to the sign-in page.
        link = f"{s.public_api_url.rstrip('/')}/auth/verify-email/confirm?token={secret}"
        return email_verification_mail(link, s.verification_token_ttl_seconds // 60)

    async def _send(self, recipient: str, content: MailContent) -> None:
        message = compose(self._settings.mail_from, recipient, content.subject, content.body)
        # smtplib blocks; keep the worker's event loop free.
        await asyncio.to_thread(self._mailer.send, message)
