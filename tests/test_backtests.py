"""Backtests over HTTP: every template through its workflow to a result, the reference's routes and rules,
idempotency, and ownership on every route."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from core.temporal import STRATEGY_ID
from domain import backtest as engine_run
from domain.backtest import BacktestConfig
from domain.strategies import TEMPLATES
from integrations.market_data.synthetic import SyntheticProvider
from tests.conftest import data, error

PASSWORD = "Backtest1Password"
CONFIG = {"symbol": "AAPL", "startDate": "2022-01-01", "endDate": "2023-12-31", "commissionRate": 0.001}
METRICS = {
    "returnRate",
    "cagr",
    "annualVolatility",
    "sharpeRatio",
    "sortinoRatio",
    "maxDrawdown",
    "calmarRatio",
    "tradeCount",
    "winRate",
    "profitFactor",
    "expectancy",
    "sqn",
    "exposure",
    "finalEquity",
}
REASONS = {
    "moving_average": ("moving_average_bullish_cross", "moving_average_bearish_cross"),
    "bollinger_bands": ("bollinger_lower_band_break", "bollinger_middle_band_reversion"),
    "rsi": ("rsi_oversold_reversal", "rsi_overbought"),
    "macd": ("macd_bullish_cross", "macd_bearish_cross"),
    "mean_reversion": ("mean_reversion_oversold", "mean_reversion_overbought"),
    "momentum": ("momentum_breakout", "momentum_reversal"),
}


async def active_strategy(stack, headers, template: str = "moving_average", **parameters) -> dict:
    body = {"name": f"{template} test", "template": template, "parameters": parameters}
    created = data(await stack.http.post("/strategies", json=body, headers=headers), 201)
    data(await stack.http.post(f"/strategies/{created['id']}/activate", headers=headers))
    return created


async def submit(stack, headers, strategy_id: str, config: dict | None = None, **extra) -> dict:
    body = {"strategyId": strategy_id, "config": config or CONFIG, **extra}
    return data(await stack.http.post("/backtests/tasks", json=body, headers=headers), 202)


async def settled(stack, headers, backtest_id: str, timeout: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        backtest = data(await stack.http.get(f"/backtests/{backtest_id}", headers=headers))
        if backtest["status"] in ("completed", "failed", "cancelled"):
            return backtest
        assert asyncio.get_running_loop().time() < deadline, f"backtest still {backtest['status']}"
        await asyncio.sleep(0.2)


async def test_every_template_backtests_to_a_full_result(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    started = {}
    for template in TEMPLATES:
        strategy = await active_strategy(stack, headers, template)
        task = await submit(stack, headers, strategy["id"])
        assert task["taskType"] == "backtest_run" and task["backtestTask"]["strategyId"] == strategy["id"]
        started[template] = task["backtestTask"]["id"]
    for template, backtest_id in started.items():
        backtest = await settled(stack, headers, backtest_id)
        assert backtest["status"] == "completed", backtest
        job = data(await stack.http.get(f"/jobs/{backtest['jobId']}", headers=headers))
        assert job["status"] == "succeeded" and job["executor"]["dispatchId"] == f"backtest-{backtest_id}"
        described = await stack.temporal.get_workflow_handle(f"backtest-{backtest_id}").describe()
        assert described.typed_search_attributes.get(STRATEGY_ID) == backtest["strategyId"]
        result = data(await stack.http.get(f"/backtests/{backtest_id}/result", headers=headers))
        assert METRICS <= set(result["metrics"]) and result["template"] == template
        assert backtest["metrics"] == result["metrics"]
        bars = result["metrics"]["barCount"]
        assert len(result["equityCurve"]) == len(result["dailyReturns"]) == bars > 400
        assert result["metrics"]["tradeCount"] == sum(t["side"] == "SELL" for t in result["trades"]) > 0
        entry, exit_ = REASONS[template]
        assert {t["reason"] for t in result["trades"] if t["side"] == "BUY"} == {entry}
        assert {t["reason"] for t in result["trades"] if t["side"] == "SELL"} <= {exit_, "force_close"}
        assert result["equityCurve"][-1]["equity"] == pytest.approx(result["metrics"]["finalEquity"])


async def test_the_stored_result_is_the_engine_over_the_stored_bars(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "macd", fast=8, slow=21, signal=5)
    config = {**CONFIG, "slippageBps": 5, "positionFraction": 0.5, "fractional": False}
    backtest_id = (await submit(stack, headers, strategy["id"], config))["backtestTask"]["id"]
    assert (await settled(stack, headers, backtest_id))["status"] == "completed"
    result = data(await stack.http.get(f"/backtests/{backtest_id}/result", headers=headers))

    provider = SyntheticProvider(seed=stack.settings.synthetic_seed)
    bars = provider.bars(
        "AAPL", "1Day", datetime(2022, 1, 1, tzinfo=UTC), datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)
    )
    parsed = BacktestConfig.model_validate(config)
    expected = engine_run.run(bars, "macd", {"fast": 8, "slow": 21, "signal": 5}, parsed)
    assert result["metrics"] == pytest.approx(expected["metrics"], rel=1e-12)
    assert result["trades"] == expected["trades"] and result["equityCurve"] == expected["equityCurve"]
    assert all(t["quantity"] == int(t["quantity"]) for t in result["trades"])


async def test_refusals_leave_nothing_behind(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    draft = data(await stack.http.post("/strategies", json={"name": "d", "template": "rsi"}, headers=headers), 201)
    body = {"strategyId": draft["id"], "config": CONFIG}
    assert error(await stack.http.post("/backtests/tasks", json=body, headers=headers), 409)["code"] == (
        "BACKTEST_STRATEGY_INACTIVE"
    )
    strategy = await active_strategy(stack, headers)
    for config in ({"startDate": "2022-01-01"}, {**CONFIG, "initialCapital": 0}, {**CONFIG, "timeframe": "7Y"}):
        refused = error(
            await stack.http.post(
                "/backtests/tasks", json={"strategyId": strategy["id"], "config": config}, headers=headers
            ),
            422,
        )
        assert refused["code"] == "BACKTEST_INVALID_CONFIG" and refused["details"]
    assert data(await stack.http.get("/backtests", headers=headers))["total"] == 0
    assert data(await stack.http.get("/jobs", headers=headers))["total"] == 0
    by_jobs = {"taskType": "backtest_run", "payload": {}, "idempotencyKey": "direct"}
    assert error(await stack.http.post("/jobs", json=by_jobs, headers=headers), 400)["code"] == "INVALID_ARGUMENT"


async def test_too_few_bars_fail_the_run_and_a_retry_runs_again(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=5, longWindow=60)
    short = {**CONFIG, "startDate": "2023-11-01", "endDate": "2023-12-31"}
    backtest_id = (await submit(stack, headers, strategy["id"], short))["backtestTask"]["id"]
    failed = await settled(stack, headers, backtest_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "BACKTEST_INSUFFICIENT_DATA"
    assert "needs 62" in failed["error"]["message"]
    assert error(await stack.http.get(f"/backtests/{backtest_id}/result", headers=headers), 404)["code"] == (
        "BACKTEST_RESULT_NOT_READY"
    )
    by_job = error(await stack.http.post(f"/jobs/{failed['jobId']}/retry", headers=headers), 409)
    assert by_job["code"] == "INVALID_TRANSITION"  # a backtest's run is retried through the backtest
    data(await stack.http.post(f"/strategies/{strategy['id']}/deactivate", headers=headers))
    inactive = error(await stack.http.post(f"/backtests/{backtest_id}/retry", headers=headers), 409)
    assert inactive["code"] == "BACKTEST_STRATEGY_INACTIVE"
    data(await stack.http.post(f"/strategies/{strategy['id']}/activate", headers=headers))
    retried = data(await stack.http.post(f"/backtests/{backtest_id}/retry", headers=headers), 202)
    assert retried["jobId"] != failed["jobId"] and retried["status"] in ("pending", "running", "failed")
    again = await settled(stack, headers, backtest_id)
    assert again["status"] == "failed" and again["jobId"] == retried["jobId"]
    data(await stack.http.delete(f"/backtests/{backtest_id}", headers=headers))
    assert error(await stack.http.get(f"/backtests/{backtest_id}", headers=headers), 403)["code"] == (
        "BACKTEST_ACCESS_DENIED"
    )


async def test_idempotency_key(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers)
    first = await submit(stack, headers, strategy["id"], idempotencyKey="bt-1")
    repeat = await stack.http.post(
        "/backtests/tasks",
        json={"strategyId": strategy["id"], "config": CONFIG, "idempotencyKey": "bt-1"},
        headers=headers,
    )
    assert data(repeat)["backtestTask"]["id"] == first["backtestTask"]["id"]
    other = {"strategyId": strategy["id"], "config": {**CONFIG, "symbol": "MSFT"}, "idempotencyKey": "bt-1"}
    assert error(await stack.http.post("/backtests/tasks", json=other, headers=headers), 409)["code"] == (
        "BACKTEST_IDEMPOTENCY_CONFLICT"
    )
    assert data(await stack.http.get("/backtests", headers=headers))["total"] == 1


async def test_statistics_compare_related_and_rename(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers)
    other = await active_strategy(stack, headers, "momentum")
    ids = [(await submit(stack, headers, s["id"]))["backtestTask"]["id"] for s in (strategy, strategy, other)]
    results = [await settled(stack, headers, i) for i in ids]
    assert all(r["status"] == "completed" for r in results)

    stats = data(await stack.http.get("/backtests/statistics", headers=headers))
    assert stats["completedCount"] == stats["totalCount"] == 3 and stats["pendingCount"] == 0
    returns = [r["metrics"]["returnRate"] for r in results]
    assert stats["averageReturnRate"] == pytest.approx(sum(returns) / 3)
    per_strategy = data(await stack.http.get(f"/strategies/{other['id']}/backtest-stats", headers=headers))
    assert per_strategy["totalCount"] == 1 and per_strategy["averageReturnRate"] == pytest.approx(returns[2])

    compared = data(await stack.http.post("/backtests/compare", json={"taskIds": ids}, headers=headers))
    assert [t["taskId"] for t in compared["tasks"]] == ids
    assert compared["summary"]["bestReturnRate"] == pytest.approx(max(returns))
    assert compared["summary"]["worstReturnRate"] == pytest.approx(min(returns))
    assert [m["returnRate"] for m in compared["metrics"]] == pytest.approx(returns)  # the front end's table

    related = data(await stack.http.get(f"/backtests/{ids[0]}/related", headers=headers))
    assert [t["id"] for t in related] == [ids[1]]  # a plain array, as the front end maps over it
    listed = data(await stack.http.get(f"/strategies/{strategy['id']}/backtests", headers=headers))
    assert {t["id"] for t in listed["items"]} == set(ids[:2])
    filtered = data(await stack.http.get("/backtests", params={"status": "failed"}, headers=headers))
    assert filtered["total"] == 0

    renamed = data(
        await stack.http.patch(f"/backtests/{ids[0]}/name", json={"displayName": "Baseline"}, headers=headers)
    )
    assert renamed["displayName"] == "Baseline"
    assert data(await stack.http.get(f"/backtests/{ids[0]}/result", headers=headers))["displayName"] == "Baseline"
    refused = error(
        await stack.http.post(f"/backtests/{ids[0]}/transition", json={"toStatus": "running"}, headers=headers), 409
    )
    assert refused["code"] == "BACKTEST_INVALID_STATE"
    assert error(await stack.http.post(f"/backtests/{ids[0]}/cancel", headers=headers), 409)["code"] == (
        "BACKTEST_INVALID_STATE"
    )


async def test_pending_backtests_block_deletion_until_cancelled(idle_stack):
    stack = idle_stack
    email = "idle-owner@example.com"
    created = await stack.cli("users", "create", "--email", email, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert created.exit_code == 0, created.output
    headers = await stack.login(email, PASSWORD)
    strategy = await active_strategy(stack, headers)
    created = data(
        await stack.http.post(f"/strategies/{strategy['id']}/backtests", json={"config": CONFIG}, headers=headers),
        202,
    )
    assert created["status"] == "pending" and created["config"]["periodsPerYear"] == 252
    backtest_id = created["id"]
    assert error(await stack.http.delete(f"/backtests/{backtest_id}", headers=headers), 409)["code"] == (
        "BACKTEST_DELETE_INVALID_STATE"
    )
    assert error(await stack.http.delete(f"/strategies/{strategy['id']}", headers=headers), 409)["code"] == (
        "STRATEGY_IN_USE"
    )
    cancelled = data(
        await stack.http.post(f"/backtests/{backtest_id}/transition", json={"toStatus": "cancelled"}, headers=headers)
    )
    assert cancelled["status"] == "cancelled"
    pending = data(
        await stack.http.post(f"/backtests/{backtest_id}/transition", json={"toStatus": "pending"}, headers=headers)
    )
    assert pending["status"] == "pending" and pending["jobId"] != created["jobId"]
    assert data(await stack.http.post(f"/backtests/{backtest_id}/cancel", headers=headers))["status"] == "cancelled"
    data(await stack.http.delete(f"/strategies/{strategy['id']}", headers=headers))
    assert error(await stack.http.get(f"/backtests/{backtest_id}", headers=headers), 403)["code"] == (
        "BACKTEST_ACCESS_DENIED"
    )


async def test_a_second_user_is_denied_every_route(stack):
    _, _, owner = await stack.new_account(PASSWORD)
    _, _, intruder = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, owner)
    backtest_id = (await submit(stack, owner, strategy["id"]))["backtestTask"]["id"]
    await settled(stack, owner, backtest_id)
    sid, bid = strategy["id"], backtest_id
    denied_backtest = [
        ("POST", "/backtests", {"strategyId": sid, "config": CONFIG}),
        ("POST", "/backtests/tasks", {"strategyId": sid, "config": CONFIG}),
        ("POST", "/backtests/compare", {"taskIds": [bid]}),
        ("GET", f"/backtests/{bid}/result", None),
        ("PATCH", f"/backtests/{bid}/name", {"displayName": "mine"}),
        ("GET", f"/backtests/{bid}/related", None),
        ("GET", f"/backtests/{bid}", None),
        ("POST", f"/backtests/{bid}/transition", {"toStatus": "pending"}),
        ("POST", f"/backtests/{bid}/cancel", None),
        ("POST", f"/backtests/{bid}/retry", None),
        ("DELETE", f"/backtests/{bid}", None),
    ]
    denied_strategy = [
        ("POST", f"/strategies/{sid}/backtests", {"config": CONFIG}),
        ("GET", f"/strategies/{sid}/backtests", None),
        ("GET", f"/strategies/{sid}/backtest-stats", None),
        ("GET", f"/strategies/{sid}", None),
        ("PUT", f"/strategies/{sid}", {"name": "mine"}),
        ("POST", f"/strategies/{sid}/validate-execution", {}),
        ("POST", f"/strategies/{sid}/activate", None),
        ("POST", f"/strategies/{sid}/deactivate", None),
        ("POST", f"/strategies/{sid}/archive", None),
        ("DELETE", f"/strategies/{sid}", None),
    ]
    for code, routes in (("BACKTEST_ACCESS_DENIED", denied_backtest), ("STRATEGY_ACCESS_DENIED", denied_strategy)):
        for method, path, body in routes:
            response = await stack.http.request(method, path, json=body, headers=intruder)
            assert error(response, 403)["code"] == code, (method, path)
    # The intruder's own views do not show the owner's backtests, and nothing of the owner's changed.
    assert data(await stack.http.get("/backtests", headers=intruder))["total"] == 0
    assert data(await stack.http.get("/backtests/statistics", headers=intruder))["totalCount"] == 0
    mine = data(await stack.http.get(f"/backtests/{bid}", headers=owner))
    assert mine["status"] == "completed" and mine["displayName"] is None
