"""The token workflow: expiry by its durable timer (time skipping), and survival of a full restart."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from core.temporal import DATA_CONVERTER, KIND, USER_ID
from db.engine import Database
from db.models import AuthToken
from tests.conftest import BIN, open_stack, secret

PASSWORD = "Original1Password"


async def reset_token_row(stack, user_id: str) -> AuthToken:
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            return await session.scalar(
                select(AuthToken).where(AuthToken.user_id == user_id, AuthToken.purpose == "password_reset")
            )
    finally:
        await db.dispose()


async def test_unused_token_expires_at_its_deadline(database_url, time_skipping_server, smtp_server, tmp_path):
    address = f"expiry-{uuid.uuid4().hex[:8]}@example.com"
    async for stack in open_stack(database_url, time_skipping_server.client, smtp_server, tmp_path):
        user = await stack.register_verified(address, PASSWORD)
        await stack.http.post("/auth/password-reset/request", json={"email": address})
        token = await stack.token_from_mail(address, index=1)
        row = await reset_token_row(stack, user["id"])
        handle = stack.temporal.get_workflow_handle(f"reset-token-{row.id}")

        await time_skipping_server.sleep(timedelta(seconds=stack.settings.reset_token_ttl_seconds + 1))
        assert await handle.result() == "expired"
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert (await reset_token_row(stack, user["id"])).expired_at is not None

        late = await stack.http.post(
            "/auth/password-reset/confirm", json={"token": token, "newPassword": secret("Late1Password")}
        )
        assert late.status_code == 400 and late.json()["error"]["code"] == "INVALID_RESET_TOKEN"


async def start_server(db_file) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        dev_server_database_filename=str(db_file),
        data_converter=DATA_CONVERTER,
        search_attributes=[KIND, USER_ID],
    )


async def test_token_survives_a_restart_of_api_worker_and_temporal(database_url, smtp_server, tmp_path):
    address = f"restart-{uuid.uuid4().hex[:8]}@example.com"
    temporal_db = tmp_path / "temporal.db"
    server = await start_server(temporal_db)
    try:
        async for stack in open_stack(database_url, server.client, smtp_server, tmp_path):
            user = await stack.register_verified(address, PASSWORD)
            await stack.http.post("/auth/password-reset/request", json={"email": address})
            token = await stack.token_from_mail(address, index=1)
            task_queue = stack.settings.task_queue
            row = await reset_token_row(stack, user["id"])
    finally:
        await server.shutdown()

    server = await start_server(temporal_db)
    try:
        async for stack in open_stack(database_url, server.client, smtp_server, tmp_path, task_queue=task_queue):
            handle = stack.temporal.get_workflow_handle(f"reset-token-{row.id}")
            description = await handle.describe()
            assert description.status == WorkflowExecutionStatus.RUNNING
            assert description.typed_search_attributes.get(KIND) == "password_reset"
            confirmed = await stack.http.post(
                "/auth/password-reset/confirm", json={"token": token, "newPassword": secret("After1Restart")}
            )
            assert confirmed.status_code == 200
            assert await handle.result() == "consumed"
    finally:
        await server.shutdown()
