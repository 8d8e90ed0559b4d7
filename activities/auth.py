"""Side effects of the token workflow: draw and mail a token, settle it at its end."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from temporalio import activity

from core.security import digest, new_token
from core.settings import Settings
from db.base import utcnow
from db.engine import Database
from db.models import AuthToken, User
from domain.notifications import MailContent, email_verification_mail, password_changed_mail, password_reset_mail
from integrations.mail import Mailer, compose
from workflows.auth_token import DELIVER_ACTIVITY, PASSWORD_RESET, SETTLE_ACTIVITY


class AuthActivities:
    def __init__(self, db: Database, mailer: Mailer, settings: Settings) -> None:
        self._db = db
        self._mailer = mailer
        self._settings = settings

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver_token(self, token_id: str) -> bool:
        """Draw a fresh secret, keep only its digest, mail the link. False if the token is no longer live.

        A retry after a failed send draws a new secret, so only the mailed one ever works; the plaintext
        exists only in this call and in the mail.
        """
        async with self._db.session() as session:
            token = await session.get(AuthToken, token_id, with_for_update=True)
            if token is None or token.state not in ("pending", "issued"):
                return False
            secret = new_token()
            token.token_digest = digest(secret)
            token.delivered_at = utcnow()
            recipient, purpose = token.email, token.purpose
        await self._send(recipient, self._token_mail(purpose, secret))
        activity.logger.info("mailed %s token %s", purpose, token_id)
        return True

    @activity.defn(name=SETTLE_ACTIVITY)
    async def settle_token(self, token_id: str) -> str:
        """At the token's end: expire it if unused; for a used reset token, send the change notice once."""
        async with self._db.session() as session:
            token = await session.get(AuthToken, token_id, with_for_update=True)
            if token is None:
                return "deleted"
            if token.consumed_at is None and token.superseded_at is None and token.expired_at is None:
                token.expired_at = utcnow()
                token.token_digest = None
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
        link = f"{s.public_app_url.rstrip('/')}{s.verify_email_path}?token={secret}"
        return email_verification_mail(link, s.verification_token_ttl_seconds // 60)

    async def _send(self, recipient: str, content: MailContent) -> None:
        message = compose(self._settings.mail_from, recipient, content.subject, content.body)
        # smtplib blocks; keep the worker's event loop free.
        await asyncio.to_thread(self._mailer.send, message)
