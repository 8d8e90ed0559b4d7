"""Texts of the mails QuantPoly sends. Pure functions: the caller supplies links and names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MailContent:
    subject: str
    body: str


def password_reset_mail(link: str, ttl_minutes: int) -> MailContent:
    return MailContent(
        subject="Reset your QuantPoly password",
        body=(
            "Someone asked to reset the password of your QuantPoly account.\n\n"
            f"To choose a new password, open this link within {ttl_minutes} minutes:\n\n{link}\n\n"
            "The link works once. If you did not ask for it, ignore this mail: your password stays as it is.\n"
        ),
    )


def email_verification_mail(link: str, ttl_minutes: int) -> MailContent:
    return MailContent(
        subject="Confirm your QuantPoly email address",
        body=(
            "Welcome to QuantPoly.\n\n"
            f"To confirm this email address, open this link within {ttl_minutes} minutes:\n\n{link}\n\n"
            "If you did not create an account, ignore this mail.\n"
        ),
    )


def password_changed_mail() -> MailContent:
    return MailContent(
        subject="Your QuantPoly password was changed",
        body=(
            "The password of your QuantPoly account was just changed through a reset link, "
            "and every session was signed out.\n\n"
            "If this was not you, reset your password again at once and contact your administrator.\n"
        ),
    )
