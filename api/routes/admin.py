"""/admin/*: user administration and the auth audit trail (role ``admin``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import Query

from api.deps import AdminUser, ClientDep, PageNumber, PageSize, PlatformDep
from api.envelope import ok, page
from api.routing import api_router
from api.schemas import AdminCreateUserIn, AdminDeletedOut, AdminUpdateUserIn
from services import audit, users
from services.views import AuditEventOut, UserOut

router = api_router(prefix="/admin", tags=["admin"])


@router.post("/users", status_code=201)
async def create_user(body: AdminCreateUserIn, admin: AdminUser, platform: PlatformDep, client: ClientDep):
    changes = users.UserChanges(**body.model_dump(exclude={"password"}))
    user = await users.admin_create(platform, admin, client, body.password, changes)
    return ok(UserOut.model_validate(user), status=201)


@router.get("/users")
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


@router.get("/users/{user_id}")
async def get_user(user_id: str, admin: AdminUser, platform: PlatformDep):
    return ok(UserOut.model_validate(await users.admin_get(platform, admin, user_id)))


@router.patch("/users/{user_id}")
async def update_user(
    user_id: str, body: AdminUpdateUserIn, admin: AdminUser, platform: PlatformDep, client: ClientDep
):
    changes = users.UserChanges(**body.model_dump(exclude_unset=True))
    return ok(UserOut.model_validate(await users.admin_update(platform, admin, client, user_id, changes)))


@router.delete("/users/{user_id}")
async def delete_user(user_id: str, admin: AdminUser, platform: PlatformDep, client: ClientDep):
    revoked = await users.admin_delete(platform, admin, client, user_id)
    return ok(AdminDeletedOut(user_id=user_id, revoked_sessions=revoked), message="user deleted")


@router.get("/audit-events")
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
