"""/users/me*: the signed-in user's own account and preferences."""

from __future__ import annotations

from fastapi import Body

from api.deps import CallerDep, ClientDep, CurrentUser, PlatformDep
from api.envelope import Envelope, errors, ok
from api.routing import api_router
from services import preferences, users
from services.schemas.users import ChangePasswordIn, PreferencesDocument, RevokedOut, UpdateMeIn, UserOut

router = api_router(prefix="/users/me", tags=["users"])

PREFERENCES_WRITE_ERRORS = errors(403, codes={403: "PREFERENCES_ADVANCED_FORBIDDEN"})


@router.get("", response_model=Envelope[UserOut])
async def get_me(user: CurrentUser):
    return ok(UserOut.model_validate(user))


@router.patch(
    "",
    response_model=Envelope[UserOut],
    responses=errors(400, 409, codes={400: "INVALID_EMAIL", 409: "DUPLICATE_EMAIL"}),
)
async def update_me(body: UpdateMeIn, user: CurrentUser, platform: PlatformDep, client: ClientDep):
    updated = await users.update_me(platform, user, client, email=body.email, display_name=body.display_name)
    return ok(UserOut.model_validate(updated))


@router.patch(
    "/password",
    response_model=Envelope[RevokedOut],
    responses=errors(400, 429, codes={400: "PASSWORD_CHANGE_INVALID", 429: "PASSWORD_CHANGE_THROTTLED"}),
)
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


@router.delete("", response_model=Envelope[RevokedOut])
async def delete_me(user: CurrentUser, platform: PlatformDep, client: ClientDep):
    revoked = await users.delete_me(platform, user, client)
    return ok(RevokedOut(revoked_sessions=revoked), message="account deleted")


@router.get("/preferences", response_model=Envelope[PreferencesDocument])
async def get_preferences(user: CurrentUser, platform: PlatformDep):
    return ok(await preferences.get(platform, user))


@router.patch("/preferences", response_model=Envelope[PreferencesDocument], responses=PREFERENCES_WRITE_ERRORS)
async def patch_preferences(user: CurrentUser, platform: PlatformDep, changes: PreferencesDocument = Body(...)):
    return ok(await preferences.patch(platform, user, changes))


@router.post("/preferences/reset", response_model=Envelope[PreferencesDocument])
async def reset_preferences(user: CurrentUser, platform: PlatformDep):
    return ok(await preferences.reset(platform, user))


@router.get("/preferences/export", response_model=Envelope[PreferencesDocument])
async def export_preferences(user: CurrentUser, platform: PlatformDep):
    return ok(await preferences.export(platform, user))


@router.post("/preferences/import", response_model=Envelope[PreferencesDocument], responses=PREFERENCES_WRITE_ERRORS)
async def import_preferences(user: CurrentUser, platform: PlatformDep, document: PreferencesDocument = Body(...)):
    return ok(await preferences.import_(platform, user, document))
