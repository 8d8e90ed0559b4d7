"""Accounts at Alpaca's paper broker, against a local server speaking Alpaca's trading wire format: keys checked
at creation and kept sealed, orders sent once and followed by a workflow until the broker ends them, and the
ledger written once for each, even when the worker following it is killed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from core.security import SecretBox, SecretUnreadable, new_box_key
from db.engine import Database
from db.models import TradingAccount, TradingOrder
from domain import broker, ledger
from integrations.broker import broker_box, open_credentials
from tests.conftest import data, error, open_stack
from tests.fake_alpaca import API_KEY, SECRET_KEY, FakeAlpaca, fake_alpaca_fixture  # noqa: F401 (the fixture)
from tests.test_admin import create_admin
from tests.test_portfolios import finished
from tests.test_trading import PASSWORD, ledger_state
from tests.test_worker_recovery import ROOT, kill_worker, stop_workers
from workflows.broker_order import workflow_id

KEYS = {"apiKey": API_KEY, "secretKey": SECRET_KEY}


@pytest.fixture
async def at_broker(database_url, dev_server, smtp_server, tmp_path, fake_alpaca):
    overrides = dict(alpaca_paper_trading_url=fake_alpaca.trading_url, job_heartbeat_timeout_seconds=3)
    async for stack in open_stack(database_url, dev_server.client, smtp_server, tmp_path, **overrides):
        _, _, headers = await stack.new_account(PASSWORD)
        yield stack, headers, fake_alpaca


async def broker_account(stack, headers) -> str:
    body = {"accountName": "at alpaca", "broker": "alpaca", **KEYS}
    return data(await stack.http.post("/trading/accounts", json=body, headers=headers), 201)["id"]


async def ended(stack, headers, account: str, order: str, timeout: float = 30.0, *, outcome: str | None = None) -> dict:
    """The order once its workflow has ended it; the workflow's answer is its status, or ``outcome``."""
    answer = await asyncio.wait_for(stack.temporal.get_workflow_handle(workflow_id(order)).result(), timeout)
    found = data(await stack.http.get(f"/trading/accounts/{account}/orders/{order}", headers=headers))
    assert answer == (outcome or found["status"]), (found, answer)
    return found


async def test_an_order_filled_at_the_broker_lands_once_in_the_ledger(at_broker):
    stack, headers, fake = at_broker
    account = await broker_account(stack, headers)
    base = f"/trading/accounts/{account}"
    shown = data(await stack.http.get(base, headers=headers))
    assert shown["broker"] == "alpaca" and not {"apiKey", "secretKey", "brokerCredentials"} & set(shown)
    config = data(await stack.http.get("/trading/accounts/filter-config", headers=headers))
    assert config["accountTypeCounts"] == {"paper": 0, "alpaca": 1}
    # The account's cash is its cash at the broker, as its first deposit.
    assert (await ledger_state(stack, headers, account))["cash"] == Decimal(100_000)

    placed = data(
        await stack.http.post(f"{base}/buy", json={"symbol": "AAPL", "quantity": 10, "price": 100}, headers=headers)
    )
    assert placed["order"]["status"] == "pending" and placed["trade"] is None
    order = placed["order"]["id"]
    filled = await ended(stack, headers, account, order)
    assert (filled["status"], filled["filledPrice"], filled["brokerStatus"]) == ("filled", 100, "filled")

    fake.prices["AAPL"] = Decimal(110)
    sold = data(
        await stack.http.post(
            f"{base}/orders", json={"symbol": "AAPL", "side": "SELL", "quantity": 4}, headers=headers
        ),
        201,
    )
    assert (await ended(stack, headers, account, sold["order"]["id"]))["filledPrice"] == 110

    state = await ledger_state(stack, headers, account)
    assert state["cash"] == state["flow_sum"] == Decimal(99_440)
    assert state["positions"] == {"AAPL": (6, 100)}
    assert (state["trades"], state["flows"]) == (2, 3)
    assert fake.cash == state["cash"] and fake.positions == {"AAPL": 6}  # the ledger agrees with the broker
    placed_there = {o["client_order_id"]: o for o in fake.orders_placed()}
    assert set(placed_there) == {order, sold["order"]["id"]}  # each sent once, under our id
    assert placed_there[order]["id"] == filled["brokerOrderId"]

    # Following the order again (as the pending-order job would) sends nothing and writes nothing.
    again = await stack.temporal.start_workflow(
        "BrokerOrderWorkflow",
        {"order_id": order},
        id=f"{workflow_id(order)}-again",
        task_queue=stack.settings.task_queue,
    )
    assert await again.result() == "already filled"
    assert await ledger_state(stack, headers, account) == state
    assert len(fake.orders_placed()) == 2


async def test_keys_are_checked_at_creation_and_sealed_at_rest(at_broker):
    stack, headers, fake = at_broker
    wrong = {"accountName": "x", "broker": "alpaca", "apiKey": "PKWRONG0000000000000", "secretKey": "wrong-secret"}
    refused = error(await stack.http.post("/trading/accounts", json=wrong, headers=headers), 400)
    assert refused["code"] == "BROKER_CREDENTIALS_INVALID"
    half = {"accountName": "x", "broker": "alpaca", "apiKey": API_KEY}
    assert error(await stack.http.post("/trading/accounts", json=half, headers=headers), 400)["code"] == (
        "INVALID_ARGUMENT"
    )
    paper_with_keys = {"accountName": "x", **KEYS}
    assert (await stack.http.post("/trading/accounts", json=paper_with_keys, headers=headers)).status_code == 400
    assert data(await stack.http.get("/trading/accounts", headers=headers)) == []

    account = await broker_account(stack, headers)
    db = Database.from_settings(stack.settings)
    try:
        async with db.reading() as session:
            sealed = (await session.get_one(TradingAccount, account)).broker_credentials
    finally:
        await db.dispose()
    assert sealed and API_KEY not in sealed and SECRET_KEY not in sealed
    opened = open_credentials(broker_box(stack.settings), sealed)
    assert (opened.key, opened.secret) == (API_KEY, SECRET_KEY)
    with pytest.raises(SecretUnreadable):
        open_credentials(SecretBox([new_box_key()]), sealed)

    # Its cash moves at the broker; its pending orders end as the broker says.
    cash = await stack.http.post(f"/trading/accounts/{account}/deposit", json={"amount": 5}, headers=headers)
    assert error(cash, 409)["code"] == "BROKER_MANAGED_CASH"
    fake.order_mode = "hold"
    base = f"/trading/accounts/{account}"
    placed = data(
        await stack.http.post(f"{base}/buy", json={"symbol": "MSFT", "quantity": 1, "price": 50}, headers=headers)
    )
    order = placed["order"]["id"]
    for method, path, body in (
        ("POST", f"{base}/orders/{order}/fill", {"price": 50}),
        ("PATCH", f"{base}/orders/{order}", {"price": 40}),
        ("DELETE", f"{base}/orders/{order}", None),
    ):
        answer = await stack.http.request(method, path, json=body, headers=headers)
        assert error(answer, 409)["code"] == "ORDER_INVALID_TRANSITION", path
    # More than the account holds, once its pending orders have filled, is refused before anything is sent.
    one = {"symbol": "MSFT", "quantity": 1, "price": 50}
    rest = data(await stack.http.post(f"{base}/buy", json={**one, "quantity": 1_999}, headers=headers))
    assert rest["order"]["status"] == "pending"  # 1,999 x 50 + 50 = 100,000
    too_dear = await stack.http.post(f"{base}/buy", json=one, headers=headers)
    assert error(too_dear, 409)["code"] == "INSUFFICIENT_FUNDS"
    assert len(fake.orders_placed()) <= 2


async def test_cancels_partial_fills_and_refusals_at_the_broker(at_broker):
    stack, headers, fake = at_broker
    account = await broker_account(stack, headers)
    base = f"/trading/accounts/{account}"
    fake.order_mode = "hold"
    limit = {"symbol": "AAPL", "quantity": 5, "price": 90}
    whole, part = [data(await stack.http.post(f"{base}/buy", json=limit, headers=headers)) for _ in range(2)]
    for _ in range(100):
        if len(fake.orders_placed()) == 2:
            break
        await asyncio.sleep(0.1)
    fake.fill_order(part["order"]["id"], quantity=2)
    # Both cancelled on request: the broker cancels them, and the ledger writes what filled before, once.
    for placed in (whole, part):
        cancelling = data(await stack.http.post(f"{base}/orders/{placed['order']['id']}/cancel", headers=headers))
        assert cancelling["status"] == "pending"
    cancelled = await ended(stack, headers, account, whole["order"]["id"])
    assert (cancelled["status"], cancelled["brokerStatus"]) == ("cancelled", "canceled")
    partial = await ended(stack, headers, account, part["order"]["id"])
    assert (partial["status"], partial["quantity"], partial["filledPrice"]) == ("filled", 2, 90)
    assert partial["failureReason"] == "partially filled: 2 of 5, then canceled at the broker"
    assert {o["status"] for o in fake.orders_placed()} == {"canceled"}

    fake.order_mode = "reject"
    refused = data(await stack.http.post(f"{base}/buy", json={"symbol": "AAPL", "quantity": 5}, headers=headers))
    failed = await ended(stack, headers, account, refused["order"]["id"])
    assert failed["status"] == "failed" and "insufficient buying power" in failed["failureReason"]

    state = await ledger_state(stack, headers, account)
    assert (state["cash"], state["trades"], state["positions"]) == (Decimal(99_820), 1, {"AAPL": (2, 90)})
    assert fake.cash == state["cash"] and fake.positions == {"AAPL": 2}  # the ledger agrees with the broker


async def test_a_cancel_that_comes_before_the_order_is_sent_sends_nothing(at_broker):
    stack, headers, fake = at_broker
    account = await broker_account(stack, headers)
    fake.fail(503, times=None, path="/v2/orders")  # the order cannot be sent yet
    body = {"symbol": "AAPL", "quantity": 2, "price": 100}
    order = data(await stack.http.post(f"/trading/accounts/{account}/buy", json=body, headers=headers))["order"]["id"]
    for _ in range(100):
        if fake.requests_to("/v2/orders"):
            break
        await asyncio.sleep(0.1)
    # Its workflow lost (as if its start had been), the cancel starts a new one, which sends nothing.
    await stack.temporal.get_workflow_handle(workflow_id(order)).terminate("lost")
    fake.clear_faults()
    assert data(await stack.http.post(f"/trading/accounts/{account}/orders/{order}/cancel", headers=headers))[
        "status"
    ] == ("pending")
    cancelled = await ended(stack, headers, account, order)
    assert (cancelled["status"], cancelled["failureReason"]) == (
        "cancelled",
        "cancelled before it was sent to the broker",
    )
    assert fake.orders_placed() == []


async def test_a_lost_start_is_followed_by_the_pending_order_job(at_broker):
    stack, headers, fake = at_broker
    _, admin = await create_admin(stack)
    account = await broker_account(stack, headers)
    fake.order_mode = "hold"
    placed = data(
        await stack.http.post(
            f"/trading/accounts/{account}/buy", json={"symbol": "AAPL", "quantity": 2, "price": 100}, headers=headers
        )
    )
    order = placed["order"]["id"]
    # As if the API had died between writing the order and starting its workflow.
    await stack.temporal.get_workflow_handle(workflow_id(order)).terminate("lost")
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            row = await session.get_one(TradingOrder, order)
            await session.execute(
                update(TradingOrder)
                .where(TradingOrder.id == order)
                .values(created_at=row.created_at - timedelta(minutes=1))
            )
    finally:
        await db.dispose()
    task = data(await stack.http.post("/trading/ops/pending/process-task", json={}, headers=admin), 202)
    job = await finished(stack, admin, task["taskId"])
    assert job["status"] == "succeeded" and job["result"]["brokerOrdersFollowed"] == 1
    fake.fill_order(order)
    assert (await ended(stack, headers, account, order))["status"] == "filled"
    assert len(fake.orders_placed()) == 1
    assert (await ledger_state(stack, headers, account))["positions"] == {"AAPL": (2, 100)}


# A worker that stops, after marking that it got there, right after one step's work: once Alpaca took the
# order (before the workflow hears of it), or once the ledger's transaction committed.
PAUSED_WORKER = """
import asyncio, pathlib, worker
from activities.broker import BrokerActivities
original = BrokerActivities.{method}
async def paused(self, *args, **kwargs):
    result = await original(self, *args, **kwargs)
    pathlib.Path({marker!r}).touch()
    await asyncio.sleep(60)
    return result
paused.__temporal_activity_definition = original.__temporal_activity_definition
BrokerActivities.{method} = paused
worker.main()
"""


@pytest.mark.parametrize("step", ["submit", "settle"])
async def test_a_worker_killed_while_following_an_order_loses_and_duplicates_nothing(
    one_database_url, dev_server, smtp_server, tmp_path, fake_alpaca, step
):
    # Once, not on each backend: the settle's transaction is the one the tests above run on both.
    overrides = dict(alpaca_paper_trading_url=fake_alpaca.trading_url, job_heartbeat_timeout_seconds=3)
    async for stack in open_stack(
        one_database_url, dev_server.client, smtp_server, tmp_path, with_worker=False, **overrides
    ):
        marker = tmp_path / "paused"
        env = {
            **os.environ,
            **stack.env,
            "QUANTPOLY_LOG_LEVEL": "WARNING",
            "QUANTPOLY_WORKER_PROCESSES": "1",  # it runs no engine: a quicker start
        }
        code = PAUSED_WORKER.format(method=step, marker=str(marker))
        paused = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
        survivor = None
        try:
            _, _, headers = await stack.new_account(PASSWORD)  # its mail is sent by that worker
            account = await broker_account(stack, headers)
            body = {"symbol": "AAPL", "quantity": 3, "price": 100}
            placed = await stack.http.post(f"/trading/accounts/{account}/buy", json=body, headers=headers)
            order = data(placed)["order"]["id"]
            for _ in range(300):
                if marker.exists():
                    break
                await asyncio.sleep(0.1)
            assert marker.exists(), "the worker never reached the step"
            kill_worker(paused)
            survivor = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT)
            # A settle run again finds the ledger written by the first, and writes nothing.
            outcome = "already filled" if step == "settle" else "filled"
            found = await ended(stack, headers, account, order, timeout=90, outcome=outcome)
        finally:
            await stop_workers(stack, paused, survivor)
        assert found["status"] == "filled"
        assert len(fake_alpaca.orders_placed()) == 1
        state = await ledger_state(stack, headers, account)
        assert (state["cash"], state["trades"], state["flows"]) == (Decimal(99_700), 1, 2)
        assert state["positions"] == {"AAPL": (3, 100)}


def test_a_terminal_order_settles_as_the_broker_ended_it():
    def state(status: str, filled: str = "0", price: str | None = None) -> broker.BrokerOrderState:
        return broker.BrokerOrderState(status, "id", filled, price)

    whole = ledger.settlement(state("filled", "10", "101.5"), Decimal(10))
    assert (whole.outcome, whole.quantity, whole.price, whole.reason) == (ledger.FILLED, 10, Decimal("101.5"), None)
    part = ledger.settlement(state("canceled", "4", "99"), Decimal(10))
    assert (part.outcome, part.quantity) == (ledger.FILLED, 4) and "partially filled: 4 of 10" in part.reason
    assert ledger.settlement(state("expired"), Decimal(1)).outcome == ledger.CANCELLED
    unsent = ledger.settlement(broker.BrokerOrderState(broker.NOT_SENT), Decimal(1))
    assert (unsent.outcome, unsent.reason) == (ledger.CANCELLED, "cancelled before it was sent to the broker")
    gone = ledger.settlement(broker.BrokerOrderState(broker.UNKNOWN, reason="gone"), Decimal(1))
    assert (gone.outcome, gone.reason) == (ledger.FAILED, "gone")
    refused = ledger.settlement(broker.BrokerOrderState(broker.REFUSED, reason="no"), Decimal(1))
    assert (refused.outcome, refused.reason) == (ledger.FAILED, "no")
    assert broker.state_of({"id": "x", "status": "accepted", "filled_qty": None}).filled_quantity == "0"
    with pytest.raises(TypeError):
        broker.state_of({"status": "filled"})
