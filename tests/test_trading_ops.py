"""The paper ledger's operations: admin-only routes, and its jobs through their workflows (prices marked to the
latest quotes, crossed limit orders filled, daily statistics stored and read back)."""

from __future__ import annotations

from datetime import UTC, datetime

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
