"""Portfolios over HTTP and the CLI: CRUD with versions, constraint and weight rules, ownership on every route,
the read model checked against numpy over the members' real backtest results, and the evaluation and
rebalance jobs through their workflows; plus the projection into the constraints as a pure function."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import datetime

import numpy as np
import pytest

from db.engine import Database
from domain import portfolios as rules
from tests.conftest import data, error
from worker import build_worker

PASSWORD = "Portfolio1Password"
PERIOD = {"startDate": "2022-01-01", "endDate": "2023-12-31"}


async def strategy(stack, headers, template: str = "moving_average", *, active: bool = False, **parameters) -> str:
    body = {"name": f"{template} {uuid.uuid4().hex[:6]}", "template": template, "parameters": parameters}
    created = data(await stack.http.post("/strategies", json=body, headers=headers), 201)
    if active:
        data(await stack.http.post(f"/strategies/{created['id']}/activate", headers=headers))
    return created["id"]


async def backtest(stack, headers, strategy_id: str, **config) -> str:
    """Run a backtest to completion; its id."""
    body = {"strategyId": strategy_id, "config": {"symbol": "AAPL", **PERIOD, **config}}
    backtest_id = data(await stack.http.post("/backtests/tasks", json=body, headers=headers), 202)["backtestTask"]["id"]
    deadline = asyncio.get_running_loop().time() + 60
    while (found := data(await stack.http.get(f"/backtests/{backtest_id}", headers=headers)))["status"] != "completed":
        assert found["status"] in ("pending", "running"), found
        assert asyncio.get_running_loop().time() < deadline, "the backtest did not finish"
        await asyncio.sleep(0.2)
    return backtest_id


async def finished(stack, headers, task_id: str) -> dict:
    """The job once it has ended."""
    deadline = asyncio.get_running_loop().time() + 60
    while (job := data(await stack.http.get(f"/jobs/{task_id}", headers=headers)))["status"] in ("queued", "running"):
        assert asyncio.get_running_loop().time() < deadline, f"job still {job['status']}"
        await asyncio.sleep(0.1)
    return job


async def create(stack, headers, members: dict[str, float], **extra) -> dict:
    body = {"name": "core", "members": [{"strategyId": s, "weight": w} for s, w in members.items()], **extra}
    return data(await stack.http.post("/portfolios", json=body, headers=headers), 201)


def weights_of(portfolio: dict) -> dict[str, float]:
    return {m["strategyId"]: m["weight"] for m in portfolio["members"]}


async def test_crud_and_every_change_increments_the_version(stack):
    _, user, headers = await stack.new_account(PASSWORD)
    first, second = await strategy(stack, headers), await strategy(stack, headers, "rsi")
    created = await create(stack, headers, {first: 0.4})
    pid = created["id"]
    assert pid.startswith(f"{user['id']}-portfolio-") and created["userId"] == user["id"]
    assert created["status"] == "draft" and created["version"] == 1 and created["totalWeight"] == 0.4
    assert created["constraints"] == {"maxTotalWeight": 1.0, "maxSingleWeight": 1.0}
    assert data(await stack.http.get(f"/portfolios/{pid}", headers=headers)) == created

    added = data(
        await stack.http.post(f"/portfolios/{pid}/members", json={"strategyId": second, "weight": 0.3}, headers=headers)
    )
    assert added["version"] == 2 and weights_of(added) == {first: 0.4, second: 0.3} and added["totalWeight"] == 0.7
    reweighted = data(
        await stack.http.post(f"/portfolios/{pid}/members", json={"strategyId": second, "weight": 0.5}, headers=headers)
    )
    assert reweighted["version"] == 3 and weights_of(reweighted)[second] == 0.5
    member = next(m for m in reweighted["members"] if m["strategyId"] == second)
    assert datetime.fromisoformat(member["updatedAt"]) > datetime.fromisoformat(member["createdAt"])
    same = data(
        await stack.http.post(f"/portfolios/{pid}/members", json={"strategyId": second, "weight": 0.5}, headers=headers)
    )
    assert same["version"] == 3  # nothing changed

    steps = [
        ({"name": "renamed"}, {"name": "renamed"}),
        ({"status": "active"}, {"status": "active"}),
        ({"status": "draft"}, {"status": "draft"}),
        ({"constraints": {"maxSingleWeight": 0.6}}, {"constraints": {"maxTotalWeight": 1.0, "maxSingleWeight": 0.6}}),
    ]
    version = 3
    for body, expected in steps:
        updated = data(await stack.http.put(f"/portfolios/{pid}", json=body, headers=headers))
        version += 1
        assert updated["version"] == version and updated.items() >= expected.items(), (body, updated)
    unchanged = data(await stack.http.put(f"/portfolios/{pid}", json={"name": "renamed"}, headers=headers))
    assert unchanged["version"] == version

    removed = data(await stack.http.delete(f"/portfolios/{pid}/members/{first}", headers=headers))
    assert removed["version"] == version + 1 and weights_of(removed) == {second: 0.5}
    gone = error(await stack.http.delete(f"/portfolios/{pid}/members/{first}", headers=headers), 404)
    assert gone["code"] == "PORTFOLIO_MEMBER_NOT_FOUND"

    other = await create(stack, headers, {})
    listed = data(await stack.http.get("/portfolios", params={"pageSize": 1}, headers=headers))
    assert listed["total"] == 2 and [p["id"] for p in listed["items"]] == [other["id"]]
    assert (
        data(await stack.http.get("/portfolios", params={"page": 2, "pageSize": 1}, headers=headers))["items"][0]["id"]
        == pid
    )

    archived = data(await stack.http.put(f"/portfolios/{pid}", json={"status": "archived"}, headers=headers))
    assert archived["status"] == "archived" and archived["version"] == version + 2
    by_status = data(await stack.http.get("/portfolios", params={"status": "archived"}, headers=headers))
    assert [p["id"] for p in by_status["items"]] == [pid]
    for method, path, body, code in [
        ("PUT", f"/portfolios/{pid}", {"name": "again"}, "PORTFOLIO_ARCHIVED"),
        ("PUT", f"/portfolios/{pid}", {"status": "active"}, "PORTFOLIO_INVALID_TRANSITION"),
        ("POST", f"/portfolios/{pid}/members", {"strategyId": first, "weight": 0.1}, "PORTFOLIO_ARCHIVED"),
        ("POST", f"/portfolios/{pid}/rebalance-task", {"method": "equal", "apply": True}, "PORTFOLIO_ARCHIVED"),
    ]:
        assert error(await stack.http.request(method, path, json=body, headers=headers), 409)["code"] == code
    assert error(await stack.http.delete(f"/portfolios/{pid}/members/{second}", headers=headers), 409)["code"] == (
        "PORTFOLIO_ARCHIVED"
    )
    assert data(await stack.http.get(f"/portfolios/{pid}", headers=headers))["version"] == version + 2

    assert data(await stack.http.delete(f"/portfolios/{pid}", headers=headers)) == {"portfolioId": pid}
    assert error(await stack.http.get(f"/portfolios/{pid}", headers=headers), 403)["code"] == "PORTFOLIO_ACCESS_DENIED"
    assert data(await stack.http.get(f"/strategies/{second}", headers=headers))["id"] == second  # strategies stay


async def test_constraints_and_weights_are_checked(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    a, b = await strategy(stack, headers), await strategy(stack, headers)
    for constraints in (
        {"maxTotalWeight": 0.5, "maxSingleWeight": 0.8},
        {"maxTotalWeight": 0, "maxSingleWeight": 0},
        {"maxTotalWeight": -1},
        {"maxTotalWeight": 11, "maxSingleWeight": 1},
    ):
        body = {"name": "x", "constraints": constraints}
        refused = error(await stack.http.post("/portfolios", json=body, headers=headers), 422)
        assert refused["code"] == "PORTFOLIO_INVALID_CONSTRAINTS" and refused["details"], constraints
    limits = {"maxTotalWeight": 0.8, "maxSingleWeight": 0.5}
    for members in ({a: 0.0}, {a: -0.1}, {a: 0.6}, {a: 0.5, b: 0.4}):
        body = {
            "name": "x",
            "constraints": limits,
            "members": [{"strategyId": s, "weight": w} for s, w in members.items()],
        }
        refused = error(await stack.http.post("/portfolios", json=body, headers=headers), 422)
        assert refused["code"] == "PORTFOLIO_INVALID_WEIGHTS" and refused["details"], members
    twice = {"name": "x", "members": [{"strategyId": a, "weight": 0.1}, {"strategyId": a, "weight": 0.2}]}
    assert error(await stack.http.post("/portfolios", json=twice, headers=headers), 422)["code"] == (
        "PORTFOLIO_INVALID_WEIGHTS"
    )
    assert data(await stack.http.get("/portfolios", headers=headers))["total"] == 0

    portfolio = await create(stack, headers, {a: 0.5}, constraints=limits)
    pid = portfolio["id"]
    for body, code in [
        ({"strategyId": b, "weight": 0.4}, "PORTFOLIO_INVALID_WEIGHTS"),  # 0.9 > maxTotalWeight
        ({"strategyId": b, "weight": 0.6}, "PORTFOLIO_INVALID_WEIGHTS"),  # > maxSingleWeight
        ({"strategyId": b, "weight": 0}, "PORTFOLIO_INVALID_WEIGHTS"),
    ]:
        assert (
            error(await stack.http.post(f"/portfolios/{pid}/members", json=body, headers=headers), 422)["code"] == code
        )
    for constraints, code in [
        ({"maxSingleWeight": 0.4}, "PORTFOLIO_INVALID_WEIGHTS"),  # the member's 0.5 would break it
        ({"maxTotalWeight": 0.3}, "PORTFOLIO_INVALID_CONSTRAINTS"),  # below maxSingleWeight
    ]:
        refused = error(
            await stack.http.put(f"/portfolios/{pid}", json={"constraints": constraints}, headers=headers), 422
        )
        assert refused["code"] == code
    bad_targets = [
        ({"targetWeights": {b: 0.1}}, "PORTFOLIO_INVALID_WEIGHTS"),  # not a member
        ({"targetWeights": {a: 0}}, "PORTFOLIO_INVALID_WEIGHTS"),
        ({"targetWeights": {a: 0.1}, "method": "equal"}, "VALIDATION_ERROR"),
    ]
    for body, code in bad_targets:
        assert (
            error(await stack.http.post(f"/portfolios/{pid}/rebalance-task", json=body, headers=headers), 422)["code"]
            == code
        )
    assert data(await stack.http.get(f"/portfolios/{pid}", headers=headers))["version"] == 1
    assert data(await stack.http.get("/jobs", headers=headers))["total"] == 0


async def test_another_user_is_denied_every_route(stack):
    _, _, owner = await stack.new_account(PASSWORD)
    _, _, stranger = await stack.new_account(PASSWORD)
    mine = await strategy(stack, owner)
    theirs = await strategy(stack, stranger)
    pid = (await create(stack, owner, {mine: 0.5}))["id"]
    for portfolio_id in (pid, f"{uuid.uuid4()}"):
        for method, path, body in [
            ("GET", f"/portfolios/{portfolio_id}", None),
            ("PUT", f"/portfolios/{portfolio_id}", {"name": "mine now"}),
            ("DELETE", f"/portfolios/{portfolio_id}", None),
            ("POST", f"/portfolios/{portfolio_id}/members", {"strategyId": theirs, "weight": 0.1}),
            ("DELETE", f"/portfolios/{portfolio_id}/members/{mine}", None),
            ("GET", f"/portfolios/{portfolio_id}/read-model", None),
            ("POST", f"/portfolios/{portfolio_id}/evaluation-task", {}),
            ("POST", f"/portfolios/{portfolio_id}/rebalance-task", {"method": "equal", "apply": True}),
        ]:
            refused = error(await stack.http.request(method, path, json=body, headers=stranger), 403)
            assert refused["code"] == "PORTFOLIO_ACCESS_DENIED", (method, path)
    assert data(await stack.http.get("/portfolios", headers=stranger))["total"] == 0
    # A member must be the caller's own strategy.
    body = {"name": "x", "members": [{"strategyId": theirs, "weight": 0.1}]}
    assert (
        error(await stack.http.post("/portfolios", json=body, headers=owner), 403)["code"] == "STRATEGY_ACCESS_DENIED"
    )
    add = {"strategyId": theirs, "weight": 0.1}
    refused = error(await stack.http.post(f"/portfolios/{pid}/members", json=add, headers=owner), 403)
    assert refused["code"] == "STRATEGY_ACCESS_DENIED"
    untouched = data(await stack.http.get(f"/portfolios/{pid}", headers=owner))
    assert untouched["version"] == 1 and weights_of(untouched) == {mine: 0.5}
    assert data(await stack.http.get("/jobs", headers=stranger))["total"] == 0


async def members_with_backtests(stack, headers) -> tuple[list[str], str, dict[str, str]]:
    """Three active strategies of different templates with completed backtests over different ranges (one on
    another symbol), and one strategy without a backtest: (with runs, without, strategy id → backtest id)."""
    specs = [
        ("moving_average", {"shortWindow": 5, "longWindow": 30}, {}),
        ("mean_reversion", {"window": 15}, {"startDate": "2022-03-01"}),
        ("macd", {"fast": 8, "slow": 21, "signal": 5}, {"symbol": "MSFT", "endDate": "2023-10-31"}),
    ]
    ids, runs = [], {}
    for template, parameters, config in specs:
        strategy_id = await strategy(stack, headers, template, active=True, **parameters)
        ids.append(strategy_id)
        runs[strategy_id] = await backtest(stack, headers, strategy_id, **config)
    return ids, await strategy(stack, headers, "rsi"), runs


async def expected_figures(stack, headers, runs: dict[str, str]) -> dict:
    """The members' daily returns by date, from their backtest results, over the dates they all share."""
    by_date = {}
    results = {}
    for strategy_id, backtest_id in runs.items():
        result = data(await stack.http.get(f"/backtests/{backtest_id}/result", headers=headers))
        results[strategy_id] = result
        stamps = [point["timestamp"][:10] for point in result["equityCurve"]]
        by_date[strategy_id] = dict(zip(stamps, result["dailyReturns"], strict=True))
    shared = sorted(set.intersection(*(set(d) for d in by_date.values())))
    matrix = np.array([[by_date[s][d] for d in shared] for s in runs])
    return {"shared": shared, "matrix": matrix, "results": results}


async def test_read_model_and_evaluation_from_the_members_backtests(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    ids, without, runs = await members_with_backtests(stack, headers)
    weights = dict(zip(ids, (0.3, 0.3, 0.2), strict=True))
    portfolio = await create(stack, headers, {**weights, without: 0.1})
    pid = portfolio["id"]

    model = data(await stack.http.get(f"/portfolios/{pid}/read-model", headers=headers))
    assert model["portfolioId"] == pid and model["version"] == 1 and model["missing"] == [without]
    assert {m["strategyId"]: m["backtestId"] for m in model["members"]} == runs
    figures = await expected_figures(stack, headers, runs)
    shared, matrix, results = figures["shared"], figures["matrix"], figures["results"]
    assert len(shared) > 300 and model["correlationSummary"]["sharedDates"] == len(shared)

    correlation = np.corrcoef(matrix)
    upper = correlation[np.triu_indices(len(ids), k=1)]
    summary = model["correlationSummary"]
    assert summary["averageCorrelation"] == pytest.approx(float(np.mean(upper)), rel=1e-9, abs=1e-12)
    assert [p["strategyIds"] for p in summary["pairs"]] == [[ids[0], ids[1]], [ids[0], ids[2]], [ids[1], ids[2]]]
    assert [p["correlation"] for p in summary["pairs"]] == pytest.approx(list(upper), rel=1e-9, abs=1e-12)

    w = np.array([weights[s] for s in ids])
    rates = np.array([results[s]["metrics"]["returnRate"] for s in ids])
    drawdowns = np.array([results[s]["metrics"]["maxDrawdown"] for s in ids])
    centre = float(w @ rates / w.sum())
    assert summary["dispersion"] == pytest.approx(math.sqrt(float(w @ (rates - centre) ** 2 / w.sum())), rel=1e-9)
    performance = model["performanceSummary"]
    assert performance["weightedAveragePnl"] == pytest.approx(centre, rel=1e-12)
    assert performance["weightedMaxDrawdown"] == pytest.approx(float(w @ np.abs(drawdowns) / w.sum()), rel=1e-12)
    assert performance["totalWeight"] == pytest.approx(0.9) and performance["evaluatedWeight"] == pytest.approx(0.8)
    for member in model["members"]:
        assert member["returnRate"] == results[member["strategyId"]]["metrics"]["returnRate"]
        assert member["sharpeRatio"] == results[member["strategyId"]]["metrics"]["sharpeRatio"]

    combined = model["combined"]
    daily = matrix.T @ w  # the rest, 0.2, in cash
    assert combined["cashWeight"] == pytest.approx(0.2) and combined["periodsPerYear"] == 252
    assert [p["date"] for p in combined["equityCurve"]] == shared
    assert combined["equityCurve"][-1]["equity"] == pytest.approx(float(np.prod(1 + daily)), rel=1e-9)
    assert combined["metrics"]["returnRate"] == pytest.approx(float(np.prod(1 + daily) - 1), rel=1e-9)
    sharpe = float(np.mean(daily) / np.std(daily, ddof=1) * math.sqrt(252))
    assert combined["metrics"]["sharpeRatio"] == pytest.approx(sharpe, rel=1e-9)
    curve = np.concatenate(([1.0], np.cumprod(1 + daily)))
    assert combined["metrics"]["maxDrawdown"] == pytest.approx(float(np.max(1 - curve / np.maximum.accumulate(curve))))

    task = data(
        await stack.http.post(f"/portfolios/{pid}/evaluation-task", json={"idempotencyKey": "eval-1"}, headers=headers),
        202,
    )
    assert task["taskType"] == "portfolio_evaluate" and task["portfolioId"] == pid
    assert task["status"] in ("queued", "running", "succeeded")
    job = await finished(stack, headers, task["taskId"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    risk = result.pop("riskSummary")
    assert result == model
    assert risk == {
        "riskScore": performance["weightedMaxDrawdown"],
        "status": "ok" if performance["weightedMaxDrawdown"] <= 0.3 else "warn",
    }
    again = await stack.http.post(
        f"/portfolios/{pid}/evaluation-task", json={"idempotencyKey": "eval-1"}, headers=headers
    )
    repeated = data(again, 200)
    assert repeated["taskId"] == task["taskId"] and repeated["result"]["riskSummary"] == risk
    conflict = {"idempotencyKey": "eval-1", "method": "equal"}
    refused = error(await stack.http.post(f"/portfolios/{pid}/rebalance-task", json=conflict, headers=headers), 409)
    assert refused["code"] == "IDEMPOTENCY_CONFLICT"
    unkeyed = data(await stack.http.post(f"/portfolios/{pid}/evaluation-task", headers=headers), 202)  # no body
    assert unkeyed["taskId"] != task["taskId"]
    assert (await finished(stack, headers, unkeyed["taskId"]))["result"] == {**result, "riskSummary": risk}

    # A newer completed backtest of a member replaces its older one in the read model.
    newer = await backtest(stack, headers, ids[0], startDate="2022-06-01")
    updated = data(await stack.http.get(f"/portfolios/{pid}/read-model", headers=headers))
    assert next(m for m in updated["members"] if m["strategyId"] == ids[0])["backtestId"] == newer
    assert updated["correlationSummary"]["sharedDates"] < len(shared)


async def test_the_tasks_read_the_portfolio_as_it_is_when_they_run(idle_stack):
    """Jobs accepted while no worker runs: by the time they run, one portfolio was deleted and another lost the
    member its target weights name; each job fails with the code that says so, and nothing is written."""
    stack = idle_stack
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        _, _, headers = await stack.new_account(PASSWORD)
    a, b = await strategy(stack, headers), await strategy(stack, headers)
    doomed = (await create(stack, headers, {a: 0.5}))["id"]
    kept = (await create(stack, headers, {a: 0.5, b: 0.2}))["id"]
    evaluation = data(await stack.http.post(f"/portfolios/{doomed}/evaluation-task", headers=headers), 202)
    body = {"targetWeights": {b: 0.3}, "apply": True}
    rebalance = data(await stack.http.post(f"/portfolios/{kept}/rebalance-task", json=body, headers=headers), 202)
    assert evaluation["status"] == rebalance["status"] == "queued"
    data(await stack.http.delete(f"/portfolios/{doomed}", headers=headers))
    data(await stack.http.delete(f"/portfolios/{kept}/members/{b}", headers=headers))
    async with build_worker(stack.temporal, stack.settings, Database.from_settings(stack.settings)):
        denied = await finished(stack, headers, evaluation["taskId"])
        invalid = await finished(stack, headers, rebalance["taskId"])
    assert denied["status"] == "failed" and denied["error"]["code"] == "PORTFOLIO_ACCESS_DENIED"
    assert invalid["status"] == "failed" and invalid["error"]["code"] == "PORTFOLIO_INVALID_WEIGHTS"
    portfolio = data(await stack.http.get(f"/portfolios/{kept}", headers=headers))
    assert portfolio["version"] == 2 and weights_of(portfolio) == {a: 0.5}


def water_filled(raw: dict[str, float], total: float, single: float) -> dict[str, float]:
    """The expected projection, written independently: scale to total, cap, share the excess, repeat."""
    result, free, left = {}, dict(raw), total
    while free:
        scaled = {k: v * left / sum(free.values()) for k, v in free.items()}
        capped = {k for k, v in scaled.items() if v > single}
        if not capped:
            return {**result, **scaled}
        for k in capped:
            result[k] = single
            free.pop(k)
            left -= single
    return result


async def test_rebalance_methods_stay_within_the_constraints(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    ids, without, runs = await members_with_backtests(stack, headers)
    current = {ids[0]: 0.2, ids[1]: 0.2, ids[2]: 0.2, without: 0.1}
    limits = {"maxTotalWeight": 0.9, "maxSingleWeight": 0.4}
    pid = (await create(stack, headers, current, constraints=limits))["id"]
    figures = await expected_figures(stack, headers, runs)
    matrix, results = figures["matrix"], figures["results"]

    proposals = {}
    for body in (
        None,  # no body: the score method
        {"method": "equal"},
        {"method": "inverse_volatility"},
        {"method": "risk_parity"},
        {"targetWeights": {ids[0]: 0.5, ids[1]: 0.1}},
    ):
        task = data(await stack.http.post(f"/portfolios/{pid}/rebalance-task", json=body, headers=headers), 202)
        assert task["taskType"] == "portfolio_rebalance"
        job = await finished(stack, headers, task["taskId"])
        assert job["status"] == "succeeded", job
        proposal = job["result"]
        targets = proposal["targetWeights"]
        proposals[proposal["method"]] = targets
        assert set(targets) == set(current) and all(0 < t <= 0.4 + 1e-12 for t in targets.values()), proposal
        assert sum(targets.values()) <= 0.9 + 1e-9
        assert proposal["adjustments"] == [
            {"strategyId": s, "fromWeight": w, "toWeight": targets[s], "delta": pytest.approx(targets[s] - w)}
            for s, w in current.items()
        ]
        shares = np.array(list(targets.values())) / sum(targets.values())
        assert proposal["riskSummary"] == {
            "concentration": pytest.approx(float(np.sum(shares**2))),
            "totalTargetWeight": pytest.approx(sum(targets.values())),
            "maxAllowedWeight": 0.9,
            "maxSingleWeight": 0.4,
        }
        assert proposal["applied"] is False and proposal["version"] == 1
        if proposal["method"] in ("score", "inverse_volatility", "risk_parity"):
            # The member without a backtest keeps its weight; the others share the remaining 0.8.
            assert proposal["skipped"] == [{"strategyId": without, "reason": "no_completed_backtest"}]
            assert targets[without] == 0.1 and sum(targets[s] for s in ids) == pytest.approx(0.8)

    assert proposals["equal"] == pytest.approx(dict.fromkeys(current, 0.225))
    assert proposals["target"] == pytest.approx({ids[0]: 0.4, ids[1]: 0.125, ids[2]: 0.25, without: 0.125})
    scores = {
        s: max(0.0001, 1 + results[s]["metrics"]["returnRate"] - 2.5 * abs(results[s]["metrics"]["maxDrawdown"]))
        for s in ids
    }
    assert {s: proposals["score"][s] for s in ids} == pytest.approx(water_filled(scores, 0.8, 0.4))
    inverse = {s: 1 / np.std(matrix[i], ddof=1) for i, s in enumerate(ids)}
    assert {s: proposals["inverse_volatility"][s] for s in ids} == pytest.approx(water_filled(inverse, 0.8, 0.4))
    parity = np.array([proposals["risk_parity"][s] for s in ids])
    if np.all(parity < 0.4 - 1e-9):  # no cap binds: each member contributes the same risk
        contributions = parity * (np.cov(matrix) @ parity)
        assert contributions == pytest.approx(np.full(3, contributions.mean()), rel=1e-6)

    applied_task = data(
        await stack.http.post(
            f"/portfolios/{pid}/rebalance-task", json={"method": "equal", "apply": True}, headers=headers
        ),
        202,
    )
    applied = (await finished(stack, headers, applied_task["taskId"]))["result"]
    assert applied["applied"] is True and applied["appliedVersion"] == 2
    portfolio = data(await stack.http.get(f"/portfolios/{pid}", headers=headers))
    assert portfolio["version"] == 2 and weights_of(portfolio) == pytest.approx(dict.fromkeys(current, 0.225))
    again_task = data(
        await stack.http.post(
            f"/portfolios/{pid}/rebalance-task", json={"method": "equal", "apply": True}, headers=headers
        ),
        202,
    )
    again = (await finished(stack, headers, again_task["taskId"]))["result"]
    assert again["appliedVersion"] == 2 and all(a["delta"] == 0 for a in again["adjustments"])
    assert data(await stack.http.get(f"/portfolios/{pid}", headers=headers))["version"] == 2


async def test_portfolios_from_the_command_line(stack):
    email, _, headers = await stack.new_account(PASSWORD)
    a, b = await strategy(stack, headers), await strategy(stack, headers, "macd")

    def out(result) -> dict:
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    created = out(
        await stack.cli(
            "portfolios", "create", "--user", email, "--name", "cli", "--max-single-weight", "0.6",
            "--member", f"{a}=0.5",
        )
    )  # fmt: skip
    pid = created["id"]
    assert created["version"] == 1 and created["constraints"] == {"max_total_weight": 1.0, "max_single_weight": 0.6}
    assert out(await stack.cli("portfolios", "list", "--user", email))["items"][0]["id"] == pid
    added = out(await stack.cli("portfolios", "add-member", pid, b, "--weight", "0.3", "--user", email))
    assert added["version"] == 2 and added["total_weight"] == 0.8
    updated = out(
        await stack.cli("portfolios", "update", pid, "--status", "active", "--name", "renamed", "--user", email)
    )
    assert updated["status"] == "active" and updated["name"] == "renamed" and updated["version"] == 3
    assert out(await stack.cli("portfolios", "show", pid, "--user", email)) == updated
    too_much = await stack.cli("portfolios", "add-member", pid, b, "--weight", "0.7", "--user", email)
    assert too_much.exit_code == 1 and "PORTFOLIO_INVALID_WEIGHTS" in too_much.stderr

    model = out(await stack.cli("portfolios", "read-model", pid, "--user", email))
    assert model["missing"] == [a, b] and model["combined"] is None
    assert model["correlation_summary"]["average_correlation"] is None
    evaluated = out(await stack.cli("portfolios", "evaluate", pid, "--wait", "--user", email))
    assert evaluated["status"] == "succeeded" and evaluated["result"]["risk_summary"]["status"] == "unknown"
    proposal = out(
        await stack.cli("portfolios", "rebalance", pid, "--method", "equal", "--apply", "--wait", "--user", email)
    )
    assert proposal["result"]["target_weights"] == {a: 0.5, b: 0.5} and proposal["result"]["applied_version"] == 4
    assert data(await stack.http.get(f"/portfolios/{pid}", headers=headers))["version"] == 4
    assert out(await stack.cli("portfolios", "remove-member", pid, b, "--user", email))["version"] == 5

    stranger = (await stack.new_account(PASSWORD))[0]
    denied = await stack.cli("portfolios", "show", pid, "--user", stranger)
    assert denied.exit_code == 1 and "PORTFOLIO_ACCESS_DENIED" in denied.stderr
    assert out(await stack.cli("portfolios", "delete", pid, "--user", email)) == {"portfolio_id": pid, "deleted": True}
    assert error(await stack.http.get(f"/portfolios/{pid}", headers=headers), 403)["code"] == "PORTFOLIO_ACCESS_DENIED"


# --- the rules alone -------------------------------------------------------------------------------------


def test_projection_stays_within_the_constraints():
    rng = np.random.default_rng(7)
    for _ in range(3000):
        n = int(rng.integers(1, 15))
        total = float(rng.uniform(0.05, 3))
        single = float(rng.uniform(0.01, total))
        constraints = rules.Constraints(total, single)
        raw = {str(i): float(rng.exponential()) * (rng.random() < 0.9) for i in range(n)}
        for fill in (True, False):
            projected = rules.project(raw, constraints, fill=fill)
            assert list(projected) == list(raw)
            assert all(0 <= w <= single for w in projected.values())
            assert sum(projected.values()) <= total + 1e-9
            positive = [k for k, v in raw.items() if v > 0]
            if fill and positive:  # fully invested up to what the caps allow
                assert sum(projected.values()) == pytest.approx(min(total, len(positive) * single))
            uncapped = [k for k in positive if projected[k] < single]
            ratios = [projected[k] / raw[k] for k in uncapped]
            if ratios:  # the uncapped keep their proportions
                assert ratios == pytest.approx([ratios[0]] * len(ratios))
    within = {"a": 0.2, "b": 0.3}
    assert rules.project(within, rules.Constraints(1.0, 0.5), fill=False) == within  # already inside: unchanged
    assert rules.project({"a": 3, "b": 1}, rules.Constraints(1.0, 0.6), fill=True) == pytest.approx(
        {"a": 0.6, "b": 0.4}
    )
    assert rules.project({"a": 1, "b": 1}, rules.Constraints(1.0, 0.3), fill=True) == {"a": 0.3, "b": 0.3}


def test_risk_parity_weights_equalize_risk_contributions():
    rng = np.random.default_rng(3)
    returns = rng.normal(size=(500, 4)) * np.array([0.01, 0.02, 0.005, 0.03])
    returns[:, 1] += 0.8 * returns[:, 0]
    returns[:, 3] -= 0.5 * returns[:, 2]
    covariance = np.cov(returns.T)
    weights = rules.risk_parity_weights(covariance)
    contributions = weights * (covariance @ weights)
    assert weights.sum() == pytest.approx(1.0) and np.all(weights > 0)
    assert contributions == pytest.approx(np.full(4, contributions.mean()), rel=1e-8)


def test_weight_and_constraint_rules():
    with pytest.raises(rules.InvalidConstraints):
        rules.Constraints(0.5, 0.6).check()
    with pytest.raises(rules.InvalidConstraints):
        rules.Constraints(0.0, 0.0).check()
    rules.Constraints(0.5, 0.5).check()
    with pytest.raises(rules.InvalidWeights):
        rules.check_weights({"a": 0.3, "b": 0.3}, rules.Constraints(0.5, 0.5))
    rules.check_weights({"a": 0.25, "b": 0.25}, rules.Constraints(0.5, 0.3))
    with pytest.raises(rules.InvalidWeights):  # refused one by one, never summed to infinity
        rules.check_weights({"a": 1e308, "b": 1e308}, rules.Constraints(1.0, 1.0))
    with pytest.raises(rules.InvalidWeights):
        rules.check_targets({"a": 0.1}, {"a": 1e308})
    assert rules.can_transition("draft", "active") and rules.can_transition("active", "draft")
    assert not rules.can_transition("archived", "draft")
