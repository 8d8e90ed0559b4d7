"""/auth/*: registration, verification, sign-in and password recovery."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import SESSION_COOKIE, CallerDep, ClientDep, PlatformDep
from api.envelope import ok
from api.schemas import Credentials, EmailIn, LoginOut, ResetConfirmIn, TokenIn
from core.errors import Gone
from services import auth, password_reset
from services.platform import Platform
from services.views import UserOut

router = APIRouter(prefix="/auth", tags=["auth"])

# One text for every reset request, whatever the address: nothing in it tells accounts apart.
RESET_REQUESTED = "If an account exists for this email, a password reset link has been sent to it."
VERIFICATION_REQUESTED = "If this email belongs to an unverified account, a new verification link has been sent."


def _set_session_cookie(response: JSONResponse, platform: Platform, token: str) -> None:
    s = platform.settings
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=s.session_ttl_seconds,
        httponly=True,
        secure=s.secure_cookies,
        samesite=s.cookie_samesite,
        domain=s.cookie_domain,
        path="/",
    )


@router.post("/register", status_code=201)
async def register(body: Credentials, platform: PlatformDep, client: ClientDep):
    user = await auth.register(platform, body.email, body.password, client)
    return ok(UserOut.model_validate(user), message="registered; check your mail to verify the address", status=201)


@router.post("/login")
async def login(body: Credentials, platform: PlatformDep, client: ClientDep):
    issued = await auth.login(platform, body.email, body.password, client)
    data = LoginOut(token=issued.token, expires_at=issued.session.expires_at, user=UserOut.model_validate(issued.user))
    response = ok(data)
    _set_session_cookie(response, platform, issued.token)
    return response


@router.post("/verify-email")
async def verify_email(body: TokenIn, platform: PlatformDep, client: ClientDep):
    user = await auth.verify_email(platform, body.token, client)
    return ok(UserOut.model_validate(user), message="email verified")


@router.post("/verify-email/resend")
async def resend_verification(body: EmailIn, platform: PlatformDep, client: ClientDep):
    await auth.request_verification_mail(platform, body.email, client)
    return ok(message=VERIFICATION_REQUESTED)


@router.post("/password-reset/request")
async def request_password_reset(body: EmailIn, platform: PlatformDep, client: ClientDep):
    await password_reset.request_reset(platform, body.email, client)
    return ok(message=RESET_REQUESTED)


@router.post("/password-reset/confirm")
async def confirm_password_reset(body: ResetConfirmIn, platform: PlatformDep, client: ClientDep):
    revoked = await password_reset.confirm_reset(platform, body.token, body.new_password, client)
    return ok({"revokedSessions": revoked}, message="password updated; sign in with the new password")


@router.get("/me")
async def removed_me():
    raise Gone("this route was removed; use GET /users/me", code="ROUTE_REMOVED")


@router.post("/logout")
async def logout(caller: CallerDep, platform: PlatformDep, client: ClientDep):
    await auth.logout(platform, caller.user, caller.session.id, client)
    response = ok(message="signed out")
    response.delete_cookie(SESSION_COOKIE, path="/", domain=platform.settings.cookie_domain)
    return response
