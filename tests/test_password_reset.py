"""Password recovery (gap P0-1) through HTTP and the CLI: uniform answers, one mail, single use,
sessions revoked, limits that survive a restart, and the audit trail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import event, select

from core.temporal import KIND, SEARCH_ATTRIBUTES
from db.base import utcnow
from db.engine import Database
from db.models import AuthToken
from tests.conftest import open_stack, secret

PASSWORD = "Original1Password"
NEW_PASSWORD = "Replaced2Password"


def email() -> str:
    return f"reset-{uuid.uuid4().hex[:10]}@example.com"


def reset_mails(stack, address: str):
    return [m for m in stack.mails_to(address) if m["Subject"] == "Reset your QuantPoly password"]


async def request_reset(stack, address: str):
    return await stack.http.post("/auth/password-reset/request", json={"email": address})


async def confirm(stack, token: str, password: str = NEW_PASSWORD):
    return await stack.http.post("/auth/password-reset/confirm", json={"token": token, "newPassword": secret(password)})


async def test_known_unknown_unverified_and_disabled_emails_get_byte_identical_answers(stack):
    known, unverified, disabled = email(), email(), email()
    await stack.register_verified(known, PASSWORD)
    await stack.http.post("/auth/register", json={"email": unverified, "password": secret(PASSWORD)})
    await stack.register_verified(disabled, PASSWORD)
    admin_headers = await make_admin(stack)
    target = (await stack.http.get("/admin/users", params={"search": disabled}, headers=admin_headers)).json()
    await stack.http.patch(
        f"/admin/users/{target['data']['items'][0]['id']}", json={"isActive": False}, headers=admin_headers
    )

    answers = [await request_reset(stack, address) for address in (known, email(), unverified, disabled)]
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert b"token" not in answers[0].content.lower()
    assert set(answers[0].json()) == {"success", "message"}

    await stack.wait_for_mail(known, count=2)
    await stack.wait_for_mail(unverified, count=2)  # an unverified account may recover too
    await asyncio.sleep(1)  # give a wrongly sent mail the chance to arrive
    assert [len(reset_mails(stack, a)) for a in (known, unverified, disabled)] == [1, 1, 0]


async def test_token_works_once_and_revokes_every_session(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    sessions = [await stack.login(address, PASSWORD) for _ in range(2)]
    await request_reset(stack, address)
    mail = (await stack.wait_for_mail(address, count=2))[-1]
    body = mail.get_body(("plain",)).get_content()
    assert "http://app.test/auth/reset-password?token=" in body
    token = await stack.token_from_mail(address)

    done = await confirm(stack, token)
    assert done.status_code == 200 and done.json()["data"] == {"revokedSessions": 2}
    for headers in sessions:
        assert (await stack.http.get("/users/me", headers=headers)).status_code == 401
    again = await confirm(stack, token, "Third3Password")
    assert again.status_code == 400 and again.json()["error"]["code"] == "INVALID_RESET_TOKEN"
    wrong = await confirm(stack, "x" * 43, "Third3Password")
    assert wrong.json() == again.json()

    old = await stack.http.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert old.status_code == 401
    await stack.login(address, NEW_PASSWORD)
    notices = await stack.wait_for_mail(address, count=3)
    assert notices[-1]["Subject"] == "Your QuantPoly password was changed"


async def test_weak_new_password_is_refused_and_keeps_the_token(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    await request_reset(stack, address)
    token = await stack.token_from_mail(address, index=1)
    weak = await confirm(stack, token, "short")
    assert weak.status_code == 400 and weak.json()["error"]["code"] == "WEAK_PASSWORD"
    assert (await confirm(stack, token)).status_code == 200


async def test_concurrent_confirms_exactly_one_wins(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    await request_reset(stack, address)
    token = await stack.token_from_mail(address, index=1)
    answers = await asyncio.gather(*(confirm(stack, token, f"Racer{i}Password") for i in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400]


async def test_a_new_request_supersedes_the_older_token(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    stack.settings.reset_per_email_limit = 5
    await request_reset(stack, address)
    first = await stack.token_from_mail(address, index=1)
    await request_reset(stack, address)
    second = await stack.token_from_mail(address, index=2)
    assert (await confirm(stack, first)).status_code == 400
    assert (await confirm(stack, second)).status_code == 200


async def test_rate_limits_are_uniform_and_survive_a_restart(database_url, dev_server, smtp_server, tmp_path):
    limits = dict(reset_per_email_limit=1, reset_per_client_limit=3)
    known, unknown = email(), email()
    async for stack in open_stack(database_url, dev_server.client, smtp_server, tmp_path, **limits):
        await stack.register_verified(known, PASSWORD)
        first = await request_reset(stack, known)
        await stack.wait_for_mail(known, count=2)
        await request_reset(stack, unknown)
        # The worker decides off the request path that the address has no account; let it finish here.
        await wait_for_audit(stack, "password_reset_request", "user_not_found")
    # A new API and worker on the same database: the counts were persisted.
    async for stack in open_stack(database_url, dev_server.client, smtp_server, tmp_path, **limits):
        limited = await request_reset(stack, known)
        assert limited.status_code == 200 and limited.content == first.content
        over = await request_reset(stack, email())
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED" and int(over.headers["retry-after"]) > 0
        await asyncio.sleep(1)
        assert stack.mails_to(known) == []
        result = await stack.cli("audit", "list", "--event", "password_reset_request")
        outcomes = [row["outcome"] for row in json.loads(result.stdout)["items"]]
        assert sorted(outcomes) == ["issued", "rate_limited", "rate_limited_client", "user_not_found"]


async def test_audit_rows_for_the_whole_recovery(stack):
    address = email()
    user = await stack.register_verified(address, PASSWORD)
    await request_reset(stack, address)
    token = await stack.token_from_mail(address, index=1)
    await confirm(stack, "not-a-token-at-all")
    await confirm(stack, token)
    headers = await make_admin(stack)
    rows = (await stack.http.get("/admin/audit-events", params={"pageSize": 100}, headers=headers)).json()["data"][
        "items"
    ]
    mine = [(r["event"], r["outcome"]) for r in rows if r["userId"] == user["id"]]
    assert ("password_reset_request", "issued") in mine
    assert ("password_reset_confirm", "password_updated") in mine
    assert ("password_reset_confirm", "invalid_or_expired_token") in [(r["event"], r["outcome"]) for r in rows]
    issued = next(r for r in rows if r["userId"] == user["id"] and r["outcome"] == "issued")
    assert issued["clientAddress"] == "203.0.113.7" and issued["requestId"] and issued["emailDigest"]
    assert address not in json.dumps(rows)


async def test_cli_reset_request_and_confirm_from_stdin(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    headers = await stack.login(address, PASSWORD)
    requested = await stack.cli("auth", "password-reset-request", address)
    assert requested.exit_code == 0, requested.output
    token = await stack.token_from_mail(address, index=1)
    new_password = secret("FromTheCli4Pass")
    confirmed = await stack.cli("auth", "password-reset-confirm", input=f"{token}\n{new_password}\n{new_password}\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert json.loads(confirmed.stdout)["revoked_sessions"] == 1
    assert token not in confirmed.output  # prompts do not echo
    assert (await stack.http.get("/users/me", headers=headers)).status_code == 401
    reused = await stack.cli("auth", "password-reset-confirm", input=f"{token}\n{new_password}\n{new_password}\n")
    assert reused.exit_code == 1
    assert "INVALID_RESET_TOKEN" in reused.output


async def audit_outcomes(stack, event: str) -> list[str]:
    result = await stack.cli("audit", "list", "--event", event)
    return [row["outcome"] for row in json.loads(result.stdout)["items"]]


async def wait_for_audit(stack, event: str, outcome: str, timeout: float = 20.0) -> None:
    """Outcomes of requests by address are recorded by the worker, shortly after the answer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while outcome not in await audit_outcomes(stack, event):
        assert asyncio.get_running_loop().time() < deadline, f"no {event} {outcome} in the audit trail"
        await asyncio.sleep(0.2)


async def make_admin(stack) -> dict[str, str]:
    address = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    password = secret("Admin1Password")
    created = await stack.cli("users", "create", "--email", address, "--admin", input=f"{password}\n{password}\n")
    assert created.exit_code == 0, created.output
    return await stack.login(address, password)


async def test_a_password_change_withdraws_mailed_reset_links(stack):
    address = email()
    await stack.register_verified(address, PASSWORD)
    headers = await stack.login(address, PASSWORD)
    await request_reset(stack, address)
    token = await stack.token_from_mail(address, index=1)
    changed = await stack.http.patch(
        "/users/me/password",
        json={"currentPassword": PASSWORD, "newPassword": secret("Changed5Password")},
        headers=headers,
    )
    assert changed.status_code == 200
    assert (await confirm(stack, token)).status_code == 400


async def test_a_refused_confirmation_changes_nothing(stack):
    address = email()
    user = await stack.register_verified(address, PASSWORD)
    admin = await make_admin(stack)
    await request_reset(stack, address)
    token = await stack.token_from_mail(address, index=1)
    await stack.http.patch(f"/admin/users/{user['id']}", json={"isActive": False}, headers=admin)
    refused = await confirm(stack, token)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_RESET_TOKEN"
    await stack.http.patch(f"/admin/users/{user['id']}", json={"isActive": True}, headers=admin)
    # The refusal rolled back: the token is still good, and the old password still works until it is used.
    await stack.login(address, PASSWORD)
    assert (await confirm(stack, token)).status_code == 200


async def test_an_admin_email_change_withdraws_links_sent_to_the_old_address(stack):
    address = email()
    user = await stack.register_verified(address, PASSWORD)
    admin = await make_admin(stack)
    await request_reset(stack, address)
    token = await stack.token_from_mail(address, index=1)
    changed = await stack.http.patch(f"/admin/users/{user['id']}", json={"email": email()}, headers=admin)
    assert changed.status_code == 200
    assert (await confirm(stack, token)).status_code == 400


# --- the request path does the same work for every address ----------------------------------------------

REQUEST_ROUTES = {
    "reset": ("/auth/password-reset/request", "password_reset", "reset-token-"),
    "resend": ("/auth/verify-email/resend", "email_verification", "verify-token-"),
    "verify-page": ("/auth/verify-email", "email_verification", "verify-token-"),
}


@contextlib.contextmanager
def sql_of_the_api(stack) -> Iterator[list[str]]:
    """Every SQL statement the API process sends while the block runs (the worker has its own engine)."""
    engine = stack.http._transport.app.state.platform.db.engine.sync_engine
    statements: list[str] = []

    def note(connection, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


async def token_rows_since(stack, since, purpose: str) -> list[AuthToken]:
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            rows = await session.scalars(
                select(AuthToken)
                .where(AuthToken.created_at >= since, AuthToken.purpose == purpose)
                .order_by(AuthToken.created_at)
            )
            return list(rows)
    finally:
        await db.dispose()


async def started_with(stack, workflow_id: str) -> tuple[str, bytes, dict]:
    """A started workflow's type, its input as stored in Temporal, and its search attributes."""
    handle = stack.temporal.get_workflow_handle(workflow_id)
    description = await handle.describe()
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    stored_input = b"".join(payload.data for payload in started.input.payloads)
    ours = {key.name for key in SEARCH_ATTRIBUTES}
    attributes = {key.name: value for key, value in description.typed_search_attributes if key.name in ours}
    return description.workflow_type, stored_input, attributes


@pytest.mark.parametrize("route", REQUEST_ROUTES, ids=list(REQUEST_ROUTES))
async def test_known_and_unknown_addresses_cost_the_request_path_the_same_work(stack, route):
    path, purpose, prefix = REQUEST_ROUTES[route]
    known, unknown = email(), email()
    if purpose == "password_reset":
        await stack.register_verified(known, PASSWORD)
    else:  # a resend is for an account still waiting for verification
        await stack.http.post("/auth/register", json={"email": known, "password": secret(PASSWORD)})
        await stack.wait_for_mail(known)
    since = utcnow()

    answers, work = [], []
    for address in (known, unknown):
        with sql_of_the_api(stack) as statements:
            answers.append(await stack.http.post(path, json={"email": address}))
        work.append(statements)
    assert answers[0].status_code == 200 and answers[0].content == answers[1].content
    # The same statements in the same order: the request path never looks the address up.
    assert work[0] == work[1] and any("INSERT INTO auth_tokens" in sql for sql in work[0])
    assert not any("FROM users" in sql for sql in work[0])

    # Each request wrote a token row and started the same workflow, with only the row's id as input.
    rows = await token_rows_since(stack, since, purpose)
    assert len(rows) == 2
    started = [await started_with(stack, prefix + row.id) for row in rows]
    assert started[0][0] == started[1][0] == "AuthTokenWorkflow"
    assert started[0][2] == started[1][2] == {KIND.name: purpose}
    for (_, stored_input, _), address in zip(started, (known, unknown), strict=True):
        assert address.encode() not in stored_input

    # Off the request path the worker tells them apart: the account gets mail, the unknown address is
    # refused and erased from its row.
    await stack.wait_for_mail(known, count=2)
    unknown_handle = stack.temporal.get_workflow_handle(prefix + rows[1].id)
    assert await unknown_handle.result() == "refused"
    rows = await token_rows_since(stack, since, purpose)
    assert rows[0].user_id is not None and rows[0].email == known
    assert rows[1].user_id is None and rows[1].email is None and rows[1].client_address is None
    assert stack.mails_to(unknown) == []
