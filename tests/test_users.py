"""The signed-in user's own account: /users/me, its password and its deletion (reference §2.1, §3.2)."""

from __future__ import annotations

import uuid

from tests.conftest import error, secret

PASSWORD = secret("Initial-pass-1")
NEW_PASSWORD = secret("Changed-pass-2")


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def signed_in(stack) -> tuple[str, dict, dict[str, str]]:
    return await stack.new_account(PASSWORD)


def assert_error(response, status: int, code: str) -> None:
    failure = error(response, status)
    assert failure["code"] == code and failure["message"]


# --- GET /users/me ----------------------------------------------------------------------------------------


async def test_me_with_bearer_token(stack):
    email, user, headers = await signed_in(stack)
    response = await stack.http.get("/users/me", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["message"] == "ok"
    assert body["data"] == {
        "id": user["id"],
        "email": email,
        "displayName": None,
        "isActive": True,
        "emailVerified": True,
        "role": "user",
        "level": 1,
        "createdAt": user["createdAt"],
    }


async def test_me_with_session_cookie(stack):
    email = new_email()
    await stack.register_verified(email, PASSWORD)
    login = await stack.http.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    secret(login.json()["data"]["token"])
    assert login.cookies["session_token"] == login.json()["data"]["token"]
    # No Authorization header: the client sends back the cookie the login set.
    response = await stack.http.get("/users/me")
    assert response.status_code == 200
    assert response.json()["data"]["email"] == email


async def test_me_without_token_is_missing_token(stack):
    stack.http.cookies.clear()
    assert_error(await stack.http.get("/users/me"), 401, "MISSING_TOKEN")


async def test_me_with_unknown_token_is_invalid_token(stack):
    stack.http.cookies.clear()
    assert_error(await stack.http.get("/users/me", headers=bearer("not-a-real-session-token")), 401, "INVALID_TOKEN")
    stack.http.cookies.set("session_token", "not-a-real-session-token")
    assert_error(await stack.http.get("/users/me"), 401, "INVALID_TOKEN")


# --- PATCH /users/me --------------------------------------------------------------------------------------


async def test_change_display_name(stack):
    email, _, headers = await signed_in(stack)
    response = await stack.http.patch("/users/me", headers=headers, json={"displayName": "Ada Lovelace"})
    assert response.status_code == 200
    assert response.json()["data"]["displayName"] == "Ada Lovelace"
    assert response.json()["data"]["email"] == email
    assert response.json()["data"]["emailVerified"] is True
    me = await stack.http.get("/users/me", headers=headers)
    assert me.json()["data"]["displayName"] == "Ada Lovelace"


async def test_email_change_must_be_verified_again(stack):
    _, _, headers = await signed_in(stack)
    new_address = new_email()
    response = await stack.http.patch("/users/me", headers=headers, json={"email": new_address})
    assert response.status_code == 200
    assert response.json()["data"]["email"] == new_address
    assert response.json()["data"]["emailVerified"] is False

    token = await stack.token_from_mail(new_address)
    verified = await stack.http.post("/auth/verify-email", json={"token": token})
    assert verified.status_code == 200
    assert verified.json()["data"]["emailVerified"] is True
    me = await stack.http.get("/users/me", headers=headers)
    assert me.json()["data"]["email"] == new_address
    assert me.json()["data"]["emailVerified"] is True
    # The new address is the sign-in name now.
    await stack.login(new_address, PASSWORD)


async def test_email_change_to_a_taken_address_is_duplicate_email(stack):
    taken = new_email()
    await stack.register_verified(taken, PASSWORD)
    email, _, headers = await signed_in(stack)
    response = await stack.http.patch("/users/me", headers=headers, json={"email": taken.upper()})
    assert_error(response, 409, "DUPLICATE_EMAIL")
    me = await stack.http.get("/users/me", headers=headers)
    assert me.json()["data"]["email"] == email
    assert me.json()["data"]["emailVerified"] is True


# --- PATCH /users/me/password -----------------------------------------------------------------------------


async def test_password_change_with_wrong_current_password(stack):
    email, _, headers = await signed_in(stack)
    response = await stack.http.patch(
        "/users/me/password",
        headers=headers,
        json={"currentPassword": secret("Wrong-pass-9"), "newPassword": NEW_PASSWORD},
    )
    assert_error(response, 400, "PASSWORD_CHANGE_INVALID")
    await stack.login(email, PASSWORD)


async def test_password_change_to_a_weak_password(stack):
    email, _, headers = await signed_in(stack)
    response = await stack.http.patch(
        "/users/me/password", headers=headers, json={"currentPassword": PASSWORD, "newPassword": secret("alllowercase")}
    )
    assert_error(response, 400, "WEAK_PASSWORD")
    await stack.login(email, PASSWORD)


async def test_password_change_revokes_every_session(stack):
    email, _, headers = await signed_in(stack)
    other_device = await stack.login(email, PASSWORD)
    response = await stack.http.patch(
        "/users/me/password", headers=headers, json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "password updated", "data": {"revokedSessions": 2}}
    for old in (headers, other_device):
        assert_error(await stack.http.get("/users/me", headers=old), 401, "INVALID_TOKEN")
    assert_error(
        await stack.http.post("/auth/login", json={"email": email, "password": PASSWORD}), 401, "INVALID_CREDENTIALS"
    )
    await stack.login(email, NEW_PASSWORD)


async def test_password_change_can_keep_the_current_session(stack):
    email, _, headers = await signed_in(stack)
    other_device = await stack.login(email, PASSWORD)
    response = await stack.http.patch(
        "/users/me/password",
        headers=headers,
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD, "revokeAllSessions": False},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"revokedSessions": 1}
    assert (await stack.http.get("/users/me", headers=headers)).status_code == 200
    assert_error(await stack.http.get("/users/me", headers=other_device), 401, "INVALID_TOKEN")


# --- DELETE /users/me -------------------------------------------------------------------------------------


async def test_delete_me(stack):
    email, _, headers = await signed_in(stack)
    await stack.login(email, PASSWORD)
    response = await stack.http.delete("/users/me", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "account deleted", "data": {"revokedSessions": 2}}
    assert_error(await stack.http.get("/users/me", headers=headers), 401, "INVALID_TOKEN")
    assert_error(
        await stack.http.post("/auth/login", json={"email": email, "password": PASSWORD}), 401, "INVALID_CREDENTIALS"
    )
