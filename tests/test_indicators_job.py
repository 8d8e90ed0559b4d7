"""Indicator calculations as jobs: bars come through the store (synced when missing), results are kept
with the job and equal the domain functions on the same bars."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import UTC, datetime

import numpy as np

from domain import indicators
from integrations.market_data.synthetic import SyntheticProvider

PASSWORD = "Indic1Password"
BODY = {
    "symbol": "msft",
    "startDate": "2024-01-01",
    "endDate": "2024-03-31",
    "indicators": [
        {"name": "sma", "period": 5},
        {"name": "ema"},
        {"name": "rsi", "period": 14},
        {"name": "macd", "fast": 12, "slow": 26, "signal": 9},
        {"name": "bollinger", "period": 20, "stdDev": 2.5},
        {"name": "atr"},
        {"name": "vwma"},
    ],
}


async def user_headers(stack) -> dict[str, str]:
    return (await stack.new_account(PASSWORD))[2]


async def finished(stack, headers, task_id: str) -> dict:
    for _ in range(150):
        task = (await stack.http.get(f"/market/indicators/calculate-task/{task_id}", headers=headers)).json()["data"]
        if task["status"] in ("succeeded", "failed"):
            return task
        await asyncio.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish")


def close_enough(ours: list, expected: np.ndarray) -> bool:
    return all(
        (a is None and math.isnan(b)) or (a is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b)))
        for a, b in zip(ours, expected, strict=True)
    )


async def test_indicators_job_computes_every_requested_indicator(stack):
    headers = await user_headers(stack)
    submitted = await stack.http.post("/market/indicators/calculate-task", json=BODY, headers=headers)
    assert submitted.status_code == 202 and submitted.json()["data"]["taskType"] == "market_indicators_calculate"
    task = await finished(stack, headers, submitted.json()["data"]["taskId"])
    assert task["status"] == "succeeded", task
    result = task["result"]
    assert result["symbol"] == "MSFT" and result["dataPoints"] == 65 and result["source"] == "synthetic"
    by_name = {r["name"]: r for r in result["indicators"]}
    assert by_name["vwma"]["status"] == "unsupported"
    assert by_name["ema"]["params"] == {"period": 20} and by_name["bollinger"]["params"]["std_dev"] == 2.5
    assert by_name["macd"]["metadata"] == {"requiredDataPoints": 34, "actualDataPoints": 65}

    bars = SyntheticProvider(seed=stack.settings.synthetic_seed).bars(
        "MSFT", "1Day", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 31, 23, 59, tzinfo=UTC)
    )
    close, high, low = bars["close"].to_numpy(), bars["high"].to_numpy(), bars["low"].to_numpy()
    series = {name: r["series"] for name, r in by_name.items() if r["status"] == "ok"}
    assert close_enough([p["value"] for p in series["sma"]], indicators.sma(close, 5))
    assert close_enough([p["value"] for p in series["rsi"]], indicators.rsi(close, 14))
    macd = indicators.macd(close, 12, 26, 9)
    assert close_enough([p["signalLine"] for p in series["macd"]], macd.signal)
    assert close_enough([p["histogram"] for p in series["macd"]], macd.histogram)
    assert close_enough([p["upperBand"] for p in series["bollinger"]], indicators.bollinger(close, 20, 2.5).upper)
    assert close_enough([p["value"] for p in series["atr"]], indicators.atr(high, low, close, 14))
    assert series["sma"][-1]["timestamp"].startswith("2024-03-29")
    assert by_name["sma"]["latest"]["value"] == series["sma"][-1]["value"]


async def test_insufficient_data_and_bad_parameters(stack):
    headers = await user_headers(stack)
    short = {**BODY, "startDate": "2024-03-01", "endDate": "2024-03-10", "indicators": [{"name": "macd"}]}
    task = await finished(
        stack,
        headers,
        (await stack.http.post("/market/indicators/calculate-task", json=short, headers=headers)).json()["data"][
            "taskId"
        ],
    )
    only = task["result"]["indicators"][0]
    assert only["status"] == "insufficient_data" and only["series"] == []
    assert only["metadata"] == {"requiredDataPoints": 34, "actualDataPoints": 6}
    bad = {**BODY, "indicators": [{"name": "macd", "fast": 30, "slow": 10}]}
    refused = await stack.http.post("/market/indicators/calculate-task", json=bad, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "VALIDATION_ERROR"
    unknown_symbol = {**BODY, "symbol": "NOPE"}
    failed = await finished(
        stack,
        headers,
        (await stack.http.post("/market/indicators/calculate-task", json=unknown_symbol, headers=headers)).json()[
            "data"
        ]["taskId"],
    )
    assert failed["status"] == "failed" and failed["error"]["code"] == "ASSET_NOT_FOUND"


async def test_indicator_tasks_are_private(stack):
    owner, stranger = await user_headers(stack), await user_headers(stack)
    task_id = (await stack.http.post("/market/indicators/calculate-task", json=BODY, headers=owner)).json()["data"][
        "taskId"
    ]
    denied = await stack.http.get(f"/market/indicators/calculate-task/{task_id}", headers=stranger)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "JOB_ACCESS_DENIED"
    sync_id = (
        await stack.http.post(
            "/market/sync-task",
            json={"symbols": ["KO"], "startDate": "2024-01-01", "endDate": "2024-01-05"},
            headers=owner,
        )
    ).json()["data"]["taskId"]
    wrong_kind = await stack.http.get(f"/market/indicators/calculate-task/{sync_id}", headers=owner)
    assert wrong_kind.status_code == 403


async def test_cli_calculate_waits_and_prints_the_result(stack):
    address = f"ind-{uuid.uuid4().hex[:8]}@example.com"
    await stack.register_verified(address, PASSWORD)
    args = ["indicators", "calculate", "IBM", "--start", "2024-01-01", "--end", "2024-02-29", "--user", address]
    done = await stack.cli(
        *args, "--indicator", "sma:period=10", "--indicator", "bollinger:period=10,stdDev=1.5", "--wait"
    )
    assert done.exit_code == 0, done.output
    job = json.loads(done.stdout)
    names = [(r["name"], r["status"]) for r in job["result"]["indicators"]]
    assert job["status"] == "succeeded" and names == [("sma", "ok"), ("bollinger", "ok")]
    bad = await stack.cli(*args, "--indicator", "sma:period")
    assert bad.exit_code == 2
