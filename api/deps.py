"""Request dependencies: the platform, the caller's identity and the caller's session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from core.logging import request_id_var
from db.models import AuthSession, User
from services import sessions
from services.platform import ClientInfo, Platform
from services.users import require_admin

SESSION_COOKIE = "session_token"
# Far past any page a person reads, and small enough that the row offset stays inside a database integer.
MAX_PAGE = 100_000
MAX_PAGE_SIZE = 200


# Dependencies that do no I/O are coroutines all the same: FastAPI runs a plain function in a thread of its
# pool, a hand-off between threads on every request.
async def get_platform(request: Request) -> Platform:
    return request.app.state.platform


async def client_info(request: Request) -> ClientInfo:
    return ClientInfo(
        address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=request_id_var.get(),
    )


# Both schemes are optional on their own (auto_error=False): the session is looked for in the Bearer header
# first, then in the cookie, and a caller with neither gets our 401 envelope, not FastAPI's.
bearer_scheme = HTTPBearer(auto_error=False, description="The token from POST /auth/login")
cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="The HttpOnly cookie POST /auth/login sets (browsers)"
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
CookieDep = Annotated[str | None, Depends(cookie_scheme)]


def session_token(bearer: HTTPAuthorizationCredentials | None, cookie: str | None) -> str | None:
    return bearer.credentials if bearer else cookie or None


@dataclass(frozen=True)
class Caller:
    user: User
    session: AuthSession


async def current_caller(
    platform: Annotated[Platform, Depends(get_platform)], bearer: BearerDep, cookie: CookieDep
) -> Caller:
    user, session = await sessions.authenticate(platform, session_token(bearer, cookie))
    return Caller(user=user, session=session)


async def caller_of(request: Request) -> Caller:
    """The caller of a request outside dependency injection (the validation error handler)."""
    return await current_caller(await get_platform(request), await bearer_scheme(request), await cookie_scheme(request))


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
