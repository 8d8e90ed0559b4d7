"""User preferences (reference §2.2): stored as one JSON document per user."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from core.errors import AppError, Forbidden
from db.base import utcnow
from db.models import User, UserPreferences
from domain import preferences as prefs
from services.platform import Platform


def _invalid(error: ValidationError) -> AppError:
    fields = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
    return AppError("invalid preferences", code="VALIDATION_ERROR", status=422, details=fields)


def _check_advanced(user: User, incoming: dict[str, Any]) -> None:
    """Below level 2 ``advanced`` is hidden, so any write of it is refused, whatever its value (comparing with the
    stored value would let the caller probe what is hidden from them)."""
    if user.level < prefs.ADVANCED_LEVEL and "advanced" in incoming:
        raise Forbidden("advanced preferences need level 2", code="PREFERENCES_ADVANCED_FORBIDDEN")


def _validated(document: dict[str, Any]) -> dict[str, Any]:
    try:
        return prefs.Preferences.model_validate(document).to_document()
    except ValidationError as error:
        raise _invalid(error) from None


async def _save(platform: Platform, user: User, document: dict[str, Any] | None) -> dict[str, Any]:
    """Store ``document`` (or the defaults) and return what ``user`` may see of it."""
    document = document or prefs.Preferences().to_document()
    document["lastUpdated"] = utcnow().isoformat()
    async with platform.db.session() as session:
        row = await session.get(UserPreferences, user.id)
        if row is None:
            session.add(UserPreferences(user_id=user.id, data=document))
        else:
            row.data = document
    return prefs.visible_to(document, user.level)


async def _stored(platform: Platform, user: User) -> dict[str, Any]:
    async with platform.db.session() as session:
        row = await session.get(UserPreferences, user.id)
    return dict(row.data) if row else prefs.Preferences().to_document()


async def get(platform: Platform, user: User) -> dict[str, Any]:
    return prefs.visible_to(await _stored(platform, user), user.level)


async def patch(platform: Platform, user: User, changes: dict[str, Any]) -> dict[str, Any]:
    _check_advanced(user, changes)
    current = await _stored(platform, user)
    merged = _validated(prefs.apply_patch(current, changes))
    return await _save(platform, user, merged)


async def reset(platform: Platform, user: User) -> dict[str, Any]:
    return await _save(platform, user, None)


async def export(platform: Platform, user: User) -> dict[str, Any]:
    return await get(platform, user)


async def import_(platform: Platform, user: User, document: dict[str, Any]) -> dict[str, Any]:
    _check_advanced(user, document)
    try:
        migrated = prefs.migrate(document)
    except ValueError as error:
        raise AppError(str(error), code="VALIDATION_ERROR", status=422) from None
    if user.level < prefs.ADVANCED_LEVEL:
        # A level-1 document has no `advanced`; what is stored stays as it is.
        stored = (await _stored(platform, user)).get("advanced")
        if stored is not None:
            migrated["advanced"] = stored
    return await _save(platform, user, _validated(migrated))
