"""/admin/*: the first admin from the CLI, user administration, and the audit trail over HTTP and the CLI
(reference §2.1, §3.5)."""

from __future__ import annotations

import json
import uuid

from tests.conftest import data, error, secret

ADMIN_PASSWORD = secret("Admin-pass-1")
PASSWORD = secret("Member-pass-2")


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def cli_json(result) -> dict:
    assert result.exit_code == 0, result.output
    # The test runner echoes password prompts onto stdout; the JSON document follows them.
    return json.loads(result.stdout[result.stdout.index("{") :])


async def create_admin(stack) -> tuple[dict, dict[str, str]]:
    email = new_email("admin")
    result = await stack.cli(
        "users", "create", "--email", email, "--admin", input=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"
    )
    admin = cli_json(result)
    return admin, await stack.login(email, ADMIN_PASSWORD)


async def member(stack) -> tuple[str, dict, dict[str, str]]:
    return await stack.new_account(PASSWORD)


def assert_error(response, status: int, code: str) -> None:
    failure = error(response, status)
    assert failure["code"] == code and failure["message"]


# --- the first admin --------------------------------------------------------------------------------------


async def test_cli_creates_the_first_admin(stack):
    email = new_email("admin")
    result = await stack.cli(
        "users", "create", "--email", email, "--admin", input=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"
    )
    created = cli_json(result)
    assert ADMIN_PASSWORD not in result.output
    assert {k: v for k, v in created.items() if k not in ("id", "created_at")} == {
        "email": email,
        "display_name": None,
        "is_active": True,
        "email_verified": True,
        "role": "admin",
        "level": 1,
    }
    headers = await stack.login(email, ADMIN_PASSWORD)
    me = data(await stack.http.get("/users/me", headers=headers))
    assert me["id"] == created["id"] and me["role"] == "admin"


async def test_cli_create_needs_matching_confirmation(stack):
    email = new_email("admin")
    other = secret("Other-pass-3")
    result = await stack.cli("users", "create", "--email", email, "--admin", input=f"{ADMIN_PASSWORD}\n{other}\n")
    assert result.exit_code != 0
    assert_error(
        await stack.http.post("/auth/login", json={"email": email, "password": ADMIN_PASSWORD}),
        401,
        "INVALID_CREDENTIALS",
    )


async def test_cli_create_rejects_a_weak_password(stack):
    weak = secret("weakpassword")
    result = await stack.cli("users", "create", "--email", new_email("admin"), "--admin", input=f"{weak}\n{weak}\n")
    assert result.exit_code == 1
    assert json.loads(result.stderr.strip().splitlines()[-1])["error"]["code"] == "WEAK_PASSWORD"


# --- access -----------------------------------------------------------------------------------------------


async def test_every_admin_route_requires_the_admin_role(stack):
    _, user, headers = await member(stack)
    target = f"/admin/users/{user['id']}"
    calls = [
        ("POST", "/admin/users", {"email": new_email(), "password": PASSWORD}),
        ("GET", "/admin/users", None),
        ("GET", target, None),
        ("PATCH", target, {"level": 2}),
        ("DELETE", target, None),
        ("GET", "/admin/audit-events", None),
    ]
    for method, path, body in calls:
        response = await stack.http.request(method, path, headers=headers, json=body)
        assert_error(response, 403, "ADMIN_REQUIRED")
    assert data(await stack.http.get("/users/me", headers=headers))["level"] == 1


async def test_admin_routes_without_a_session(stack):
    stack.http.cookies.clear()
    assert_error(await stack.http.get("/admin/users"), 401, "MISSING_TOKEN")
    assert_error(
        await stack.http.get("/admin/audit-events", headers={"Authorization": "Bearer nope-not-a-token"}),
        401,
        "INVALID_TOKEN",
    )


# --- users ------------------------------------------------------------------------------------------------


async def test_list_users_paged_and_filtered(stack):
    admin, headers = await create_admin(stack)
    _, user, _ = await member(stack)
    listed = data(await stack.http.get("/admin/users", headers=headers))
    assert listed["total"] == 2 and listed["page"] == 1 and listed["pageSize"] == 20
    assert {u["id"] for u in listed["items"]} == {admin["id"], user["id"]}
    assert set(listed["items"][0]) == {
        "id",
        "email",
        "displayName",
        "isActive",
        "emailVerified",
        "role",
        "level",
        "createdAt",
    }

    second_page = data(await stack.http.get("/admin/users", headers=headers, params={"page": 2, "pageSize": 1}))
    assert second_page["total"] == 2 and second_page["page"] == 2 and second_page["pageSize"] == 1
    assert len(second_page["items"]) == 1

    assert data(await stack.http.get("/admin/users", headers=headers, params={"status": "inactive"}))["items"] == []
    data(await stack.http.patch(f"/admin/users/{user['id']}", headers=headers, json={"isActive": False}))
    inactive = data(await stack.http.get("/admin/users", headers=headers, params={"status": "inactive"}))
    assert inactive["total"] == 1 and [u["id"] for u in inactive["items"]] == [user["id"]]
    active = data(await stack.http.get("/admin/users", headers=headers, params={"status": "active"}))
    assert [u["id"] for u in active["items"]] == [admin["id"]]


async def test_list_users_search_matches_part_of_the_email_literally(stack):
    admin, headers = await create_admin(stack)
    email, user, _ = await member(stack)
    found = data(await stack.http.get("/admin/users", headers=headers, params={"search": email.split("@")[0].upper()}))
    assert [u["id"] for u in found["items"]] == [user["id"]]
    for wildcard in ("_", "%"):
        assert data(await stack.http.get("/admin/users", headers=headers, params={"search": wildcard}))["total"] == 0


async def test_admin_creates_a_ready_user(stack):
    _, headers = await create_admin(stack)
    email = new_email()
    response = await stack.http.post(
        "/admin/users", headers=headers, json={"email": email, "password": PASSWORD, "displayName": "Grace", "level": 2}
    )
    created = data(response, 201)
    assert response.json()["message"] == "ok"
    assert {k: v for k, v in created.items() if k not in ("id", "createdAt")} == {
        "email": email,
        "displayName": "Grace",
        "isActive": True,
        "emailVerified": True,
        "role": "user",
        "level": 2,
    }
    assert data(await stack.http.get(f"/admin/users/{created['id']}", headers=headers)) == created
    await stack.login(email, PASSWORD)
    again = await stack.http.post("/admin/users", headers=headers, json={"email": email, "password": PASSWORD})
    assert_error(again, 409, "DUPLICATE_EMAIL")


async def test_admin_create_rejects_a_weak_password(stack):
    _, headers = await create_admin(stack)
    response = await stack.http.post(
        "/admin/users", headers=headers, json={"email": new_email(), "password": secret("short1A")}
    )
    assert_error(response, 400, "WEAK_PASSWORD")


async def test_disabling_a_user_revokes_their_sessions(stack):
    _, headers = await create_admin(stack)
    email, user, user_headers = await member(stack)
    updated = data(await stack.http.patch(f"/admin/users/{user['id']}", headers=headers, json={"isActive": False}))
    assert updated["isActive"] is False
    assert_error(await stack.http.get("/users/me", headers=user_headers), 401, "INVALID_TOKEN")
    assert_error(
        await stack.http.post("/auth/login", json={"email": email, "password": PASSWORD}), 403, "USER_DISABLED"
    )

    data(await stack.http.patch(f"/admin/users/{user['id']}", headers=headers, json={"isActive": True}))
    await stack.login(email, PASSWORD)


async def test_update_role_level_and_name(stack):
    _, headers = await create_admin(stack)
    _, user, user_headers = await member(stack)
    changes = {"displayName": "Promoted", "role": "admin", "level": 2}
    updated = data(await stack.http.patch(f"/admin/users/{user['id']}", headers=headers, json=changes))
    assert (updated["displayName"], updated["role"], updated["level"]) == ("Promoted", "admin", 2)
    # The promoted user's existing session now passes the admin check.
    assert data(await stack.http.get("/admin/users", headers=user_headers))["total"] == 2


async def test_invalid_level_and_role(stack):
    _, headers = await create_admin(stack)
    _, user, _ = await member(stack)
    for level in (0, 3):
        assert_error(
            await stack.http.patch(f"/admin/users/{user['id']}", headers=headers, json={"level": level}),
            400,
            "INVALID_LEVEL",
        )
    assert_error(
        await stack.http.patch(f"/admin/users/{user['id']}", headers=headers, json={"role": "root"}),
        400,
        "INVALID_ROLE",
    )
    assert_error(
        await stack.http.post(
            "/admin/users", headers=headers, json={"email": new_email(), "password": PASSWORD, "level": 9}
        ),
        400,
        "INVALID_LEVEL",
    )
    assert data(await stack.http.get(f"/admin/users/{user['id']}", headers=headers))["level"] == 1


async def test_admin_cannot_lock_themselves_out(stack):
    admin, headers = await create_admin(stack)
    me = f"/admin/users/{admin['id']}"
    assert_error(await stack.http.patch(me, headers=headers, json={"isActive": False}), 409, "ADMIN_SELF_LOCKOUT")
    assert_error(await stack.http.patch(me, headers=headers, json={"role": "user"}), 409, "ADMIN_SELF_LOCKOUT")
    assert_error(await stack.http.delete(me, headers=headers), 409, "ADMIN_SELF_LOCKOUT")
    still = data(await stack.http.get(me, headers=headers))
    assert still["isActive"] is True and still["role"] == "admin"
    # Harmless self-edits are allowed.
    assert data(await stack.http.patch(me, headers=headers, json={"displayName": "Root"}))["displayName"] == "Root"


async def test_unknown_user_id(stack):
    _, headers = await create_admin(stack)
    missing = f"/admin/users/{uuid.uuid4()}"
    assert_error(await stack.http.get(missing, headers=headers), 404, "USER_NOT_FOUND")
    assert_error(await stack.http.patch(missing, headers=headers, json={"displayName": "x"}), 404, "USER_NOT_FOUND")
    assert_error(await stack.http.delete(missing, headers=headers), 404, "USER_NOT_FOUND")


async def test_delete_user(stack):
    _, headers = await create_admin(stack)
    email, user, user_headers = await member(stack)
    await stack.login(email, PASSWORD)
    response = await stack.http.delete(f"/admin/users/{user['id']}", headers=headers)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "user deleted",
        "data": {"userId": user["id"], "revokedSessions": 2},
    }
    assert_error(await stack.http.get("/users/me", headers=user_headers), 401, "INVALID_TOKEN")
    assert_error(await stack.http.get(f"/admin/users/{user['id']}", headers=headers), 404, "USER_NOT_FOUND")
    assert_error(
        await stack.http.post("/auth/login", json={"email": email, "password": PASSWORD}), 401, "INVALID_CREDENTIALS"
    )


# --- audit trail ------------------------------------------------------------------------------------------


async def test_audit_events_record_auth_and_admin_actions_without_plaintext(stack):
    admin, headers = await create_admin(stack)
    email, user, _ = await member(stack)
    data(await stack.http.patch(f"/admin/users/{user['id']}", headers=headers, json={"level": 2}))

    everything = await stack.http.get("/admin/audit-events", headers=headers, params={"pageSize": 200})
    events = data(everything)
    assert events["page"] == 1 and events["pageSize"] == 200 and events["total"] == len(events["items"])
    assert {(e["event"], e["outcome"]) for e in events["items"]} >= {
        ("admin_user_create", "admin"),
        ("register", "created"),
        ("verify_email", "verified"),
        ("login", "success"),
        ("admin_user_update", "updated:level"),
    }
    for plaintext in (email, admin["email"], PASSWORD, ADMIN_PASSWORD):
        assert plaintext not in everything.text

    logins = data(await stack.http.get("/admin/audit-events", headers=headers, params={"event": "login"}))["items"]
    assert {e["userId"] for e in logins} == {admin["id"], user["id"]}
    assert all(e["event"] == "login" for e in logins)
    assert set(logins[0]) == {
        "id",
        "event",
        "outcome",
        "userId",
        "emailDigest",
        "actorId",
        "clientAddress",
        "userAgent",
        "requestId",
        "createdAt",
    }

    mine = data(await stack.http.get("/admin/audit-events", headers=headers, params={"userId": user["id"]}))["items"]
    assert {e["event"] for e in mine} == {"register", "verify_email", "login", "admin_user_update"}
    update = next(e for e in mine if e["event"] == "admin_user_update")
    assert update["actorId"] == admin["id"]

    by_email = data(
        await stack.http.get("/admin/audit-events", headers=headers, params={"email": email, "event": "register"})
    )
    assert [e["userId"] for e in by_email["items"]] == [user["id"]]
    assert by_email["items"][0]["emailDigest"] != email and len(by_email["items"][0]["emailDigest"]) == 64


# --- the operator's CLI -----------------------------------------------------------------------------------


async def test_cli_users_list_is_snake_case_json(stack):
    admin, _ = await create_admin(stack)
    email, user, _ = await member(stack)
    listed = cli_json(await stack.cli("users", "list"))
    assert listed["total"] == 2 and listed["page"] == 1 and listed["page_size"] == 50
    assert {u["email"] for u in listed["items"]} == {admin["email"], email}
    assert set(listed["items"][0]) == {
        "id",
        "email",
        "display_name",
        "is_active",
        "email_verified",
        "role",
        "level",
        "created_at",
    }


async def test_cli_audit_list_filters_by_event(stack):
    await create_admin(stack)
    _, user, _ = await member(stack)
    listed = cli_json(await stack.cli("audit", "list", "--event", "login", "--user-id", user["id"]))
    assert listed["total"] == 1 and listed["page_size"] == 50
    (event,) = listed["items"]
    assert (event["event"], event["outcome"], event["user_id"]) == ("login", "success", user["id"])
    assert "email_digest" in event and "emailDigest" not in event


async def test_cli_table_output(stack):
    admin, _ = await create_admin(stack)
    result = await stack.cli("--table", "users", "list")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.strip().splitlines()
    assert header.split() == [
        "ID",
        "EMAIL",
        "DISPLAY_NAME",
        "IS_ACTIVE",
        "EMAIL_VERIFIED",
        "ROLE",
        "LEVEL",
        "CREATED_AT",
    ]
    assert row.split()[:2] == [admin["id"], admin["email"]]
    assert "admin" in row.split()


async def test_audit_events_filtered_by_time_window(stack):
    _, headers = await create_admin(stack)
    # A time without a zone is read as UTC, like every stored time.
    past = data(await stack.http.get("/admin/audit-events", headers=headers, params={"since": "2000-01-01T00:00:00"}))
    assert past["total"] >= 1
    future = data(
        await stack.http.get("/admin/audit-events", headers=headers, params={"since": "2999-01-01T00:00:00Z"})
    )
    assert future["total"] == 0
    none_before = data(await stack.http.get("/admin/audit-events", headers=headers, params={"until": "2000-01-01"}))
    assert none_before["total"] == 0


async def test_cli_create_refuses_an_address_that_could_not_sign_in(stack):
    result = await stack.cli(
        "users", "create", "--email", "ops@quantpoly.local", input=f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"
    )
    assert result.exit_code == 1 and "INVALID_EMAIL" in result.stderr
