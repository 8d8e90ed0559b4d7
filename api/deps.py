"""Request dependencies: the platform, the caller's identity and the caller's session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from core.logging import request_id_var
from db.models import AuthSession, User
from services import sessions
from services.platform import ClientInfo, Platform
from services.users import require_admin

SESSION_COOKIE = "session_token"
# Far past any page a person reads, and small enough that the row offset stays inside a database integer.
MAX_PAGE = 100_000
MAX_PAGE_SIZE = 200


def get_platform(request: Request) -> Platform:
    return request.app.state.platform


def client_info(request: Request) -> ClientInfo:
    return ClientInfo(
        address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=request_id_var.get(),
    )


def bearer_or_cookie(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


@dataclass(frozen=True)
class Caller:
    user: User
    session: AuthSession


async def current_caller(request: Request, platform: Annotated[Platform, Depends(get_platform)]) -> Caller:
    user, session = await sessions.authenticate(platform, bearer_or_cookie(request))
    return Caller(user=user, session=session)


async def current_user(caller: Annotated[Caller, Depends(current_caller)]) -> User:
    return caller.user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    require_admin(user)
    return user


PlatformDep = Annotated[Platform, Depends(get_platform)]
ClientDep = Annotated[ClientInfo, Depends(client_info)]
CallerDep = Annotated[Caller, Depends(current_caller)]
CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, alias="page")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, alias="pageSize")]
