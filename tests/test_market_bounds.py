"""A hostile client against the market routes: unbounded ranges, future dates, junk symbols, non-finite
numbers. Each is refused with an envelope (never a 500), before any job exists, or answered without a
single bar after now."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import websockets
from sqlalchemy import select

from db.engine import Database
from db.models import MarketBar, MarketSyncCoverage
from tests.conftest import data, error
from tests.test_market import receive, served  # noqa: F401 (the API on a real socket, for the stream)

PASSWORD = "Bounds1Password"
INDICATORS = [{"name": "sma", "period": 5}]


async def user_headers(stack) -> dict[str, str]:
    return (await stack.new_account(PASSWORD))[2]


async def job_count(stack, headers) -> int:
    return data(await stack.http.get("/jobs", headers=headers))["total"]


async def finished(stack, headers, task_id: str) -> dict:
    for _ in range(300):
        job = data(await stack.http.get(f"/jobs/{task_id}", headers=headers))
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {task_id} did not finish")


async def rows_of(stack, model, symbol: str, timeframe: str) -> list:
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            found = await session.scalars(select(model).where(model.symbol == symbol, model.timeframe == timeframe))
            return list(found)
    finally:
        await db.dispose()


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- bounded work per request ----------------------------------------------------------------------------


async def test_history_ends_now_and_refuses_ranges_of_too_many_bars(stack):
    headers = await user_headers(stack)
    start = (datetime.now(UTC) - timedelta(days=20)).date().isoformat()
    future = {"startDate": start, "endDate": "3000-01-01", "timeframe": "1Hour"}
    candles = data(await stack.http.get("/market/history/AAPL", params=future, headers=headers))["candles"]
    assert candles, "the past part of the range has bars"
    assert all(datetime.fromisoformat(c["timestamp"]) <= datetime.now(UTC) for c in candles)

    huge = {"startDate": "1970-01-01", "endDate": "3000-01-01", "timeframe": "1Hour"}
    refused = error(await stack.http.get("/market/history/AAPL", params=huge, headers=headers), 422)
    assert refused["code"] == "MARKET_RANGE_TOO_LARGE" and "1Hour bars" in refused["message"]
    # The same span in daily bars is small enough.
    daily = {**huge, "timeframe": "1Day"}
    assert data(await stack.http.get("/market/history/AAPL", params=daily, headers=headers))["candles"]

    before_1970 = {"startDate": "1969-12-31", "endDate": "2024-01-01"}
    assert (
        error(await stack.http.get("/market/history/AAPL", params=before_1970, headers=headers), 400)["code"]
        == "INVALID_ARGUMENT"
    )
    too_many = {"startDate": "2024-01-01", "endDate": "2024-02-01", "limit": 50_001}
    assert (
        error(await stack.http.get("/market/history/AAPL", params=too_many, headers=headers), 422)["code"]
        == "VALIDATION_ERROR"
    )


async def test_sync_and_indicator_jobs_of_too_many_bars_are_refused_before_they_exist(stack):
    email, _, headers = await stack.new_account(PASSWORD)
    sync = {"symbols": ["AAPL"], "startDate": "1970-01-01", "endDate": "2200-01-01", "timeframe": "1Min"}
    indicators = {"symbol": "AAPL", "startDate": "1970-01-01", "endDate": "2200-01-01", "timeframe": "1Hour"}
    refused = [
        error(await stack.http.post("/market/sync-task", json=sync, headers=headers), 422),
        error(
            await stack.http.post(
                "/market/indicators/calculate-task", json={**indicators, "indicators": INDICATORS}, headers=headers
            ),
            422,
        ),
    ]
    assert [r["code"] for r in refused] == ["MARKET_RANGE_TOO_LARGE"] * 2
    before_1970 = {**sync, "startDate": "1969-12-31", "timeframe": "1Day"}
    assert (
        error(await stack.http.post("/market/sync-task", json=before_1970, headers=headers), 422)["code"]
        == "VALIDATION_ERROR"
    )
    assert await job_count(stack, headers) == 0
    # The CLI submits through the same check.
    args = ("market", "sync", "AAPL", "--start", "1970-01-01", "--end", "2200-01-01", "--timeframe", "1Min")
    result = await stack.cli(*args, "--user", email)
    assert result.exit_code == 1 and json.loads(result.stderr.strip().splitlines()[-1])["error"]["code"] == (
        "MARKET_RANGE_TOO_LARGE"
    )
    assert await job_count(stack, headers) == 0


async def test_a_job_of_too_many_bars_submitted_through_jobs_is_refused_before_it_exists(stack):
    headers = await user_headers(stack)
    payload = {"symbols": ["AAPL"], "startDate": "1970-01-01", "endDate": "2200-01-01", "timeframe": "1Hour"}
    body = {"taskType": "market_data_sync", "payload": payload, "idempotencyKey": "too-large"}
    assert error(await stack.http.post("/jobs", json=body, headers=headers), 422)["code"] == "VALIDATION_ERROR"
    assert data(await stack.http.get("/jobs", headers=headers))["total"] == 0
    assert await rows_of(stack, MarketBar, "AAPL", "1Hour") == []


# --- no bar after now --------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeframe", ["1Day", "1Hour"])
async def test_a_sync_into_the_future_stores_and_covers_nothing_after_now(stack, timeframe):
    headers = await user_headers(stack)
    start = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()
    body = {"symbols": ["KO"], "startDate": start, "endDate": "2200-01-01", "timeframe": timeframe}
    task = data(await stack.http.post("/market/sync-task", json=body, headers=headers), 202)
    job = await finished(stack, headers, task["taskId"])
    assert job["status"] == "succeeded", job
    now = datetime.now(UTC)
    bars = await rows_of(stack, MarketBar, "KO", timeframe)
    assert bars and max(aware(b.timestamp) for b in bars) <= now
    assert job["result"]["summary"]["rowCount"] == len(bars)
    # Only settled ranges count as fetched: the future stays missing, to be fetched once it is the past.
    coverage = await rows_of(stack, MarketSyncCoverage, "KO", timeframe)
    assert all(aware(c.end) < now for c in coverage)


# --- symbols ----------------------------------------------------------------------------------------------

JUNK_BODIES = [
    b'{"symbols": ["\\ud800"]}',
    b'{"symbols": ["AAPL\\u0000"]}',
    b'{"symbols": ["../../etc/passwd"]}',
    b'{"symbols": ["A B"]}',
    b'{"symbols": ["' + b"A" * 40 + b'"]}',
    b'{"symbols": ["\xc3\xa9"]}',
    b'{"symbols": [""]}',
]


@pytest.mark.parametrize("body", JUNK_BODIES)
async def test_junk_symbols_in_bodies_are_a_validation_error(stack, body):
    headers = {**(await user_headers(stack)), "content-type": "application/json"}
    for route in ("/market/quotes", "/market/boundary/check", "/market/sync-task"):
        extra = b', "startDate": "2024-01-01", "endDate": "2024-01-31"}' if route.endswith("sync-task") else b"}"
        sent = body[:-1] + extra
        assert error(await stack.http.post(route, content=sent, headers=headers), 422)["code"] == "VALIDATION_ERROR"
    single = body.replace(b'"symbols": [', b'"symbol": ').replace(b"]}", b"")
    indicators = single + b', "startDate": "2024-01-01", "endDate": "2024-01-31", "indicators": [{"name": "sma"}]}'
    refused = await stack.http.post("/market/indicators/calculate-task", content=indicators, headers=headers)
    assert error(refused, 422)["code"] == "VALIDATION_ERROR"
    assert await job_count(stack, headers) == 0


JUNK_PATHS = ["%ED%A0%80", "A%00", "A%20B", "%C3%A9", "%2E%2E", ".env", "A" * 40, "-A", "%FF"]


@pytest.mark.parametrize("symbol", JUNK_PATHS)
async def test_junk_symbols_in_paths_are_a_validation_error(stack, symbol):
    headers = await user_headers(stack)
    params = {"startDate": "2024-01-01", "endDate": "2024-01-31"}
    for route in ("quote", "latest", "catalog", "history"):
        answer = await stack.http.get(f"/market/{route}/{symbol}", params=params, headers=headers)
        assert error(answer, 422)["code"] == "VALIDATION_ERROR", route


async def test_junk_symbols_in_a_stream_subscription_are_refused_and_the_stream_goes_on(served):  # noqa: F811
    stack, url = served
    headers = await user_headers(stack)
    async with websockets.connect(url, additional_headers=headers) as ws:
        await receive(ws, "stream.ready")
        for junk in ('"\\ud800"', '"A B"', '"../x"', '"' + "A" * 40 + '"'):
            await ws.send('{"action": "subscribe", "symbols": [' + junk + "]}")
            assert (await receive(ws, "stream.error"))["error"]["code"] == "STREAM_INVALID_SUBSCRIPTION", junk
        await ws.send(json.dumps({"action": "subscribe", "symbols": [" ibm"]}))
        assert (await receive(ws, "stream.subscribed"))["symbols"] == ["IBM"]


async def test_symbols_with_dots_dashes_and_slashes_are_accepted(stack):
    headers = await user_headers(stack)
    body = {"symbols": ["brk.b", "BF-B", "BTC/USD", " aapl "]}
    items = data(await stack.http.post("/market/quotes", json=body, headers=headers))["items"]
    assert [i["symbol"] for i in items] == ["BRK.B", "BF-B", "BTC/USD", "AAPL"]
    assert items[-1]["status"] == "ok"


async def test_boundary_check_refuses_an_unknown_timeframe(stack):
    headers = await user_headers(stack)
    body = {"symbols": ["AAPL"], "timeframe": "7Y"}
    assert (
        error(await stack.http.post("/market/boundary/check", json=body, headers=headers), 422)["code"]
        == "VALIDATION_ERROR"
    )


# --- non-finite numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", 0, 11, "1e999"])
async def test_a_non_finite_or_out_of_range_std_dev_is_refused(stack, value):
    headers = await user_headers(stack)
    body = {
        "symbol": "AAPL",
        "startDate": "2024-01-01",
        "endDate": "2024-03-31",
        "indicators": [{"name": "bollinger", "period": 20, "stdDev": value}],
    }
    refused = await stack.http.post("/market/indicators/calculate-task", json=body, headers=headers)
    assert error(refused, 422)["code"] == "VALIDATION_ERROR"
    assert await job_count(stack, headers) == 0
