"""The paper ledger's operations: admin-only routes, and its jobs through their workflows (prices marked to the
latest quotes, crossed limit orders filled, daily statistics stored and read back)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from db.engine import Database
from db.models import TradingAccount, TradingCashFlow
from tests.conftest import data, error
from tests.test_admin import create_admin
from tests.test_portfolios import finished
from tests.test_trading import PASSWORD, open_account

OPS = [
    ("GET", "/trading/ops/pending-orders", None),
    ("POST", "/trading/ops/refresh-prices", {"priceUpdates": {"AAPL": 1}}),
    ("POST", "/trading/ops/refresh-prices/task", {}),
    ("POST", "/trading/ops/pending/process-task", {}),
    ("POST", "/trading/ops/daily-stats/calculate-task", {}),
    (
        "POST",
        "/trading/ops/batch/execute-task",
        {"tradeRequests": [{"accountId": "a", "symbol": "A", "side": "BUY", "quantity": 1}]},
    ),
    ("POST", "/trading/ops/risk/monitor-task", {}),
    ("POST", "/trading/ops/accounts/cleanup-task", {}),
    ("GET", "/trading/ops/tasks/some-task", None),
]


async def quote(stack, headers, symbol: str) -> float:
    return data(await stack.http.get(f"/market/quote/{symbol}", headers=headers))["quote"]["price"]


async def test_ops_routes_are_for_admins_only(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    for method, path, body in OPS:
        answer = await stack.http.request(method, path, json=body, headers=headers)
        assert error(answer, 403)["code"] == "ADMIN_REQUIRED", (method, path)


async def test_the_ledger_jobs_mark_fill_and_store_the_day(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    _, admin = await create_admin(stack)
    account = await open_account(stack, headers)
    base = f"/trading/accounts/{account}"
    data(await stack.http.post(f"{base}/buy", json={"symbol": "AAPL", "quantity": 10, "price": 1}, headers=headers))
    market = await quote(stack, headers, "MSFT")
    crossed = {"symbol": "MSFT", "side": "BUY", "quantity": 2, "price": round(market * 1.5, 2)}
    waiting = {"symbol": "MSFT", "side": "BUY", "quantity": 1, "price": round(market * 0.5, 2)}
    crossed_id = data(await stack.http.post(f"{base}/orders", json=crossed, headers=headers), 201)["order"]["id"]
    waiting_id = data(await stack.http.post(f"{base}/orders", json=waiting, headers=headers), 201)["order"]["id"]
    listed = data(await stack.http.get("/trading/ops/pending-orders", headers=admin))
    assert {crossed_id, waiting_id} <= {order["id"] for order in listed}

    # Positions marked at the latest quote.
    task = data(
        await stack.http.post("/trading/ops/refresh-prices/task", json={"accountId": account}, headers=admin), 202
    )
    job = await finished(stack, admin, task["taskId"])
    assert job["status"] == "succeeded", job
    assert job["result"]["updatedPositions"] == 1
    aapl = data(await stack.http.get(f"{base}/positions/AAPL", headers=headers))
    assert aapl["lastPrice"] == await quote(stack, headers, "AAPL")
    assert data(await stack.http.get(f"/trading/ops/tasks/{task['taskId']}", headers=admin))["status"] == "succeeded"

    # The crossed limit order fills at its price; the other waits.
    task = data(
        await stack.http.post("/trading/ops/pending/process-task", json={"maxTrades": 1000}, headers=admin), 202
    )
    job = await finished(stack, admin, task["taskId"])
    assert job["status"] == "succeeded" and job["result"]["filled"] >= 1, job
    filled = data(await stack.http.get(f"{base}/orders/{crossed_id}", headers=headers))
    assert filled["status"] == "filled" and filled["filledPrice"] == crossed["price"]
    assert data(await stack.http.get(f"{base}/orders/{waiting_id}", headers=headers))["status"] == "pending"
    msft = data(await stack.http.get(f"{base}/positions/MSFT", headers=headers))
    assert (msft["quantity"], msft["avgPrice"]) == (2, crossed["price"])
    overview = data(await stack.http.get(f"{base}/overview", headers=headers))
    assert overview["cashBalance"] == round(100_000 - 10 - 2 * crossed["price"], 8)

    # The day's statistics, stored and read back, agree with the account's overview.
    body = {"accountIds": [account]}
    task = data(await stack.http.post("/trading/ops/daily-stats/calculate-task", json=body, headers=admin), 202)
    assert (await finished(stack, admin, task["taskId"]))["status"] == "succeeded"
    today = datetime.now(UTC).date().isoformat()
    (stat,) = data(await stack.http.get(f"/trading/stats/daily?date={today}&accountId={account}", headers=headers))
    assert (stat["cashBalance"], stat["equity"], stat["tradeCount"]) == (
        overview["cashBalance"],
        overview["equity"],
        2,
    )
    assert stat["marketValue"] == overview["totalMarketValue"]

    # Given prices mark now; another user cannot read the account's statistics; other jobs are no ops tasks.
    marked = data(
        await stack.http.post("/trading/ops/refresh-prices", json={"priceUpdates": {"aapl": 3}}, headers=admin)
    )
    assert marked["updatedPositions"] >= 1
    assert data(await stack.http.get(f"{base}/positions/AAPL", headers=headers))["lastPrice"] == 3
    _, _, other = await stack.new_account(PASSWORD)
    denied = await stack.http.get(f"/trading/stats/daily?accountId={account}", headers=other)
    assert error(denied, 403)["code"] == "ACCOUNT_ACCESS_DENIED"
    assert data(await stack.http.get("/trading/stats/daily", headers=other)) == []
    missing = await stack.http.get("/trading/ops/tasks/not-a-task", headers=admin)
    assert error(missing, 404)["code"] == "TASK_NOT_FOUND"


async def test_the_ledger_from_the_command_line(stack):
    email, _, headers = await stack.new_account(PASSWORD)

    def out(result) -> dict | list:
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    account = out(await stack.cli("trading", "account-create", "--user", email, "--name", "cli", "--capital", "1000"))
    account_id = account["id"]
    bought = out(await stack.cli("trading", "buy", account_id, "aapl", "3", "--price", "0.1", "--user", email))
    assert bought["cash_flow"]["amount"] == -0.3 and bought["position"]["symbol"] == "AAPL"
    sold = out(await stack.cli("trading", "sell", account_id, "AAPL", "1", "--price", "0.2", "--user", email))
    assert sold["trade"]["realized_pnl"] == 0.1
    overview = out(await stack.cli("trading", "overview", account_id, "--user", email))
    assert overview["cash_balance"] == 999.9 and overview["trade_count"] == 2
    over_http = data(await stack.http.get(f"/trading/accounts/{account_id}/overview", headers=headers))
    assert (over_http["cashBalance"], over_http["equity"]) == (overview["cash_balance"], overview["equity"])
    short = await stack.cli("trading", "sell", account_id, "AAPL", "5", "--price", "1", "--user", email)
    assert short.exit_code == 1 and "INSUFFICIENT_POSITION" in short.stderr
    positions = out(await stack.cli("trading", "positions", account_id, "--user", email))
    assert [(p["symbol"], p["quantity"]) for p in positions] == [("AAPL", 2)]
    withdrawn = out(await stack.cli("trading", "withdraw", account_id, "999.9", "--user", email))
    assert withdrawn["cash_balance"] == 0
    ops = await stack.cli("trading", "ops-pending-orders", "--user", email)
    assert ops.exit_code == 1 and "ADMIN_REQUIRED" in ops.stderr


async def test_a_batch_of_trades_and_a_risk_sweep_as_jobs(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    _, admin = await create_admin(stack)
    first = await open_account(stack, headers, capital=10_000)
    second = await open_account(stack, headers, capital=500)
    trades = [
        {"accountId": first, "symbol": "X", "side": "BUY", "quantity": 5, "price": 100},
        {"accountId": first, "symbol": "X", "side": "BUY", "quantity": 100, "price": 100},  # 10,000 > 9,500 left
        {"accountId": second, "symbol": "Y", "side": "SELL", "quantity": 1, "price": 1},  # holds no Y
        {"accountId": "no-such-account", "symbol": "X", "side": "BUY", "quantity": 1, "price": 1},
        {"accountId": first, "symbol": "AAPL", "side": "BUY", "quantity": 1},  # at the quote
    ]
    task = data(
        await stack.http.post("/trading/ops/batch/execute-task", json={"tradeRequests": trades}, headers=admin), 202
    )
    job = await finished(stack, admin, task["taskId"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert (result["requested"], result["filled"], result["failed"]) == (5, 2, 3)
    assert [r["status"] for r in result["results"]] == ["filled", "failed", "failed", "failed", "filled"]
    assert [r["errorCode"] for r in result["results"][1:4]] == [
        "INSUFFICIENT_FUNDS",
        "INSUFFICIENT_POSITION",
        "ACCOUNT_NOT_FOUND",
    ]
    failed = data(await stack.http.get(f"/trading/accounts/{first}/orders?status=failed", headers=headers))
    assert [o["id"] for o in failed] == [result["results"][1]["orderId"]]
    assert failed[0]["failureReason"].startswith("INSUFFICIENT_FUNDS")
    aapl = await quote(stack, headers, "AAPL")
    overview = data(await stack.http.get(f"/trading/accounts/{first}/overview", headers=headers))
    assert overview["cashBalance"] == round(9_500 - aapl, 8) and overview["tradeCount"] == 2

    assert error(await stack.http.get(f"/trading/accounts/{first}/risk-assessment", headers=headers), 202)
    task = data(
        await stack.http.post("/trading/ops/risk/monitor-task", json={"accountIds": [first, second]}, headers=admin),
        202,
    )
    job = await finished(stack, admin, task["taskId"])
    assert job["status"] == "succeeded" and job["result"]["assessed"] == 2, job
    assessed = data(await stack.http.get(f"/trading/accounts/{first}/risk-assessment", headers=headers))
    metrics = data(await stack.http.get(f"/trading/accounts/{first}/risk-metrics", headers=headers))
    assert assessed["riskLevel"] == metrics["riskLevel"] and assessed["riskScore"] == metrics["riskScore"]


async def test_account_cleanup_is_confirmed_then_deletes_only_stale_inactive_accounts(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    _, admin = await create_admin(stack)
    stale, recent, active = [await open_account(stack, headers, capital=10) for _ in range(3)]
    for account in (stale, recent):
        data(await stack.http.put(f"/trading/accounts/{account}", json={"isActive": False}, headers=headers))
    long_ago = datetime.now(UTC) - timedelta(days=100)
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            for account in (stale, active):
                await session.execute(
                    update(TradingAccount).where(TradingAccount.id == account).values(updated_at=long_ago)
                )
                await session.execute(
                    update(TradingCashFlow).where(TradingCashFlow.account_id == account).values(created_at=long_ago)
                )
    finally:
        await db.dispose()
    body = {"accountIds": [stale, recent, active], "daysThreshold": 90}
    url = "/trading/ops/accounts/cleanup-task"

    asked = error(await stack.http.post(url, json=body, headers=admin), 409)
    assert asked["code"] == "CONFIRMATION_REQUIRED"
    token = asked["details"]["confirmationToken"]
    for wrong in (
        {**body, "confirmationToken": "not-the-token"},
        {**body, "daysThreshold": 30, "confirmationToken": token},
    ):
        assert error(await stack.http.post(url, json=wrong, headers=admin), 409)["code"] == "CONFIRMATION_INVALID"
    task = data(await stack.http.post(url, json={**body, "confirmationToken": token}, headers=admin), 202)
    job = await finished(stack, admin, task["taskId"])
    assert job["status"] == "succeeded" and job["result"]["deleted"] == [stale], job
    spent = await stack.http.post(url, json={**body, "confirmationToken": token}, headers=admin)
    assert error(spent, 409)["code"] == "CONFIRMATION_INVALID"
    gone = await stack.http.get(f"/trading/accounts/{stale}", headers=headers)
    assert error(gone, 403)["code"] == "ACCOUNT_ACCESS_DENIED"
    assert {a["id"] for a in data(await stack.http.get("/trading/accounts", headers=headers))} == {recent, active}
