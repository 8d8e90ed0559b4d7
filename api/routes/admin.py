"""/admin/*: user administration and the auth audit trail (role ``admin``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import Query

from api.deps import AdminUser, ClientDep, PageNumber, PageSize, PlatformDep
from api.envelope import Envelope, Page, errors, ok, page
from api.routing import api_router
from services import audit, users
from services.schemas.admin import AdminCreateUserIn, AdminDeletedOut, AdminUpdateUserIn, AuditEventOut
from services.schemas.users import UserOut

router = api_router(prefix="/admin", tags=["admin"])

ADMIN_ONLY = {403: "ADMIN_REQUIRED"}
# A change an administrator can get wrong: a bad email, role or level, a taken email, locking themselves out.
CHANGE_ERRORS = {400: "INVALID_ROLE", 403: "ADMIN_REQUIRED", 409: "DUPLICATE_EMAIL"}


@router.post(
    "/users", status_code=201, response_model=Envelope[UserOut], responses=errors(400, 403, 409, codes=CHANGE_ERRORS)
)
async def create_user(body: AdminCreateUserIn, admin: AdminUser, platform: PlatformDep, client: ClientDep):
    changes = users.UserChanges(**body.model_dump(exclude={"password"}))
    user = await users.admin_create(platform, admin, client, body.password, changes)
    return ok(UserOut.model_validate(user), status=201)


@router.get("/users", response_model=Envelope[Page[UserOut]], responses=errors(403, codes=ADMIN_ONLY))
async def list_users(
    admin: AdminUser,
    platform: PlatformDep,
    status: Literal["active", "inactive"] | None = None,
    search: str | None = None,
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    found, total = await users.admin_list(
        platform, admin, status=status, search=search, page=page_number, page_size=page_size
    )
    return page([UserOut.model_validate(u) for u in found], total, page_number, page_size)


@router.get(
    "/users/{user_id}",
    response_model=Envelope[UserOut],
    responses=errors(403, 404, codes={**ADMIN_ONLY, 404: "USER_NOT_FOUND"}),
)
async def get_user(user_id: str, admin: AdminUser, platform: PlatformDep):
    return ok(UserOut.model_validate(await users.admin_get(platform, admin, user_id)))


@router.patch(
    "/users/{user_id}",
    response_model=Envelope[UserOut],
    responses=errors(400, 403, 404, 409, codes={**CHANGE_ERRORS, 404: "USER_NOT_FOUND"}),
)
async def update_user(
    user_id: str, body: AdminUpdateUserIn, admin: AdminUser, platform: PlatformDep, client: ClientDep
):
    changes = users.UserChanges(**body.model_dump(exclude_unset=True))
    return ok(UserOut.model_validate(await users.admin_update(platform, admin, client, user_id, changes)))


@router.delete(
    "/users/{user_id}",
    response_model=Envelope[AdminDeletedOut],
    responses=errors(403, 404, 409, codes={**ADMIN_ONLY, 404: "USER_NOT_FOUND", 409: "ADMIN_SELF_LOCKOUT"}),
)
async def delete_user(user_id: str, admin: AdminUser, platform: PlatformDep, client: ClientDep):
    revoked = await users.admin_delete(platform, admin, client, user_id)
    return ok(AdminDeletedOut(user_id=user_id, revoked_sessions=revoked), message="user deleted")


@router.get("/audit-events", response_model=Envelope[Page[AuditEventOut]], responses=errors(403, codes=ADMIN_ONLY))
async def list_audit_events(
    admin: AdminUser,
    platform: PlatformDep,
    event: str | None = None,
    outcome: str | None = None,
    user_id: str | None = Query(None, alias="userId"),
    email: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page_number: PageNumber = 1,
    page_size: PageSize = 20,
):
    filters = audit.AuditFilter(event=event, outcome=outcome, user_id=user_id, email=email, since=since, until=until)
    rows, total = await audit.search(platform, filters, page_number, page_size)
    return page([AuditEventOut.model_validate(r) for r in rows], total, page_number, page_size)
