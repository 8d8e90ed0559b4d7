"""Strategy health reports over HTTP, with the front end's request: a report for every template, completed
within the POST, whose every figure is a backtest's and whose score follows its rule; perturbations that
break the template skipped and named; the reference's 422 codes; ownership; paging; a report for a strategy;
and a report that outlasts the wait, read again later."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

import pytest
import pytest_asyncio

from tests.conftest import data, error, open_stack
from tests.test_research import local_metrics as research_metrics

PASSWORD = "Health1Password"
# The front end's body: no strategyId, no prices; a symbol and two years of daily bars.
RANGE = {"symbol": "AAPL", "startDate": "2022-01-01", "endDate": "2023-12-31", "initialCapital": 100000}
PARAMETERS = {
    "moving_average": {"shortWindow": 10, "longWindow": 30},
    "bollinger_bands": {"period": 20, "stdDev": 2},
    "rsi": {"period": 14, "oversold": 30, "overbought": 70},
    "macd": {"fast": 12, "slow": 26, "signal": 9},
    "mean_reversion": {"window": 20, "entryZ": 1.5, "exitZ": 0.5},
    "momentum": {"lookback": 20, "threshold": 0.05},
}
LABELS = ("-50%", "-20%", "-10%", "+10%", "+20%", "+50%")
BANDS = ((80, "LOW"), (60, "MEDIUM"), (40, "HIGH"))
REPORT_FIELDS = {
    "overallScore": (int, float),
    "overfitRisk": str,
    "inSampleReturn": (int, float),
    "outSampleReturn": (int, float),
    "returnRatio": (int, float),
    "paramSensitivity": dict,
    "tradeCount": int,
    "maxDrawdown": (int, float),
    "sharpeRatio": (int, float),
    "warnings": list,
}


@pytest_asyncio.fixture
async def hasty_stack(database_url, dev_server, smtp_server, tmp_path):
    """The stack with a POST that does not wait for its report."""
    async for opened in open_stack(
        database_url, dev_server.client, smtp_server, tmp_path, strategy_health_wait_seconds=0
    ):
        yield opened


async def report(stack, headers, template: str, parameters: dict, **extra) -> dict:
    body = {"template": template, "parameters": parameters, **RANGE, **extra}
    return data(await stack.http.post("/strategy-health", json=body, headers=headers), 201)


def local_metrics(stack, template: str, parameters: dict, start: str, end: str) -> dict:
    """A backtest's metrics with these parameters over ``start..end``, from the bars of the range the report
    synced."""
    config = {"symbol": RANGE["symbol"], "startDate": start, "endDate": end}
    return research_metrics(stack, template, parameters, config, synced=RANGE)


def assert_complete(found: dict, template: str, parameters: dict) -> None:
    """Every field the front end's card needs, with its type, and the report's rules."""
    assert found["status"] == "completed", found.get("error")
    for name, kind in REPORT_FIELDS.items():
        assert isinstance(found[name], kind) and not isinstance(found[name], bool), (name, found[name])
    assert isinstance(found["reportId"], str) and isinstance(found["userId"], str)
    assert isinstance(found["createdAt"], str) and isinstance(found["completedAt"], str)
    assert found["error"] is None
    assert all(isinstance(w, str) for w in found["warnings"])
    score = found["overallScore"]
    assert 0 <= score <= 100
    assert found["overfitRisk"] == next((risk for floor, risk in BANDS if score >= floor), "CRITICAL")
    base, out = found["inSampleReturn"], found["outSampleReturn"]
    ratio = found["returnRatio"]
    assert ratio == (pytest.approx(max(-100, min(100, out / base))) if base > 0 else 0)
    sensitivity = found["paramSensitivity"]
    assert set(sensitivity) == set(parameters)
    tested = low = 0
    for name, entry in sensitivity.items():
        assert entry["rating"] in ("HIGH", "LOW")
        assert entry["originalValue"] == parameters[name]
        labels = [v["perturbation"] for v in entry["variations"]]
        assert labels == [label for label in LABELS if label in labels]  # in order, each once
        for variation in entry["variations"]:
            for key in ("value", "returnRate", "changePercent"):
                assert isinstance(variation[key], int | float) and not isinstance(variation[key], bool)
            change = (
                (variation["returnRate"] - base) / abs(base) * 100 if base else (variation["returnRate"] - base) * 100
            )
            assert variation["changePercent"] == pytest.approx(change)
        deviation = max((abs(v["returnRate"] - base) for v in entry["variations"]), default=0)
        assert (entry["rating"] == "HIGH") == (deviation > (0.3 * abs(base) if base else 0.01))
        if entry["variations"]:
            tested += 1
            low += entry["rating"] == "LOW"
    expected = 100 * (
        0.4 * (low / tested if tested else 0) + 0.4 * min(max(ratio, 0), 1) + 0.2 * min(found["tradeCount"] / 30, 1)
    )
    assert score == pytest.approx(round(expected, 1), abs=1e-9)
    if found["tradeCount"] < 10:
        assert any("交易次数少于10次" in w for w in found["warnings"])


async def test_a_report_for_every_template_completes_within_the_post(stack):
    _, user, headers = await stack.new_account(PASSWORD)
    for template, parameters in PARAMETERS.items():
        found = await report(stack, headers, template, parameters)
        assert_complete(found, template, parameters)
        assert found["userId"] == user["id"] and found["strategyId"] is None
        config = found["config"]
        assert config["template"] == template and config["symbol"] == "AAPL"
        assert (config["startDate"], config["endDate"]) == (RANGE["startDate"], RANGE["endDate"])
        # 70/30 by calendar date, the test period after the training period.
        assert config["inSampleStart"] == RANGE["startDate"] and config["outSampleEnd"] == RANGE["endDate"]
        assert date.fromisoformat(config["inSampleEnd"]) < date.fromisoformat(config["outSampleStart"])
        train = (config["inSampleStart"], config["inSampleEnd"])
        test = (config["outSampleStart"], config["outSampleEnd"])

        # Every figure is a backtest's: the baseline in and out of sample, each variation in sample.
        own = local_metrics(stack, template, parameters, *train)
        assert found["inSampleReturn"] == pytest.approx(own["returnRate"], abs=1e-9)
        assert found["tradeCount"] == own["tradeCount"]
        assert found["maxDrawdown"] == pytest.approx(own["maxDrawdown"], abs=1e-9)
        assert found["sharpeRatio"] == pytest.approx(own["sharpeRatio"] or 0, abs=1e-9)
        tested = local_metrics(stack, template, parameters, *test)
        assert found["outSampleReturn"] == pytest.approx(tested["returnRate"], abs=1e-9)
        variations = 0
        for name, entry in found["paramSensitivity"].items():
            for variation in entry["variations"]:
                moved = {**parameters, name: variation["value"]}
                ran = local_metrics(stack, template, moved, *train)
                assert variation["returnRate"] == pytest.approx(ran["returnRate"], abs=1e-9), (name, variation)
                variations += 1
        assert variations >= len(parameters) * 4

        # The report is a job: a research sweep of listed points, read back the same.
        assert data(await stack.http.get(f"/strategy-health/{found['reportId']}", headers=headers)) == found
        job = data(await stack.http.get(f"/jobs/{found['reportId']}", headers=headers))
        assert job["taskType"] == "strategy_health_analyze" and job["status"] == "succeeded"
        trials = job["result"]["optimizationResult"]["trials"]
        assert trials[0]["parameters"] == {k: pytest.approx(v) for k, v in parameters.items()}
        assert len(trials) == 1 + len(
            {(n, v["value"]) for n, e in found["paramSensitivity"].items() for v in e["variations"]}
        )
    listed = data(await stack.http.get("/strategy-health", headers=headers))
    assert listed["total"] == 6 and listed["pageSize"] == 10
    assert [row["config"]["template"] for row in listed["items"]] == list(reversed(PARAMETERS))


async def test_a_perturbation_that_breaks_the_template_is_skipped_and_named(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    # longWindow -50% is 8 (7.5 rounded), not above shortWindow 10; shortWindow +50% is 15, not below 15.
    parameters = {"shortWindow": 10, "longWindow": 15}
    found = await report(stack, headers, "moving_average", parameters)
    assert_complete(found, "moving_average", parameters)
    sensitivity = found["paramSensitivity"]
    assert [v["perturbation"] for v in sensitivity["longWindow"]["variations"]] == [
        "-20%",
        "-10%",
        "+10%",
        "+20%",
        "+50%",
    ]
    assert [v["value"] for v in sensitivity["longWindow"]["variations"]] == [12, 14, 17, 18, 23]
    assert "+50%" not in [v["perturbation"] for v in sensitivity["shortWindow"]["variations"]]
    skipped = [w for w in found["warnings"] if "已跳过" in w]
    assert any("longWindow" in w and "-50%" in w and "8" in w for w in skipped), skipped
    assert any("shortWindow" in w and "+50%" in w for w in skipped), skipped

    # A zero parameter has nothing to perturb: one warning, no variation, the report completes.
    zero = {"lookback": 20, "threshold": 0}
    found = await report(stack, headers, "momentum", zero)
    assert_complete(found, "momentum", zero)
    assert found["paramSensitivity"]["threshold"]["variations"] == []
    assert sum("threshold" in w and "为 0" in w for w in found["warnings"]) == 1


async def test_requests_that_cannot_run_are_refused(stack):
    _, _, headers = await stack.new_account(PASSWORD)

    async def refused(body: dict) -> dict:
        return error(await stack.http.post("/strategy-health", json=body, headers=headers), 422)

    base = {"template": "moving_average", "parameters": {"shortWindow": 10, "longWindow": 30}, **RANGE}
    assert (await refused({**base, "template": "astrology"}))["code"] == "UNSUPPORTED_TEMPLATE"
    found = await refused({**base, "parameters": {"shortWindow": 50, "longWindow": 30}})
    assert found["code"] == "INVALID_CONFIGURATION"
    assert {"field": "parameters", "message": "shortWindow must be less than longWindow"} in found["details"]
    found = await refused({**base, "parameters": {"shortWindow": 10, "luck": 7}})
    assert found["code"] == "INVALID_CONFIGURATION"
    found = await refused({**base, "prices": [100, 101, 102, 103]})
    assert found["code"] == "INVALID_CONFIGURATION" and "give a symbol" in found["message"]
    assert (await refused({**base, "endDate": "2021-01-01"}))["code"] == "INVALID_CONFIGURATION"
    assert (await refused({**base, "endDate": RANGE["startDate"]}))["code"] == "INVALID_CONFIGURATION"
    assert (await refused({**base, "commissionRate": 0.5}))["code"] == "INVALID_CONFIGURATION"
    assert (await refused({**base, "timeframe": "7Weeks"}))["code"] == "INVALID_CONFIGURATION"
    assert data(await stack.http.get("/strategy-health", headers=headers))["total"] == 0
    assert data(await stack.http.get("/jobs", headers=headers))["total"] == 0

    # Runnable requests whose report cannot be made, as the reference answered them.
    found = await refused({**base, "symbol": "ZZZZ"})  # no bars for the symbol
    assert found["code"] == "NO_MARKET_DATA" and found["details"]["cause"] == "BACKTEST_HISTORY_UNAVAILABLE"
    failed = data(await stack.http.get(f"/strategy-health/{found['details']['reportId']}", headers=headers))
    assert failed["status"] == "failed" and isinstance(failed["error"], str) and failed["overallScore"] is None
    found = await refused({**base, "parameters": {"shortWindow": 10, "longWindow": 400}})  # more than the bars
    assert found["code"] == "NO_MARKET_DATA" and found["details"]["cause"] == "BACKTEST_INSUFFICIENT_DATA"
    listed = data(await stack.http.get("/strategy-health", headers=headers))
    assert listed["total"] == 2 and {row["status"] for row in listed["items"]} == {"failed"}


async def test_reports_are_the_callers_own_and_paged(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    made = [
        (await report(stack, headers, "momentum", {"lookback": lookback, "threshold": 0.05}))["reportId"]
        for lookback in (10, 20, 30)
    ]
    first = data(await stack.http.get("/strategy-health", params={"page": 1, "pageSize": 2}, headers=headers))
    second = data(await stack.http.get("/strategy-health", params={"page": 2, "pageSize": 2}, headers=headers))
    assert (first["total"], first["page"], first["pageSize"], second["total"]) == (3, 1, 2, 3)
    assert [row["reportId"] for row in first["items"] + second["items"]] == list(reversed(made))
    for row in first["items"] + second["items"]:
        assert_complete(row, "momentum", row["config"]["parameters"])

    _, _, other = await stack.new_account(PASSWORD)
    for report_id in (made[0], str(uuid.uuid4())):
        found = error(await stack.http.get(f"/strategy-health/{report_id}", headers=other), 403)
        assert found["code"] == "STRATEGY_HEALTH_ACCESS_DENIED"
    assert data(await stack.http.get("/strategy-health", headers=other))["total"] == 0
    stack.http.cookies.clear()  # the session cookie the last login left in the client
    assert error(await stack.http.get("/strategy-health"), 401)["code"] == "MISSING_TOKEN"


async def test_a_report_for_a_strategy_names_it(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    parameters = {"window": 20, "entryZ": 1.5, "exitZ": 0.5}
    body = {"name": "mr", "template": "mean_reversion", "parameters": parameters}
    strategy = data(await stack.http.post("/strategies", json=body, headers=headers), 201)
    found = await report(stack, headers, "mean_reversion", parameters, strategyId=strategy["id"])
    assert_complete(found, "mean_reversion", parameters)
    assert found["strategyId"] == strategy["id"]
    listed = data(await stack.http.get("/strategy-health", headers=headers))
    assert listed["items"][0]["strategyId"] == strategy["id"]
    # A report is not one of the strategy's research sweeps.
    sweeps = data(await stack.http.get(f"/strategies/{strategy['id']}/research/results", headers=headers))
    assert sweeps["total"] == 0

    _, _, other = await stack.new_account(PASSWORD)
    body = {"template": "mean_reversion", "parameters": parameters, **RANGE, "strategyId": strategy["id"]}
    found = error(await stack.http.post("/strategy-health", json=body, headers=other), 403)
    assert found["code"] == "STRATEGY_ACCESS_DENIED"
    assert data(await stack.http.get("/strategy-health", headers=other))["total"] == 0

    # The report outlives its strategy: it names its template and parameters.
    report_id = listed["items"][0]["reportId"]
    data(await stack.http.delete(f"/strategies/{strategy['id']}", headers=headers))
    kept = data(await stack.http.get(f"/strategy-health/{report_id}", headers=headers))
    assert kept["strategyId"] is None and kept["status"] == "completed"
    assert kept["overallScore"] == listed["items"][0]["overallScore"]


async def test_a_report_that_outlasts_the_wait_is_read_later(hasty_stack):
    stack = hasty_stack
    _, _, headers = await stack.new_account(PASSWORD)
    parameters = PARAMETERS["rsi"]
    found = await report(stack, headers, "rsi", parameters)
    assert found["status"] in ("pending", "running")
    assert found["overallScore"] is None and found["completedAt"] is None and found["error"] is None
    deadline = asyncio.get_running_loop().time() + 120
    while found["status"] in ("pending", "running"):
        assert asyncio.get_running_loop().time() < deadline, "the report did not complete"
        await asyncio.sleep(0.2)
        found = data(await stack.http.get(f"/strategy-health/{found['reportId']}", headers=headers))
    assert_complete(found, "rsi", parameters)
