"""The signed-in user's own account, and the admin's view of all accounts (reference §2.1)."""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AppError, Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from core.security import normalize_email
from db.models import User
from domain.passwords import is_strong_password
from services import audit, auth_tokens, rate_limits, sessions
from services.accounts import find_by_email, hash_password, verify_password, weak_password
from services.platform import ClientInfo, Platform
from workflows.auth_token import EMAIL_VERIFICATION, PASSWORD_RESET

PASSWORD_CHANGE_ATTEMPTS = "password_change_attempts"
ROLES = ("user", "admin")
LEVELS = range(1, 3)


def require_admin(user: User) -> None:
    if user.role != "admin":
        raise Forbidden("administrator role required", code="ADMIN_REQUIRED")


async def _ensure_email_free(session: AsyncSession, email: str, owner_id: str | None = None) -> None:
    other = await find_by_email(session, email)
    if other is not None and other.id != owner_id:
        raise Conflict("email already registered", code="DUPLICATE_EMAIL")


async def update_me(
    platform: Platform, user: User, client: ClientInfo, *, email: str | None, display_name: str | None
) -> User:
    """A changed email must be verified again: a token goes to the new address."""
    token = None
    try:
        async with platform.db.session() as session:
            me = await session.get_one(User, user.id)
            if display_name is not None:
                me.display_name = display_name
            if email is not None and normalize_email(email) != me.email:
                await _ensure_email_free(session, email, me.id)
                me.email = normalize_email(email)
                me.email_verified = False
                # Reset links sent to the old address must stop working.
                await auth_tokens.withdraw_live(session, me.id, PASSWORD_RESET)
                token = await auth_tokens.create(session, platform, me, EMAIL_VERIFICATION)
                await audit.record(session, "email_changed", "verification_sent", client, user_id=me.id, email=me.email)
    except IntegrityError:
        raise Conflict("email already registered", code="DUPLICATE_EMAIL") from None
    if token is not None:
        await auth_tokens.start_workflow(platform, token)
    return me


async def change_password(
    platform: Platform, user: User, client: ClientInfo, *, current: str, new: str, revoke_all: bool, session_id: str
) -> int:
    """Returns how many sessions were revoked: every other one, or with ``revoke_all`` the current one too.

    Guesses of the current password are throttled like sign-ins, so a stolen session cannot try many.
    """
    s = platform.settings
    async with platform.db.session() as session:
        wait = await rate_limits.consume(
            session, PASSWORD_CHANGE_ATTEMPTS, user.id, s.login_max_failures, s.login_failure_window_seconds
        )
    if wait is not None:
        raise RateLimited("too many attempts; try again later", retry_after=wait, code="PASSWORD_CHANGE_THROTTLED")
    if not await verify_password(platform, current, user.password_hash):
        async with platform.db.session() as session:
            await audit.record(session, "password_change", "invalid_current_password", client, user_id=user.id)
        raise InvalidInput("current password is incorrect", code="PASSWORD_CHANGE_INVALID")
    if not is_strong_password(new):
        raise weak_password()
    password_hash = await hash_password(platform, new)
    async with platform.db.session() as session:
        me = await session.get_one(User, user.id)
        me.password_hash = password_hash
        # A reset link mailed earlier must not undo the change the user just made.
        await auth_tokens.withdraw_live(session, me.id, PASSWORD_RESET)
        revoked = await sessions.revoke(session, user.id, keep=None if revoke_all else session_id)
        await rate_limits.clear(session, PASSWORD_CHANGE_ATTEMPTS, user.id)
        await audit.record(session, "password_change", "password_updated", client, user_id=user.id)
    return revoked


async def delete_me(platform: Platform, user: User, client: ClientInfo) -> int:
    async with platform.db.session() as session:
        revoked = await sessions.revoke(session, user.id)
        await session.execute(delete(User).where(User.id == user.id))
        await audit.record(session, "account_deleted", "self", client, user_id=user.id)
    return revoked


# --- administration -------------------------------------------------------------------------------


@dataclass
class UserChanges:
    email: str | None = None
    display_name: str | None = None
    role: str | None = None
    level: int | None = None
    is_active: bool | None = None
    email_verified: bool | None = None


def _check_changes(changes: UserChanges) -> None:
    if changes.email is not None:
        try:  # as the API's EmailStr checks it, so that every account made here can also sign in
            validate_email(changes.email, check_deliverability=False)
        except EmailNotValidError as error:
            raise InvalidInput(f"invalid email address: {error}", code="INVALID_EMAIL") from None
    if changes.role is not None and changes.role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", code="INVALID_ROLE")
    if changes.level is not None and changes.level not in LEVELS:
        raise InvalidInput("level must be 1 or 2", code="INVALID_LEVEL")


async def admin_create(
    platform: Platform, admin: User, client: ClientInfo, password: str, changes: UserChanges
) -> User:
    require_admin(admin)
    return await create_user(platform, password, changes, client, actor_id=admin.id)


async def create_user(
    platform: Platform, password: str, changes: UserChanges, client: ClientInfo, *, actor_id: str | None = None
) -> User:
    """A ready account (no verification mail): for admins and the ``quantpoly users create`` command."""
    _check_changes(changes)
    if not changes.email:
        raise InvalidInput("email is required", code="INVALID_ARGUMENT")
    if not is_strong_password(password):
        raise weak_password()
    password_hash = await hash_password(platform, password)
    try:
        async with platform.db.session() as session:
            await _ensure_email_free(session, changes.email)
            user = User(
                email=normalize_email(changes.email),
                password_hash=password_hash,
                display_name=changes.display_name,
                role=changes.role or "user",
                level=changes.level or 1,
                is_active=True if changes.is_active is None else changes.is_active,
                email_verified=True if changes.email_verified is None else changes.email_verified,
            )
            session.add(user)
            await session.flush()
            await audit.record(
                session, "admin_user_create", user.role, client, user_id=user.id, email=user.email, actor_id=actor_id
            )
    except IntegrityError:
        raise Conflict("email already registered", code="DUPLICATE_EMAIL") from None
    return user


async def admin_list(
    platform: Platform, admin: User, *, status: str | None, search: str | None, page: int, page_size: int
) -> tuple[list[User], int]:
    require_admin(admin)
    return await list_users(platform, status=status, search=search, page=page, page_size=page_size)


async def list_users(
    platform: Platform, *, status: str | None, search: str | None, page: int, page_size: int
) -> tuple[list[User], int]:
    """All accounts; callers are the admin route and the operator's CLI."""
    conditions: list[ColumnElement[bool]] = []
    if status in ("active", "inactive"):
        conditions.append(User.is_active.is_(status == "active"))
    if search:
        conditions.append(User.email.contains(normalize_email(search), autoescape=True))
    async with platform.db.session() as session:
        total = await session.scalar(select(func.count()).select_from(User).where(*conditions))
        users = await session.scalars(
            select(User)
            .where(*conditions)
            .order_by(User.created_at.desc(), User.id)
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        return list(users), int(total or 0)


async def admin_get(platform: Platform, admin: User, user_id: str) -> User:
    require_admin(admin)
    async with platform.db.session() as session:
        return await _get_or_404(session, user_id)


async def _get_or_404(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user not found", code="USER_NOT_FOUND")
    return user


def _refuse_self_lockout(admin: User, target: User, changes: UserChanges | None) -> None:
    """An admin cannot disable, demote or delete their own account (the last admin could lock everyone out)."""
    if admin.id != target.id:
        return
    if changes is None or changes.is_active is False or (changes.role not in (None, "admin")):
        raise AppError(
            "administrators cannot disable, demote or delete themselves", code="ADMIN_SELF_LOCKOUT", status=409
        )


async def admin_update(platform: Platform, admin: User, client: ClientInfo, user_id: str, changes: UserChanges) -> User:
    require_admin(admin)
    _check_changes(changes)
    try:
        async with platform.db.session() as session:
            user = await _get_or_404(session, user_id)
            _refuse_self_lockout(admin, user, changes)
            if changes.email is not None and normalize_email(changes.email) != user.email:
                await _ensure_email_free(session, changes.email, user.id)
                user.email = normalize_email(changes.email)
                # Links mailed to the old address must stop working.
                for purpose in (PASSWORD_RESET, EMAIL_VERIFICATION):
                    await auth_tokens.withdraw_live(session, user.id, purpose)
            for name in ("display_name", "role", "level", "is_active", "email_verified"):
                value = getattr(changes, name)
                if value is not None:
                    setattr(user, name, value)
            if changes.is_active is False:
                await sessions.revoke(session, user.id)
            changed = sorted(name for name, value in vars(changes).items() if value is not None)
            # The outcome names what changed (never the values), so an escalation stands out.
            outcome = "updated:" + ",".join(changed) if changed else "unchanged"
            await audit.record(session, "admin_user_update", outcome, client, user_id=user.id, actor_id=admin.id)
    except IntegrityError:
        raise Conflict("email already registered", code="DUPLICATE_EMAIL") from None
    return user


async def admin_delete(platform: Platform, admin: User, client: ClientInfo, user_id: str) -> int:
    require_admin(admin)
    async with platform.db.session() as session:
        user = await _get_or_404(session, user_id)
        _refuse_self_lockout(admin, user, None)
        revoked = await sessions.revoke(session, user.id)
        await session.delete(user)
        await audit.record(session, "admin_user_delete", "deleted", client, user_id=user_id, actor_id=admin.id)
    return revoked
