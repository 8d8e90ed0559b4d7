"""The reference front end's requests, as its pages and end-to-end specs send them, and what it reads back."""

from __future__ import annotations

import pytest

from domain import backtest as engine_run
from domain.backtest import BacktestConfig
from tests.conftest import data, error
from tests.test_backtests import active_strategy, settled

PASSWORD = "Frontend1Password"
E2E_PRICES = [100 + i for i in range(30)]


async def draft_strategy(stack, headers) -> dict:
    body = {"name": "新策略-1", "template": "moving_average", "parameters": {"shortWindow": 5, "longWindow": 20}}
    return data(await stack.http.post("/strategies", json=body, headers=headers), 201)


async def test_templates_carry_the_wizard_s_required_parameters(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    templates = data(await stack.http.get("/strategies/templates", headers=headers))
    assert isinstance(templates, list) and len(templates) == 6
    by_id = {t["templateId"]: t for t in templates}
    moving = by_id["moving_average"]
    assert "双均线" in moving["name"]
    assert moving["requiredParameters"] == {
        "shortWindow": {"type": "int", "min": 2, "max": 200},
        "longWindow": {"type": "int", "min": 3, "max": 400},
    }
    assert moving["defaults"] == {"shortWindow": 5, "longWindow": 20}
    for template in templates:  # the e2e helper creates strategies from the defaults: they must be valid
        assert set(template["requiredParameters"]) == set(template["defaults"])
        body = {"name": "t", "templateId": template["templateId"], "parameters": template["defaults"]}
        data(await stack.http.post("/strategies/from-template", json=body, headers=headers), 201)


@pytest.mark.parametrize(
    "config",
    [{}, {"displayName": "运行中回测"}, {"startDate": "2025-01-01", "symbols": "000001.SZ", "frequency": "1d"}],
)
async def test_a_draft_strategy_s_backtest_is_recorded_pending_and_runs_nothing(stack, config):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await draft_strategy(stack, headers)
    created = data(
        await stack.http.post("/backtests", json={"strategyId": strategy["id"], "config": config}, headers=headers),
        202,
    )
    assert created["status"] == "pending" and created["runBy"] == "client"
    assert created["metrics"] == {} and isinstance(created["config"], dict)
    assert created["displayName"] == config.get("displayName")  # never invented
    job = data(await stack.http.get(f"/jobs/{created['jobId']}", headers=headers))
    assert job["executor"]["dispatchId"] is None  # no workflow was started
    by_job = error(await stack.http.post(f"/jobs/{created['jobId']}/cancel", headers=headers), 409)
    assert by_job["code"] == "INVALID_TRANSITION"  # its backtest's routes move it
    in_use = error(await stack.http.delete(f"/strategies/{strategy['id']}", headers=headers), 409)
    assert in_use["code"] == "STRATEGY_IN_USE"


async def test_a_client_run_backtest_moves_through_the_transitions_it_reports(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await draft_strategy(stack, headers)
    body = {"strategyId": strategy["id"], "config": {"displayName": "另一个回测"}}
    task = data(await stack.http.post("/backtests", json=body, headers=headers), 202)
    path = f"/backtests/{task['id']}"

    async def move(to: str, **extra):
        return await stack.http.post(f"{path}/transition", json={"toStatus": to, **extra}, headers=headers)

    assert error(await move("completed"), 409)["code"] == "BACKTEST_INVALID_STATE"  # pending → completed skips
    assert data(await move("running"))["status"] == "running"
    not_ready = error(await stack.http.get(f"{path}/result", headers=headers), 404)
    assert not_ready["code"] == "BACKTEST_RESULT_NOT_READY"
    completed = data(await move("completed", metrics={"returnRate": 0.12, "maxDrawdown": 0.05}))
    assert completed["status"] == "completed" and completed["metrics"] == {"returnRate": 0.12, "maxDrawdown": 0.05}
    result = data(await stack.http.get(f"{path}/result", headers=headers))
    assert result["runBy"] == "client" and result["metrics"]["returnRate"] == 0.12
    assert "equityCurve" not in result and "trades" not in result  # nothing our engine did not compute
    assert error(await move("running"), 409)["code"] == "BACKTEST_INVALID_STATE"  # completed is terminal

    second = data(await stack.http.post("/backtests", json=body, headers=headers), 202)
    failing = f"/backtests/{second['id']}/transition"
    data(await stack.http.post(failing, json={"toStatus": "running"}, headers=headers))
    failed = data(await stack.http.post(failing, json={"toStatus": "failed"}, headers=headers))
    assert failed["status"] == "failed" and failed["error"]["code"] == "BACKTEST_REPORTED_FAILED"
    again = data(await stack.http.post(failing, json={"toStatus": "pending"}, headers=headers))
    assert again["status"] == "pending" and again["runBy"] == "client" and again["metrics"] == {}
    assert data(await stack.http.post(f"/backtests/{second['id']}/cancel", headers=headers))["status"] == "cancelled"
    bad = error(await move("completed", metrics={"returnRate": "NaN"}), 422)
    assert bad["code"] == "VALIDATION_ERROR"


async def test_the_e2e_completed_seed_runs_our_engine_on_its_inline_prices(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, shortWindow=5, longWindow=20)
    config = {
        "displayName": "已完成回测",
        "symbol": "AAPL",
        "prices": E2E_PRICES,
        "startDate": "2026-01-01",
        "endDate": "2026-01-31",
        "timeframe": "1Day",
        "initialCapital": 100000,
        "commissionRate": 0.0,
    }
    answer = data(
        await stack.http.post(
            "/backtests/tasks", json={"strategyId": strategy["id"], "config": config}, headers=headers
        ),
        202,
    )
    task = answer["backtestTask"]
    assert task["runBy"] == "engine" and task["displayName"] == "已完成回测"
    assert (await settled(stack, headers, task["id"]))["status"] == "completed"
    result = data(await stack.http.get(f"/backtests/{task['id']}/result", headers=headers))
    parsed = BacktestConfig.model_validate(config)
    expected = engine_run.run(parsed.inline_bars(), "moving_average", {"shortWindow": 5, "longWindow": 20}, parsed)
    assert len(result["equityCurve"]) == len(E2E_PRICES)
    assert result["metrics"] == pytest.approx(expected["metrics"])
    stamps = [point["timestamp"][:10] for point in result["equityCurve"]]
    assert stamps[0] == "2026-01-01" and stamps[-1] == "2026-01-30"  # the inline series, one bar a day


@pytest.mark.parametrize(
    "config, timeframe",
    [
        ({"symbols": "AAPL", "frequency": "1d"}, "1Day"),
        ({"symbols": ["MSFT"], "frequency": "1h", "startDate": "2024-01-01", "endDate": "2024-03-01"}, "1Hour"),
        ({"symbol": "AAPL", "timeframe": "1Day", "initialCapital": 1000000}, "1Day"),
    ],
)
async def test_the_create_dialog_s_config_shapes(stack, config, timeframe):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers)
    body = {"strategyId": strategy["id"], "config": {"startDate": "2023-01-01", "endDate": "2023-12-31", **config}}
    task = data(await stack.http.post("/backtests", json=body, headers=headers), 202)
    assert task["runBy"] == "engine" and task["config"]["timeframe"] == timeframe
    assert task["config"]["symbol"] in ("AAPL", "MSFT") and task["displayName"] is None
    assert (await settled(stack, headers, task["id"]))["status"] == "completed"


@pytest.mark.parametrize(
    "config",
    [
        {"symbols": ["AAPL", "MSFT"]},
        {"symbol": "AAPL", "frequency": "30m"},
        {"symbol": "AAPL", "frequency": "1d", "timeframe": "1Hour"},
        {"symbol": "AAPL", "prices": [100]},
        {"symbol": "AAPL", "prices": [100, -1]},
        {"symbol": "AAPL", "prices": [100] * 20_001},
    ],
)
async def test_config_shapes_that_cannot_mean_one_thing_are_refused(stack, config):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers)
    body = {"strategyId": strategy["id"], "config": config}
    refused = error(await stack.http.post("/backtests", json=body, headers=headers), 422)
    assert refused["code"] == "BACKTEST_INVALID_CONFIG"
    assert data(await stack.http.get("/backtests", headers=headers))["total"] == 0


async def test_lists_are_newest_first_and_the_compare_page_reads_metrics_in_order(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await draft_strategy(stack, headers)
    ids = []
    for name in ("first", "second", "third"):
        body = {"strategyId": strategy["id"], "config": {"displayName": name}}
        ids.append(data(await stack.http.post("/backtests", json=body, headers=headers), 202)["id"])
    for index, task_id in enumerate(ids):
        move = f"/backtests/{task_id}/transition"
        data(await stack.http.post(move, json={"toStatus": "running"}, headers=headers))
        report = {"toStatus": "completed", "metrics": {"returnRate": index / 10}}
        data(await stack.http.post(move, json=report, headers=headers))
    listed = data(await stack.http.get("/backtests", headers=headers))
    assert [t["id"] for t in listed["items"]] == ids[::-1]
    stats = data(await stack.http.get(f"/strategies/{strategy['id']}/backtest-stats", headers=headers))
    assert stats["completedCount"] == 3 and stats["averageWinRate"] == 0  # numbers, never null
    latest = data(
        await stack.http.get(
            f"/strategies/{strategy['id']}/backtests",
            params={"status": "completed", "page": 1, "pageSize": 1},
            headers=headers,
        )
    )
    assert latest["items"][0]["id"] == ids[-1]
    compared = data(await stack.http.post("/backtests/compare", json={"taskIds": [ids[2], ids[0]]}, headers=headers))
    assert compared["metrics"] == [{"returnRate": 0.2}, {"returnRate": 0.0}]
    related = data(await stack.http.get(f"/backtests/{ids[0]}/related", params={"limit": 10}, headers=headers))
    assert [t["id"] for t in related] == [ids[2], ids[1]]


async def test_the_trading_pages_read_what_they_need(stack):
    """/trading, /trading/accounts and /trading/analytics (contract §2.7): every money field a number."""
    _, _, headers = await stack.new_account(PASSWORD)
    empty = data(await stack.http.get("/trading/accounts/filter-config", headers=headers))
    assert empty["totalAssets"] is None and empty["statusCounts"] == {"active": 0, "inactive": 0}
    assert empty["accountTypeCounts"] == {"paper": 0}

    zero = data(
        await stack.http.post("/trading/accounts", json={"accountName": "零", "initialCapital": 0}, headers=headers),
        201,
    )
    assert (
        zero["isActive"] is True
        and data(await stack.http.get(f"/trading/accounts/{zero['id']}/cash-flows", headers=headers)) == []
    )
    account = data(
        await stack.http.post(
            "/trading/accounts", json={"accountName": "主账户", "initialCapital": 10000}, headers=headers
        ),
        201,
    )["id"]
    data(await stack.http.put(f"/trading/accounts/{zero['id']}", json={}, headers=headers))
    data(await stack.http.put(f"/trading/accounts/{zero['id']}", json={"isActive": False}, headers=headers))
    listed = data(await stack.http.get("/trading/accounts", headers=headers))
    assert [(a["accountName"], a["isActive"]) for a in listed] == [("零", False), ("主账户", True)]
    assert all(isinstance(a["id"], str) and a["createdAt"] for a in listed)

    base = f"/trading/accounts/{account}"
    data(
        await stack.http.post(f"{base}/buy", json={"symbol": "AAPL", "quantity": 1.5, "price": 10.25}, headers=headers)
    )
    data(await stack.http.post(f"{base}/sell", json={"symbol": "AAPL", "quantity": 0.5, "price": 12}, headers=headers))
    too_dear = await stack.http.post(
        f"{base}/buy", json={"symbol": "AAPL", "quantity": 1000, "price": 100}, headers=headers
    )
    assert error(too_dear, 409)["code"] == "INSUFFICIENT_FUNDS"
    too_much = await stack.http.post(f"{base}/withdraw", json={"amount": 1e6}, headers=headers)
    assert error(too_much, 409)["code"] == "INSUFFICIENT_FUNDS"
    data(await stack.http.post(f"{base}/deposit", json={"amount": 100}, headers=headers))

    overview = data(await stack.http.get(f"{base}/overview", headers=headers))
    for field in (
        "cashBalance",
        "totalMarketValue",
        "positionCount",
        "unrealizedPnl",
        "orderCount",
        "pendingOrderCount",
        "filledOrderCount",
        "tradeCount",
        "turnover",
    ):
        assert isinstance(overview[field], int | float), field
    (position,) = data(await stack.http.get(f"{base}/positions", headers=headers))
    assert (position["symbol"], position["quantity"], position["avgPrice"], position["lastPrice"]) == (
        "AAPL",
        1,
        10.25,
        12,
    )
    orders = data(await stack.http.get(f"{base}/orders", headers=headers))
    assert [(o["side"], o["status"]) for o in orders] == [("SELL", "filled"), ("BUY", "filled")]
    assert all({"id", "symbol", "quantity", "price", "createdAt"} <= set(o) for o in orders)
    cancelled = await stack.http.post(f"{base}/orders/{orders[0]['id']}/cancel", headers=headers)
    assert error(cancelled, 409)["code"] == "ORDER_INVALID_TRANSITION"
    assert (
        error(await stack.http.post(f"{base}/orders/missing/cancel", headers=headers), 404)["code"] == "ORDER_NOT_FOUND"
    )

    risk = data(await stack.http.get(f"{base}/risk-metrics", headers=headers))
    assert risk["riskLevel"] in ("low", "medium", "high") and isinstance(risk["leverage"], float)
    assert isinstance(risk["exposureRatio"], float) and isinstance(risk["riskScore"], int | float)
    curve = data(await stack.http.get(f"{base}/equity-curve", headers=headers))
    assert len(curve) == 4 and len({p["timestamp"] for p in curve}) == 4
    assert all(isinstance(p["equity"], int | float) for p in curve)
    stats = data(await stack.http.get(f"{base}/trade-stats", headers=headers))
    assert (stats["tradeCount"], stats["turnover"]) == (2, 21.375)
    flows = data(await stack.http.get(f"{base}/cash-flows", headers=headers))
    assert [(f["flowType"], f["amount"]) for f in flows] == [
        ("deposit", 100),
        ("trade_sell", 6),
        ("trade_buy", -15.375),
        ("deposit", 10000),
    ]
    summary = data(await stack.http.get(f"{base}/cash-flows/summary", headers=headers))
    assert (summary["totalInflow"], summary["totalOutflow"], summary["netFlow"]) == (10106, 15.375, 10090.625)

    pending = await stack.http.get(f"{base}/risk-assessment", headers=headers)
    assert error(pending, 202)["code"] == "RISK_ASSESSMENT_PENDING"
    assessment = data(await stack.http.post(f"{base}/risk-assessment/evaluate", headers=headers))
    assert isinstance(assessment["assessmentId"], str) and assessment["triggeredRuleIds"] == []
    aggregate = data(await stack.http.get("/trading/accounts/aggregate", headers=headers))
    for field in (
        "accountCount",
        "pendingOrderCount",
        "totalEquity",
        "totalCashBalance",
        "totalMarketValue",
        "totalUnrealizedPnl",
    ):
        assert isinstance(aggregate[field], int | float), field
    config = data(await stack.http.get("/trading/accounts/filter-config", headers=headers))
    assert config["statusCounts"] == {"active": 1, "inactive": 1}
    assert set(config["riskLevelCounts"]) == {"LOW", "MEDIUM", "HIGH", "UNKNOWN"}
    assert set(config["totalAssets"]) == {"min", "max", "average"} and config["accountTypeCounts"] == {"paper": 2}
