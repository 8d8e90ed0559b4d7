"""Registration, verification by mailed token, sign-in, sessions and sign-in throttling, over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import data, error, secret

PASSWORD = "Correct9Horse"


def email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def test_register_mail_verify_login_me_logout(stack):
    address = email()
    registered = await stack.http.post("/auth/register", json={"email": address, "password": secret(PASSWORD)})
    assert registered.status_code == 201
    user = registered.json()["data"]
    assert user["email"] == address and user["emailVerified"] is False and user["role"] == "user"

    before = await stack.http.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert before.status_code == 403 and before.json()["error"]["code"] == "EMAIL_NOT_VERIFIED"

    token = await stack.token_from_mail(address)
    assert len(stack.mails_to(address)) == 1
    verified = await stack.http.post("/auth/verify-email", json={"token": token})
    assert verified.status_code == 200 and verified.json()["data"]["emailVerified"] is True
    again = await stack.http.post("/auth/verify-email", json={"token": token})
    assert again.status_code == 400 and again.json()["error"]["code"] == "INVALID_VERIFICATION_TOKEN"

    login = await stack.http.post("/auth/login", json={"email": address.upper(), "password": PASSWORD})
    assert login.status_code == 200
    session_token = secret(login.json()["data"]["token"])
    cookie = login.headers["set-cookie"]
    assert "session_token=" in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    headers = {"Authorization": f"Bearer {session_token}"}
    me = await stack.http.get("/users/me", headers=headers)
    assert me.status_code == 200 and me.json()["data"]["id"] == user["id"]

    out = await stack.http.post("/auth/logout", headers=headers)
    assert out.status_code == 200
    after = await stack.http.get("/users/me", headers=headers)
    assert after.status_code == 401 and after.json()["error"]["code"] == "INVALID_TOKEN"


async def test_cookie_session_and_bearer_precedence(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    login = await stack.http.post("/auth/login", json={"email": address, "password": PASSWORD})
    secret(login.json()["data"]["token"])
    # httpx kept the HttpOnly cookie: it authenticates on its own.
    assert (await stack.http.get("/users/me")).status_code == 200
    # A Bearer header is read first, even when a valid cookie is present.
    bad = await stack.http.get("/users/me", headers={"Authorization": "Bearer not-a-real-token"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "INVALID_TOKEN"
    await stack.http.post("/auth/logout")
    stack.http.cookies.clear()
    missing = await stack.http.get("/users/me")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "MISSING_TOKEN"


async def test_registration_rules(stack):
    address = email()
    weak = await stack.http.post("/auth/register", json={"email": address, "password": "weakpass"})
    assert weak.status_code == 400 and weak.json()["error"]["code"] == "WEAK_PASSWORD"
    assert "digit" not in weak.json()["error"]["message"]  # the policy is not disclosed
    await stack.http.post("/auth/register", json={"email": address, "password": secret(PASSWORD)})
    duplicate = await stack.http.post("/auth/register", json={"email": address.upper(), "password": PASSWORD})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "DUPLICATE_EMAIL"


async def test_resend_is_uniform_and_supersedes_the_old_link(stack):
    address = email()
    await stack.http.post("/auth/register", json={"email": address, "password": secret(PASSWORD)})
    first = await stack.token_from_mail(address)
    known = await stack.http.post("/auth/verify-email/resend", json={"email": address})
    unknown = await stack.http.post("/auth/verify-email/resend", json={"email": email()})
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content
    second = await stack.token_from_mail(address, index=1)
    old = await stack.http.post("/auth/verify-email", json={"token": first})
    assert old.status_code == 400
    assert (await stack.http.post("/auth/verify-email", json={"token": second})).status_code == 200


async def test_auth_me_is_gone(stack):
    response = await stack.http.get("/auth/me")
    assert response.status_code == 410 and response.json()["error"]["code"] == "ROUTE_REMOVED"


@pytest.mark.parametrize("known", [True, False], ids=["known", "unknown"])
async def test_login_throttled_after_repeated_failures(stack, known):
    address = email()
    if known:
        await stack.register_verified(address, PASSWORD)
    limit = stack.settings.login_max_failures
    for _ in range(limit):
        failed = await stack.http.post("/auth/login", json={"email": address, "password": "Wrong1Password"})
        assert failed.status_code == 401 and failed.json()["error"]["code"] == "INVALID_CREDENTIALS"
    throttled = await stack.http.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "LOGIN_THROTTLED"
    assert 0 < int(throttled.headers["retry-after"]) <= stack.settings.login_failure_window_seconds
    if known:
        # A throttled account can still recover: the reset lifts the throttle.
        await stack.http.post("/auth/password-reset/request", json={"email": address})
        token = await stack.token_from_mail(address, index=1)
        new_password = secret("Another7Password")
        confirm = await stack.http.post(
            "/auth/password-reset/confirm", json={"token": token, "newPassword": new_password}
        )
        assert confirm.status_code == 200
        assert (
            await stack.http.post("/auth/login", json={"email": address, "password": new_password})
        ).status_code == 200


async def test_parallel_guesses_cannot_slip_past_the_throttle(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    limit = stack.settings.login_max_failures
    answers = await asyncio.gather(
        *(stack.http.post("/auth/login", json={"email": address, "password": f"Guess{i}Password"}) for i in range(20))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * limit + [429] * (20 - limit)


async def test_password_change_guesses_are_throttled(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    headers = await stack.login(address, PASSWORD)
    body = {"currentPassword": "Wrong1Guess", "newPassword": "Another7Password"}
    for _ in range(stack.settings.login_max_failures):
        wrong = await stack.http.patch("/users/me/password", json=body, headers=headers)
        assert wrong.json()["error"]["code"] == "PASSWORD_CHANGE_INVALID"
    throttled = await stack.http.patch(
        "/users/me/password", json={**body, "currentPassword": PASSWORD}, headers=headers
    )
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "PASSWORD_CHANGE_THROTTLED"


def from_address(stack, address: str) -> httpx.AsyncClient:
    """The same API, reached from another client address."""
    transport = httpx.ASGITransport(app=stack.http._transport.app, client=(address, 4444))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


async def test_a_strangers_failures_do_not_lock_the_owner_out_of_another_address(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    for _ in range(stack.settings.login_max_failures):
        failed = await stack.http.post("/auth/login", json={"email": address, "password": "Wrong1Password"})
        assert error(failed, 401)["code"] == "INVALID_CREDENTIALS"
    # The stranger's address is throttled, even with the right password ...
    throttled = await stack.http.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert error(throttled, 429)["code"] == "LOGIN_THROTTLED" and int(throttled.headers["retry-after"]) > 0
    # ... while the owner, elsewhere, signs in.
    async with from_address(stack, "198.51.100.23") as owner:
        signed_in = await owner.post("/auth/login", json={"email": address, "password": PASSWORD})
        secret(data(signed_in)["token"])


@pytest.mark.parametrize("known", [True, False], ids=["known", "unknown"])
async def test_failures_from_many_addresses_reach_the_per_account_ceiling(stack, known):
    address = email()
    if known:
        await stack.register_verified(address, PASSWORD)
    stack.settings.login_max_failures_per_account = 7
    wrong = {"email": address, "password": "Wrong1Password"}
    answers = []
    for client_address in ("198.51.100.1", "198.51.100.2"):
        async with from_address(stack, client_address) as client:
            answers += [(await client.post("/auth/login", json=wrong)).status_code for _ in range(5)]
    # Five from the first address; the second is stopped by the account's ceiling, not its own limit.
    assert answers == [401] * 7 + [429] * 3
    async with from_address(stack, "198.51.100.3") as fresh:
        throttled = await fresh.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert error(throttled, 429)["code"] == "LOGIN_THROTTLED"
    assert 0 < int(throttled.headers["retry-after"]) <= stack.settings.login_failure_window_seconds


async def test_the_mailed_verification_link_verifies_and_opens_the_sign_in_page(stack):
    address = email()
    await stack.http.post("/auth/register", json={"email": address, "password": secret(PASSWORD)})
    body = (await stack.wait_for_mail(address))[0].get_body(("plain",)).get_content()
    assert f"{stack.settings.public_api_url}/auth/verify-email/confirm?token=" in body
    token = await stack.token_from_mail(address)

    opened = await stack.http.get("/auth/verify-email/confirm", params={"token": token})
    assert opened.status_code == 303
    assert opened.headers["location"] == f"http://app.test/auth/login?{urlencode({'email': address})}"
    await stack.login(address, PASSWORD)

    invalid = "http://app.test/auth/login?verifyError=invalid"
    reused = await stack.http.get("/auth/verify-email/confirm", params={"token": token})
    assert reused.status_code == 303 and reused.headers["location"] == invalid
    forged = await stack.http.get("/auth/verify-email/confirm", params={"token": "x" * 43})
    assert forged.status_code == 303 and forged.headers["location"] == invalid


async def test_an_email_alone_never_verifies_it_asks_for_a_new_link(stack):
    address = email()
    await stack.http.post("/auth/register", json={"email": address, "password": secret(PASSWORD)})
    first = await stack.token_from_mail(address)
    stack.settings.reset_per_email_limit = 2

    page = await stack.http.post("/auth/verify-email", json={"email": address})
    before = await stack.http.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert error(before, 403)["code"] == "EMAIL_NOT_VERIFIED"
    # The page's request is a resend: a new link that supersedes the first ...
    await stack.token_from_mail(address, index=1)
    assert error(await stack.http.post("/auth/verify-email", json={"token": first}), 400)["code"] == (
        "INVALID_VERIFICATION_TOKEN"
    )
    resend = await stack.http.post("/auth/verify-email/resend", json={"email": address})
    newest = await stack.token_from_mail(address, index=2)
    unknown = await stack.http.post("/auth/verify-email", json={"email": email()})
    assert page.status_code == resend.status_code == unknown.status_code == 200
    assert page.content == resend.content == unknown.content
    assert "data" not in page.json()
    # ... counted under the resend's limits: a third request by email sends nothing.
    await stack.http.post("/auth/verify-email", json={"email": address})
    await asyncio.sleep(1)
    assert len(stack.mails_to(address)) == 3
    assert data(await stack.http.post("/auth/verify-email", json={"token": newest}))["emailVerified"] is True
    assert error(await stack.http.post("/auth/verify-email", json={}), 422)["code"] == "VALIDATION_ERROR"
