"""The paper-trading ledger over HTTP: fills that move cash and positions exactly, refusals that change nothing,
pending orders and their transitions, idempotency keys, parallel orders that never overdraw, market orders at
the quote, and ownership on every account route."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest

from api.routes.trading import router
from tests.conftest import data, error

PASSWORD = "Trading1Password"


@pytest.fixture
async def trader(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    return stack, headers


async def open_account(stack, headers, capital: float | str | None = 100_000, **extra) -> str:
    body = {"accountName": "paper", **({"initialCapital": capital} if capital is not None else {}), **extra}
    return data(await stack.http.post("/trading/accounts", json=body, headers=headers), 201)["id"]


async def ledger_state(stack, headers, account_id: str) -> dict:
    """What the account's reads show: cash (the last flow's balance, and the flows' sum), positions, orders."""
    base = f"/trading/accounts/{account_id}"
    flows = data(await stack.http.get(f"{base}/cash-flows", headers=headers))
    positions = data(await stack.http.get(f"{base}/positions", headers=headers))
    orders = data(await stack.http.get(f"{base}/orders", headers=headers))
    trades = data(await stack.http.get(f"{base}/trades", headers=headers))
    return {
        "cash": Decimal(str(flows[0]["balanceAfter"])) if flows else Decimal(0),
        "flow_sum": sum((Decimal(str(f["amount"])) for f in flows), Decimal(0)),
        "positions": {p["symbol"]: (p["quantity"], p["avgPrice"]) for p in positions},
        "orders": len(orders),
        "trades": len(trades),
        "flows": len(flows),
    }


async def test_a_buy_and_a_sell_move_cash_and_the_position_exactly(trader):
    stack, headers = trader
    account = await open_account(stack, headers)
    base = f"/trading/accounts/{account}"

    bought = data(
        await stack.http.post(f"{base}/buy", json={"symbol": "AAPL", "quantity": 10, "price": 100}, headers=headers)
    )
    assert bought["order"]["status"] == "filled" and bought["order"]["side"] == "BUY"
    assert bought["trade"]["orderId"] == bought["order"]["id"]
    assert bought["cashFlow"]["flowType"] == "trade_buy" and bought["cashFlow"]["amount"] == -1000
    assert bought["cashFlow"]["relatedTradeId"] == bought["trade"]["id"]
    assert (bought["position"]["quantity"], bought["position"]["avgPrice"]) == (10, 100)

    sold = data(
        await stack.http.post(f"{base}/sell", json={"symbol": "aapl", "quantity": 4, "price": 110}, headers=headers)
    )
    assert sold["cashFlow"]["flowType"] == "trade_sell" and sold["cashFlow"]["amount"] == 440
    assert sold["trade"]["realizedPnl"] == 40 and sold["position"]["realizedPnl"] == 40

    state = await ledger_state(stack, headers, account)
    assert state["cash"] == state["flow_sum"] == Decimal(99_440)
    assert state["positions"] == {"AAPL": (6, 100)}
    position = data(await stack.http.get(f"{base}/positions/AAPL", headers=headers))
    assert (position["quantity"], position["avgPrice"], position["lastPrice"]) == (6, 100, 110)

    # Too much of either is refused and changes nothing.
    too_dear = await stack.http.post(
        f"{base}/buy", json={"symbol": "AAPL", "quantity": 1000, "price": 100}, headers=headers
    )
    assert error(too_dear, 409)["code"] == "INSUFFICIENT_FUNDS"
    too_many = await stack.http.post(
        f"{base}/sell", json={"symbol": "AAPL", "quantity": 7, "price": 100}, headers=headers
    )
    assert error(too_many, 409)["code"] == "INSUFFICIENT_POSITION"
    nothing_held = await stack.http.post(
        f"{base}/sell", json={"symbol": "MSFT", "quantity": 1, "price": 1}, headers=headers
    )
    assert error(nothing_held, 409)["code"] == "INSUFFICIENT_POSITION"
    for wrong in ({"quantity": 0, "price": 100}, {"quantity": 1, "price": -5}, {"quantity": 1e30, "price": 1}):
        answer = await stack.http.post(f"{base}/buy", json={"symbol": "AAPL", **wrong}, headers=headers)
        assert error(answer, 400)["code"] == "INVALID_ARGUMENT"
    withdraw_all = await stack.http.post(f"{base}/withdraw", json={"amount": 99_440.01}, headers=headers)
    assert error(withdraw_all, 409)["code"] == "INSUFFICIENT_FUNDS"
    assert await ledger_state(stack, headers, account) == state


async def test_amounts_are_exact_decimals(trader):
    stack, headers = trader
    account = await open_account(stack, headers, capital=1)
    base = f"/trading/accounts/{account}"
    for _ in range(3):
        data(await stack.http.post(f"{base}/buy", json={"symbol": "X", "quantity": 1, "price": 0.1}, headers=headers))
    data(await stack.http.post(f"{base}/deposit", json={"amount": 0.2}, headers=headers))
    moved = data(await stack.http.post(f"{base}/withdraw", json={"amount": 0.9}, headers=headers))
    assert moved["cashBalance"] == 0  # 1 - 3 × 0.1 + 0.2 - 0.9, exactly
    state = await ledger_state(stack, headers, account)
    assert state["cash"] == state["flow_sum"] == 0
    assert state["positions"] == {"X": (3, 0.1)}


async def test_a_pending_order_waits_then_its_fill_moves_cash_and_position(trader):
    stack, headers = trader
    account = await open_account(stack, headers, capital=5_000)
    base = f"/trading/accounts/{account}"
    order = {"symbol": "MSFT", "side": "BUY", "quantity": 20, "price": 200}
    placed = data(await stack.http.post(f"{base}/orders", json=order, headers=headers), 201)
    pending = placed["order"]
    assert pending["status"] == "pending" and pending["orderType"] == "limit" and placed["trade"] is None
    assert [o["id"] for o in data(await stack.http.get(f"{base}/trades/pending", headers=headers))] == [pending["id"]]
    assert (await ledger_state(stack, headers, account))["cash"] == 5_000  # nothing moves until it fills

    # 20 × 200 = 4,000 fits; changed to 30 it would not, and the fill is refused with nothing written.
    changed = data(await stack.http.patch(f"{base}/orders/{pending['id']}", json={"quantity": 30}, headers=headers))
    assert changed["quantity"] == 30
    refused = await stack.http.post(f"{base}/orders/{pending['id']}/fill", headers=headers)
    assert error(refused, 409)["code"] == "INSUFFICIENT_FUNDS"
    assert data(await stack.http.get(f"{base}/orders/{pending['id']}", headers=headers))["status"] == "pending"
    data(await stack.http.patch(f"{base}/orders/{pending['id']}", json={"quantity": 20}, headers=headers))

    filled = data(await stack.http.post(f"{base}/orders/{pending['id']}/fill", headers=headers))
    assert filled["order"]["status"] == "filled" and filled["order"]["filledPrice"] == 200
    state = await ledger_state(stack, headers, account)
    assert state["cash"] == state["flow_sum"] == 1_000
    assert state["positions"] == {"MSFT": (20, 200)}
    trade = data(await stack.http.get(f"{base}/trades/{filled['trade']['id']}", headers=headers))
    assert trade["orderId"] == pending["id"]

    # Only a pending order changes; a filled one is part of the ledger and stays.
    for method, path, body in (
        ("POST", f"{base}/orders/{pending['id']}/cancel", None),
        ("POST", f"{base}/orders/{pending['id']}/fill", None),
        ("PATCH", f"{base}/orders/{pending['id']}", {"price": 1}),
        ("DELETE", f"{base}/orders/{pending['id']}", None),
    ):
        answer = await stack.http.request(method, path, json=body, headers=headers)
        assert error(answer, 409)["code"] == "ORDER_INVALID_TRANSITION"

    second = data(await stack.http.post(f"{base}/orders", json={**order, "quantity": 1}, headers=headers), 201)["order"]
    cancelled = data(await stack.http.post(f"{base}/orders/{second['id']}/cancel", headers=headers))
    assert cancelled["status"] == "cancelled"
    data(await stack.http.delete(f"{base}/orders/{second['id']}", headers=headers))
    missing = await stack.http.get(f"{base}/orders/{second['id']}", headers=headers)
    assert error(missing, 404)["code"] == "ORDER_NOT_FOUND"
    assert error(await stack.http.get(f"{base}/trades/nope", headers=headers), 404)["code"] == "TRADE_NOT_FOUND"
    assert error(await stack.http.get(f"{base}/positions/IBM", headers=headers), 404)["code"] == "POSITION_NOT_FOUND"


async def test_parallel_buys_never_overdraw_the_account(trader):
    stack, headers = trader
    account = await open_account(stack, headers, capital=10_000)
    buy = {"symbol": "AAPL", "quantity": 10, "price": 100}  # 1,000 each

    answers = await asyncio.gather(
        *(stack.http.post(f"/trading/accounts/{account}/buy", json=buy, headers=headers) for _ in range(40))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 10 + [409] * 30
    assert {answer.json()["error"]["code"] for answer in answers if answer.status_code == 409} == {"INSUFFICIENT_FUNDS"}
    state = await ledger_state(stack, headers, account)
    assert state["cash"] == state["flow_sum"] == 0
    assert state["positions"] == {"AAPL": (100, 100)}
    assert (state["orders"], state["trades"], state["flows"]) == (10, 10, 11)


async def test_an_idempotency_key_answers_once(trader):
    stack, headers = trader
    account = await open_account(stack, headers)
    base = f"/trading/accounts/{account}"
    buy = {"symbol": "AAPL", "quantity": 1, "price": 50, "idempotencyKey": "buy-1"}

    first, *repeats = await asyncio.gather(
        *(stack.http.post(f"{base}/buy", json=buy, headers=headers) for _ in range(5))
    )
    answers = [data(first), *(data(r) for r in repeats)]
    assert sorted(a["idempotent"] for a in answers) == [False] + [True] * 4
    assert len({a["order"]["id"] for a in answers}) == 1
    state = await ledger_state(stack, headers, account)
    assert (state["orders"], state["positions"]) == (1, {"AAPL": (1, 50)})

    other = await stack.http.post(f"{base}/buy", json={**buy, "quantity": 2}, headers=headers)
    assert error(other, 409)["code"] == "IDEMPOTENCY_CONFLICT"
    deposit = {"amount": 10, "idempotencyKey": "d-1"}
    once = data(await stack.http.post(f"{base}/deposit", json=deposit, headers=headers))
    again = data(await stack.http.post(f"{base}/deposit", json=deposit, headers=headers))
    assert again == {**once, "idempotent": True}
    assert (await ledger_state(stack, headers, account))["cash"] == 100_000 - 50 + 10


async def test_a_market_order_fills_at_the_quote_and_the_account_slippage(trader):
    stack, headers = trader
    account = await open_account(stack, headers, slippageBps=25)
    base = f"/trading/accounts/{account}"
    quote = data(await stack.http.get("/market/quote/AAPL", headers=headers))["quote"]["price"]

    bought = data(
        await stack.http.post(f"{base}/orders", json={"symbol": "AAPL", "side": "BUY", "quantity": 2}, headers=headers),
        201,
    )
    assert bought["order"]["orderType"] == "market" and bought["order"]["status"] == "filled"
    expected = (Decimal(str(quote)) * Decimal("1.0025")).quantize(Decimal("1e-8"))
    assert Decimal(str(bought["order"]["filledPrice"])) == expected
    sold = data(await stack.http.post(f"{base}/sell", json={"symbol": "AAPL", "quantity": 2}, headers=headers))
    assert Decimal(str(sold["trade"]["price"])) == (Decimal(str(quote)) * Decimal("0.9975")).quantize(Decimal("1e-8"))


async def test_an_inactive_account_neither_trades_nor_moves_cash(trader):
    stack, headers = trader
    account = await open_account(stack, headers)
    base = f"/trading/accounts/{account}"
    updated = data(await stack.http.put(base, json={"isActive": False, "accountName": "parked"}, headers=headers))
    assert (updated["isActive"], updated["accountName"]) == (False, "parked")
    for path, body in (("buy", {"symbol": "A", "quantity": 1, "price": 1}), ("deposit", {"amount": 1})):
        assert (
            error(await stack.http.post(f"{base}/{path}", json=body, headers=headers), 409)["code"]
            == "ACCOUNT_INACTIVE"
        )
    listed = data(await stack.http.get("/trading/accounts", headers=headers))
    assert [(a["id"], a["isActive"]) for a in listed] == [(account, False)]


async def test_every_account_route_is_denied_to_another_user(trader):
    stack, headers = trader
    account = await open_account(stack, headers)
    _, _, other = await stack.new_account(PASSWORD)
    bodies = {"buy": {"symbol": "A", "quantity": 1, "price": 1}, "sell": {"symbol": "A", "quantity": 1, "price": 1}}
    checked = 0
    for route in router.routes:
        path = route.path  # type: ignore[attr-defined]
        if "{account_id}" not in path:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: account if m.group(1) == "account_id" else "X", path)
        for method in route.methods:  # type: ignore[attr-defined]
            body = bodies.get(path.rsplit("/", 1)[-1], {"amount": 1, "symbol": "A", "side": "BUY", "quantity": 1})
            answer = await stack.http.request(method, url, json=body if method != "GET" else None, headers=other)
            assert error(answer, 403)["code"] == "ACCOUNT_ACCESS_DENIED", (method, path)
            checked += 1
    assert checked >= 19
    assert data(await stack.http.get("/trading/accounts", headers=other)) == []
    assert (await ledger_state(stack, headers, account))["flows"] == 1


async def test_the_analytics_read_the_stored_ledger(trader):
    stack, headers = trader
    account = await open_account(stack, headers)
    other_account = await open_account(stack, headers, capital=5_000)
    base = f"/trading/accounts/{account}"
    for path, body in (
        ("buy", {"symbol": "AAPL", "quantity": 10, "price": 100}),
        ("buy", {"symbol": "MSFT", "quantity": 5, "price": 200}),
        ("sell", {"symbol": "AAPL", "quantity": 4, "price": 110}),
    ):
        data(await stack.http.post(f"{base}/{path}", json=body, headers=headers))
    pending = {"symbol": "IBM", "side": "BUY", "quantity": 1, "price": 50}
    data(await stack.http.post(f"{base}/orders", json=pending, headers=headers), 201)

    # AAPL 6 marked at 110 (cost 100), MSFT 5 at 200: market value 1,660, unrealized 60, realized 40.
    overview = data(await stack.http.get(f"{base}/overview", headers=headers))
    assert overview == {
        "accountId": account,
        "cashBalance": 98_440,
        "totalMarketValue": 1_660,
        "equity": 100_100,
        "positionCount": 2,
        "unrealizedPnl": 60,
        "realizedPnl": 40,
        "orderCount": 4,
        "pendingOrderCount": 1,
        "filledOrderCount": 3,
        "cancelledOrderCount": 0,
        "failedOrderCount": 0,
        "tradeCount": 3,
        "turnover": 2_440,
    }
    summary = data(await stack.http.get(f"{base}/summary", headers=headers))
    assert (summary["netDeposits"], summary["profitLoss"], summary["profitLossRate"]) == (100_000, 100, 0.001)
    assert data(await stack.http.get(f"{base}/position-summary", headers=headers)) == {
        "positionCount": 2,
        "totalMarketValue": 1_660,
        "unrealizedPnl": 60,
    }
    analysis = {p["symbol"]: p for p in data(await stack.http.get(f"{base}/position-analysis", headers=headers))}
    assert analysis["AAPL"]["marketValue"] == 660 and analysis["AAPL"]["costValue"] == 600
    assert analysis["AAPL"]["unrealizedPnlRatio"] == pytest.approx(0.1)
    assert analysis["AAPL"]["weight"] == pytest.approx(660 / 1660) and analysis["MSFT"]["lastPrice"] == 200
    stats = data(await stack.http.get(f"{base}/trade-stats", headers=headers))
    assert (stats["tradeCount"], stats["turnover"], stats["buyCount"], stats["sellCount"]) == (3, 2_440, 2, 1)

    risk = data(await stack.http.get(f"{base}/risk-metrics", headers=headers))
    exposure = 1_660 / 100_100
    assert risk["exposureRatio"] == pytest.approx(exposure) and risk["leverage"] == risk["exposureRatio"]
    assert risk["riskScore"] == pytest.approx(exposure * 60 + 0.25 * 10, abs=1e-4) and risk["riskLevel"] == "low"
    assert risk["pendingOrderCount"] == 1

    curve = data(await stack.http.get(f"{base}/equity-curve", headers=headers))
    assert [(p["cashBalance"], p["marketValue"], p["equity"]) for p in curve] == [
        (100_000, 0, 100_000),
        (99_000, 1_000, 100_000),
        (98_000, 2_000, 100_000),
        (98_440, 1_660, 100_100),
    ]
    assert len({p["timestamp"] for p in curve}) == 4
    flows = data(await stack.http.get(f"{base}/cash-flows/summary", headers=headers))
    assert flows == {"totalInflow": 100_440, "totalOutflow": 2_000, "netFlow": 98_440, "flowCount": 4}

    aggregate = data(await stack.http.get("/trading/accounts/aggregate", headers=headers))
    assert (aggregate["accountCount"], aggregate["totalCashBalance"], aggregate["totalEquity"]) == (2, 103_440, 105_100)
    assert (aggregate["totalTradeCount"], aggregate["pendingOrderCount"]) == (3, 1)

    # No assessment until one is asked for; the filters count its level once there is.
    pending_assessment = await stack.http.get(f"{base}/risk-assessment", headers=headers)
    assert error(pending_assessment, 202)["code"] == "RISK_ASSESSMENT_PENDING"
    config = data(await stack.http.get("/trading/accounts/filter-config", headers=headers))
    assert config["riskLevelCounts"] == {"LOW": 0, "MEDIUM": 0, "HIGH": 0, "UNKNOWN": 2}
    assessed = data(await stack.http.post(f"{base}/risk-assessment/evaluate", headers=headers))
    assert assessed["riskLevel"] == "low" and assessed["triggeredRuleIds"] == []
    assert assessed["riskScore"] == pytest.approx(risk["riskScore"])
    assert (
        data(await stack.http.get(f"{base}/risk-assessment", headers=headers))["assessmentId"]
        == assessed["assessmentId"]
    )
    config = data(await stack.http.get("/trading/accounts/filter-config", headers=headers))
    assert config["riskLevelCounts"] == {"LOW": 1, "MEDIUM": 0, "HIGH": 0, "UNKNOWN": 1}
    assert (config["totalAccounts"], config["hasPositionsCount"]) == (2, 1)
    assert config["statusCounts"] == {"active": 2, "inactive": 0} and config["accountTypeCounts"] == {"paper": 2}
    assert config["totalAssets"] == {"min": 5_000, "max": 100_100, "average": 52_550}
    assert config["profitLoss"] == {"min": 0, "max": 100, "average": 50}
    assert other_account != account
