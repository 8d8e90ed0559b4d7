"""/users/me*: the signed-in user's own account and preferences."""

from __future__ import annotations

from typing import Any

from fastapi import Body

from api.deps import CallerDep, ClientDep, CurrentUser, PlatformDep
from api.envelope import ok
from api.routing import api_router
from api.schemas import ChangePasswordIn, RevokedOut, UpdateMeIn
from services import preferences, users
from services.views import UserOut

router = api_router(prefix="/users/me", tags=["users"])


@router.get("")
async def get_me(user: CurrentUser):
    return ok(UserOut.model_validate(user))


@router.patch("")
async def update_me(body: UpdateMeIn, user: CurrentUser, platform: PlatformDep, client: ClientDep):
    updated = await users.update_me(platform, user, client, email=body.email, display_name=body.display_name)
    return ok(UserOut.model_validate(updated))


@router.patch("/password")
async def change_password(body: ChangePasswordIn, caller: CallerDep, platform: PlatformDep, client: ClientDep):
    revoked = await users.change_password(
        platform,
        caller.user,
        client,
        current=body.current_password,
        new=body.new_password,
        revoke_all=body.revoke_all_sessions,
        session_id=caller.session.id,
    )
    return ok(RevokedOut(revoked_sessions=revoked), message="password updated")


@router.delete("")
async def delete_me(user: CurrentUser, platform: PlatformDep, client: ClientDep):
    revoked = await users.delete_me(platform, user, client)
    return ok(RevokedOut(revoked_sessions=revoked), message="account deleted")


@router.get("/preferences")
async def get_preferences(user: CurrentUser, platform: PlatformDep):
    return ok(await preferences.get(platform, user))


@router.patch("/preferences")
async def patch_preferences(user: CurrentUser, platform: PlatformDep, changes: dict[str, Any] = Body(...)):
    return ok(await preferences.patch(platform, user, changes))


@router.post("/preferences/reset")
async def reset_preferences(user: CurrentUser, platform: PlatformDep):
    return ok(await preferences.reset(platform, user))


@router.get("/preferences/export")
async def export_preferences(user: CurrentUser, platform: PlatformDep):
    return ok(await preferences.export(platform, user))


@router.post("/preferences/import")
async def import_preferences(user: CurrentUser, platform: PlatformDep, document: dict[str, Any] = Body(...)):
    return ok(await preferences.import_(platform, user, document))
