"""Account commands: users, password recovery, the mail outbox and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from cli import context
from cli.output import command_runner, emit, fail
from core.settings import get_settings
from integrations.mail import FileOutbox
from services import audit, password_reset, users
from services.platform import CLI_CLIENT
from services.schemas.admin import AuditEventOut
from services.schemas.users import UserOut


def _user(user) -> dict:
    return UserOut.model_validate(user).model_dump(mode="json")


@click.group("users")
def users_group() -> None:
    """User accounts."""


@users_group.command("create")
@click.option("--email", required=True, help="Email address of the new account.")
@click.option("--admin", "is_admin", is_flag=True, help="Give the account the admin role.")
@click.option("--display-name", default=None, help="Name shown in the front end.")
@command_runner
async def users_create(email: str, is_admin: bool, display_name: str | None) -> None:
    """Create a ready, verified account (use --admin for the first administrator).

    The password is read from a prompt (or stdin), never from the command line.
    """
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    changes = users.UserChanges(email=email, display_name=display_name, role="admin" if is_admin else "user")
    async with context.platform(need_temporal=False) as platform:
        emit(_user(await users.create_user(platform, password, changes, CLI_CLIENT)))


@users_group.command("list")
@click.option("--status", type=click.Choice(["active", "inactive"]), default=None)
@click.option("--search", default=None, help="Part of the email address.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, 200))
@command_runner
async def users_list(status: str | None, search: str | None, page: int, page_size: int) -> None:
    """List accounts (operator view, straight from the database)."""
    async with context.platform(need_temporal=False) as platform:
        found, total = await users.list_users(platform, status=status, search=search, page=page, page_size=page_size)
    emit({"items": [_user(u) for u in found], "total": total, "page": page, "page_size": page_size})


@click.group("auth")
def auth_group() -> None:
    """Sign-in and password recovery."""


@auth_group.command("password-reset-request")
@click.argument("email")
@command_runner
async def reset_request(email: str) -> None:
    """Mail a password-reset link to EMAIL if it has an account (the answer is the same either way)."""
    async with context.platform() as platform:
        await password_reset.request_reset(platform, email, CLI_CLIENT)
    emit({"message": "If an account exists for this email, a password reset link has been sent to it."})


@auth_group.command("password-reset-confirm")
@command_runner
async def reset_confirm() -> None:
    """Set a new password with a reset token. The token and password are read from prompts or stdin."""
    token = click.prompt("Reset token", hide_input=True, err=True).strip()
    new_password = click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True)
    async with context.platform() as platform:
        revoked = await password_reset.confirm_reset(platform, token, new_password, CLI_CLIENT)
    emit({"message": "password updated", "revoked_sessions": revoked})


@click.group("mail")
def mail_group() -> None:
    """The local mail outbox (QUANTPOLY_MAIL_BACKEND=file) under var/mail/."""


def _outbox() -> FileOutbox:
    return FileOutbox(get_settings().mail_dir)


@mail_group.command("list")
def mail_list() -> None:
    """List sent messages, oldest first."""
    emit([{"id": m.id, "date": m.date, "to": m.to, "subject": m.subject} for m in _outbox().list()])


@mail_group.command("show")
@click.argument("mail_id")
def mail_show(mail_id: str) -> None:
    """Show one message, body included."""
    message = _outbox().get(mail_id)
    if message is None:
        fail("MAIL_NOT_FOUND", f"no message {mail_id} in {_outbox().directory}")
    emit({"id": message.id, "date": message.date, "to": message.to, "subject": message.subject, "body": message.body})


@click.group("audit")
def audit_group() -> None:
    """The auth audit trail."""


@audit_group.command("list")
@click.option("--event", default=None, help="e.g. login, password_reset_request, password_reset_confirm")
@click.option("--outcome", default=None)
@click.option("--user-id", default=None)
@click.option("--email", default=None, help="Matched by digest; emails are not stored.")
@click.option("--since", type=click.DateTime(), default=None, help="UTC.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, 500))
@command_runner
async def audit_list(event, outcome, user_id, email, since: datetime | None, page: int, page_size: int) -> None:
    """List audit events, newest first."""
    filters = audit.AuditFilter(
        event=event,
        outcome=outcome,
        user_id=user_id,
        email=email,
        since=since.replace(tzinfo=UTC) if since else None,
    )
    async with context.platform(need_temporal=False) as platform:
        rows, total = await audit.search(platform, filters, page, page_size)
    items = [AuditEventOut.model_validate(r).model_dump(mode="json") for r in rows]
    emit({"items": items, "total": total, "page": page, "page_size": page_size})


def register(cli: click.Group) -> None:
    for group in (users_group, auth_group, mail_group, audit_group):
        cli.add_command(group)
