"""/auth/*: registration, verification, sign-in and password recovery."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Query
from fastapi.responses import JSONResponse, RedirectResponse

from api.deps import SESSION_COOKIE, CallerDep, ClientDep, PlatformDep
from api.envelope import Ack, Envelope, ErrorEnvelope, errors, ok
from api.routing import api_router
from core.errors import AppError, Gone
from services import auth, password_reset
from services.platform import Platform
from services.schemas.auth import Credentials, EmailIn, LoginOut, ResetConfirmIn, VerifyEmailIn
from services.schemas.users import RevokedOut, UserOut

router = api_router(prefix="/auth", tags=["auth"])

# One text for every reset request, whatever the address: nothing in it tells accounts apart.
RESET_REQUESTED = "If an account exists for this email, a password reset link has been sent to it."
LOGIN_CODES = {401: "INVALID_CREDENTIALS", 403: "EMAIL_NOT_VERIFIED", 429: "LOGIN_THROTTLED"}
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


@router.post(
    "/register",
    status_code=201,
    response_model=Envelope[UserOut],
    responses=errors(400, 409, 429, codes={400: "WEAK_PASSWORD", 409: "DUPLICATE_EMAIL"}),
)
async def register(body: Credentials, platform: PlatformDep, client: ClientDep):
    user = await auth.register(platform, body.email, body.password, client)
    return ok(UserOut.model_validate(user), message="registered; check your mail to verify the address", status=201)


@router.post(
    "/login",
    response_model=Envelope[LoginOut],
    responses=errors(401, 403, 429, codes=LOGIN_CODES),
)
async def login(body: Credentials, platform: PlatformDep, client: ClientDep):
    issued = await auth.login(platform, body.email, body.password, client)
    data = LoginOut(token=issued.token, expires_at=issued.session.expires_at, user=UserOut.model_validate(issued.user))
    response = ok(data)
    _set_session_cookie(response, platform, issued.token)
    return response


@router.post(
    "/verify-email",
    response_model=Envelope[UserOut] | Ack,
    responses=errors(400, 429, codes={400: "INVALID_VERIFICATION_TOKEN"}),
)
async def verify_email(body: VerifyEmailIn, platform: PlatformDep, client: ClientDep):
    if body.token is None:
        assert body.email is not None  # VerifyEmailIn requires a token or an email
        # Answered exactly as a resend, under the same limits: the caller cannot tell the two apart.
        await auth.request_verification_mail(platform, body.email, client)
        return ok(message=VERIFICATION_REQUESTED)
    user = await auth.verify_email(platform, body.token, client)
    return ok(UserOut.model_validate(user), message="email verified")


# The link carried a secret: the answer is neither cached nor passed on as a referrer.
_LINK_ANSWER_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@router.get(
    "/verify-email/confirm",
    status_code=303,
    response_class=RedirectResponse,
    response_description="To the sign-in page, with the address or with verifyError=invalid",
)
async def confirm_verification_link(
    platform: PlatformDep, client: ClientDep, token: str = Query(min_length=1, max_length=512)
):
    """The mailed link: verify, then send the browser to the front end's sign-in page (with the address
    filled in), or to the same page with an error flag that says nothing about any account."""
    sign_in = platform.settings.public_app_url.rstrip("/") + platform.settings.sign_in_path
    try:
        user = await auth.verify_email(platform, token, client)
    except AppError:
        query = {"verifyError": "invalid"}
    else:
        query = {"email": user.email}
    return RedirectResponse(f"{sign_in}?{urlencode(query)}", status_code=303, headers=_LINK_ANSWER_HEADERS)


@router.post("/verify-email/resend", response_model=Ack, responses=errors(429))
async def resend_verification(body: EmailIn, platform: PlatformDep, client: ClientDep):
    await auth.request_verification_mail(platform, body.email, client)
    return ok(message=VERIFICATION_REQUESTED)


@router.post("/password-reset/request", response_model=Ack, responses=errors(429))
async def request_password_reset(body: EmailIn, platform: PlatformDep, client: ClientDep):
    await password_reset.request_reset(platform, body.email, client)
    return ok(message=RESET_REQUESTED)


@router.post(
    "/password-reset/confirm",
    response_model=Envelope[RevokedOut],
    responses=errors(400, codes={400: "INVALID_RESET_TOKEN"}),
)
async def confirm_password_reset(body: ResetConfirmIn, platform: PlatformDep, client: ClientDep):
    revoked = await password_reset.confirm_reset(platform, body.token, body.new_password, client)
    return ok(RevokedOut(revoked_sessions=revoked), message="password updated; sign in with the new password")


@router.get(
    "/me",
    status_code=410,
    response_model=ErrorEnvelope,
    response_description="Always: this route was removed; use GET /users/me",
)
async def removed_me():
    raise Gone("this route was removed; use GET /users/me", code="ROUTE_REMOVED")


@router.post("/logout", response_model=Ack)
async def logout(caller: CallerDep, platform: PlatformDep, client: ClientDep):
    await auth.logout(platform, caller.user, caller.session.id, client)
    response = ok(message="signed out")
    response.delete_cookie(SESSION_COOKIE, path="/", domain=platform.settings.cookie_domain)
    return response
