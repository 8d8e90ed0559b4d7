"""The csv provider (``<dir>/<timeframe>/<SYMBOL>.csv`` or ``.parquet``) through the API and a sync job."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from db.engine import Database
from db.models import MarketBar
from tests.conftest import data, error, open_stack

PASSWORD = "CsvProvider1Password"
START = datetime(2024, 1, 2, 21, tzinfo=UTC)
RANGE = {"startDate": "2024-01-01", "endDate": "2024-01-31"}


def daily(count: int, base: float, start: datetime = START) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": [start + timedelta(days=i) for i in range(count)],
            "open": [base + i for i in range(count)],
            "high": [base + i + 2.5 for i in range(count)],
            "low": [base + i - 1.25 for i in range(count)],
            "close": [base + i + 0.5 for i in range(count)],
            "volume": [1_000 * (i + 1) for i in range(count)],  # whole numbers, as most files hold them
        }
    )


def write_market_data(directory: Path) -> Path:
    (directory / "1Day").mkdir(parents=True)
    (directory / "1Hour").mkdir()
    # AAPL: a CSV with zone-less timestamps (UTC), vwap and trade_count, rows out of order.
    aapl = daily(10, 100.0)
    aapl["timestamp"] = [t.strftime("%Y-%m-%d %H:%M:%S") for t in aapl["timestamp"]]
    aapl["vwap"] = aapl["close"] - 0.1
    aapl["trade_count"] = [500 + i for i in range(10)]
    aapl.iloc[::-1].to_csv(directory / "1Day" / "AAPL.csv", index=False)
    # IBM: a CSV with offsets (New York time), only the required columns.
    ibm = daily(5, 150.0)
    ibm["timestamp"] = [(t - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S-05:00") for t in ibm["timestamp"]]
    ibm.to_csv(directory / "1Day" / "IBM.csv", index=False)
    # MSFT: Parquet with aware timestamps.
    msft = daily(8, 300.0)
    msft["timestamp"] = pd.to_datetime(msft["timestamp"], utc=True)
    msft.to_parquet(directory / "1Day" / "MSFT.parquet", index=False)
    # AAPL hourly bars: another timeframe of the same symbol.
    hours = [datetime(2024, 1, 3, 14, tzinfo=UTC) + timedelta(hours=i) for i in range(7)]
    pd.DataFrame(
        {
            "timestamp": [h.isoformat() for h in hours],
            "open": [110.0] * 7,
            "high": [111.0] * 7,
            "low": [109.0] * 7,
            "close": [110.0 + i / 10 for i in range(7)],
            "volume": [10.0] * 7,
        }
    ).to_csv(directory / "1Hour" / "AAPL.csv", index=False)
    # BROKEN: no volume column.
    daily(3, 10.0).drop(columns=["volume"]).to_csv(directory / "1Day" / "BROKEN.csv", index=False)
    return directory


@pytest.fixture
async def csv_stack(database_url, dev_server, smtp_server, tmp_path):
    directory = write_market_data(tmp_path / "market-data")
    async for stack in open_stack(
        database_url,
        dev_server.client,
        smtp_server,
        tmp_path,
        market_data_provider="csv",
        market_data_dir=directory,
        quote_cache_ttl_seconds=0,
    ):
        address = f"csv-{uuid.uuid4().hex[:8]}@example.com"
        await stack.register_verified(address, PASSWORD)
        yield stack, await stack.login(address, PASSWORD), directory


async def test_catalog_with_and_without_asset_names(csv_stack):
    stack, headers, directory = csv_stack
    catalog = data(await stack.http.get("/market/catalog", headers=headers))
    assert [(a["symbol"], a["name"], a["exchange"]) for a in catalog] == [
        ("AAPL", "AAPL", "CSV"),
        ("BROKEN", "BROKEN", "CSV"),
        ("IBM", "IBM", "CSV"),
        ("MSFT", "MSFT", "CSV"),
    ]
    assert data(await stack.http.get("/market/symbols", headers=headers)) == ["AAPL", "BROKEN", "IBM", "MSFT"]

    pd.DataFrame(
        {"symbol": ["AAPL", "msft"], "name": ["Apple Inc.", "Microsoft Corporation"], "exchange": ["NASDAQ", "NASDAQ"]}
    ).to_csv(directory / "assets.csv", index=False)
    named = {a["symbol"]: a for a in data(await stack.http.get("/market/catalog", headers=headers))}
    assert (named["AAPL"]["name"], named["AAPL"]["exchange"]) == ("Apple Inc.", "NASDAQ")
    assert (named["MSFT"]["name"], named["MSFT"]["exchange"]) == ("Microsoft Corporation", "NASDAQ")
    assert (named["IBM"]["name"], named["IBM"]["exchange"]) == ("IBM", "CSV")  # a file without a listed name
    assert data(await stack.http.get("/market/catalog", params={"market": "NASDAQ"}, headers=headers)) == [
        named["AAPL"],
        named["MSFT"],
    ]
    detail = data(await stack.http.get("/market/catalog/msft", headers=headers))
    assert detail == {
        "symbol": "MSFT",
        "name": "Microsoft Corporation",
        "exchange": "NASDAQ",
        "currency": "USD",
        "assetClass": "us_equity",
        "tradable": True,
        "fractionable": True,
    }
    found = data(await stack.http.get("/market/search", params={"keyword": "micro"}, headers=headers))
    assert [a["symbol"] for a in found] == ["MSFT"]

    health = data(await stack.http.get("/market/provider-health", headers=headers))
    assert (health["provider"], health["transport"], health["healthy"], health["status"]) == (
        "csv",
        "files",
        True,
        "ok",
    )
    assert health["message"] == "4 symbols" and health["baseUrl"] == str(directory)


async def test_history_from_csv_and_parquet(csv_stack):
    stack, headers, _ = csv_stack
    params = {"startDate": "2024-01-01", "endDate": "2024-01-31"}

    aapl = data(await stack.http.get("/market/history/aapl", params=params, headers=headers))
    assert (aapl["symbol"], aapl["source"], aapl["timeframe"]) == ("AAPL", "csv", "1Day")
    expected = daily(10, 100.0)
    assert [c["closePrice"] for c in aapl["candles"]] == expected["close"].tolist()  # sorted by time
    assert [datetime.fromisoformat(c["timestamp"]) for c in aapl["candles"]] == expected["timestamp"].tolist()
    assert aapl["candles"][0] == {
        "timestamp": "2024-01-02T21:00:00+00:00",
        "openPrice": 100.0,
        "highPrice": 102.5,
        "lowPrice": 98.75,
        "closePrice": 100.5,
        "volume": 1000,
    }

    ibm = data(await stack.http.get("/market/history/IBM", params=params, headers=headers))
    assert [c["timestamp"] for c in ibm["candles"]] == [t.isoformat() for t in daily(5, 150.0)["timestamp"]]

    msft = data(await stack.http.get("/market/history/MSFT", params=params, headers=headers))
    assert [c["closePrice"] for c in msft["candles"]] == daily(8, 300.0)["close"].tolist()

    # A sub-range is exactly the bars inside it; limit keeps the last ones.
    part = {"startDate": "2024-01-04", "endDate": "2024-01-06"}
    inside = data(await stack.http.get("/market/history/AAPL", params=part, headers=headers))["candles"]
    assert [c["closePrice"] for c in inside] == [102.5, 103.5, 104.5]
    tail = data(await stack.http.get("/market/history/AAPL", params={**params, "limit": 2}, headers=headers))
    assert tail["candles"] == aapl["candles"][-2:]

    hourly = data(
        await stack.http.get("/market/history/AAPL", params={**params, "timeframe": "1Hour"}, headers=headers)
    )
    assert len(hourly["candles"]) == 7 and hourly["candles"][0]["timestamp"] == "2024-01-03T14:00:00+00:00"
    # A known symbol without files of that timeframe has no bars; an unknown one is not found.
    none = data(await stack.http.get("/market/history/MSFT", params={**params, "timeframe": "1Hour"}, headers=headers))
    assert none["candles"] == []
    missing = error(await stack.http.get("/market/history/NOPE", params=params, headers=headers), 404)
    assert (missing["code"], missing["retryable"]) == ("ASSET_NOT_FOUND", False)


async def test_quote_and_errors(csv_stack):
    stack, headers, _ = csv_stack
    quote = data(await stack.http.get("/market/quote/msft", headers=headers))
    assert quote["metadata"] == {"cacheHit": False, "source": "csv"}
    last = daily(8, 300.0).iloc[-1]
    assert quote["quote"]["symbol"] == "MSFT"
    assert (quote["quote"]["price"], quote["quote"]["previousClose"]) == (last["close"], last["close"] - 1)
    assert (quote["quote"]["openPrice"], quote["quote"]["highPrice"], quote["quote"]["lowPrice"]) == (
        last["open"],
        last["high"],
        last["low"],
    )
    assert quote["quote"]["bidPrice"] is None and quote["quote"]["askPrice"] is None
    assert datetime.fromisoformat(quote["quote"]["timestamp"]) == last["timestamp"]

    missing = error(await stack.http.get("/market/quote/NOPE", headers=headers), 404)
    assert (missing["code"], missing["retryable"]) == ("ASSET_NOT_FOUND", False)
    assert error(await stack.http.get("/market/catalog/NOPE", headers=headers), 404)["code"] == "ASSET_NOT_FOUND"
    batch = data(await stack.http.post("/market/quotes", json={"symbols": ["IBM", "NOPE"]}, headers=headers))
    assert [(i["symbol"], i["status"], i["errorCode"], i["source"]) for i in batch["items"]] == [
        ("IBM", "ok", None, "csv"),
        ("NOPE", "error", "QUOTE_NOT_AVAILABLE", "csv"),
    ]

    # A file without a required column is named in a clear error, never a 500.
    params = {"startDate": "2024-01-01", "endDate": "2024-01-31"}
    broken = error(await stack.http.get("/market/history/BROKEN", params=params, headers=headers), 400)
    assert broken["code"] == "INVALID_MARKET_DATA_FILE" and "BROKEN.csv" in broken["message"]
    assert "volume" in broken["message"]
    broken_quote = error(await stack.http.get("/market/quote/BROKEN", headers=headers), 400)
    assert broken_quote["code"] == "INVALID_MARKET_DATA_FILE"

    bad_timeframe = await stack.http.get("/market/history/AAPL", params={**params, "timeframe": "7Y"}, headers=headers)
    assert error(bad_timeframe, 400)["code"] == "INVALID_ARGUMENT"


async def wait_for(stack, headers, task_id: str, timeout: float = 30.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task = data(await stack.http.get(f"/market/sync-task/{task_id}", headers=headers))
        if task["status"] in ("succeeded", "failed", "cancelled"):
            return task
        assert asyncio.get_running_loop().time() < deadline, f"task still {task['status']}"
        await asyncio.sleep(0.2)


async def stored_bars(stack, symbol: str) -> list[MarketBar]:
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            rows = await session.scalars(
                select(MarketBar).where(MarketBar.symbol == symbol).order_by(MarketBar.timestamp)
            )
            return list(rows)
    finally:
        await db.dispose()


async def test_a_sync_job_stores_the_bars_of_the_files(csv_stack):
    stack, headers, _ = csv_stack
    body = {"symbols": ["AAPL", "MSFT", "IBM"], "startDate": "2024-01-01", "endDate": "2024-01-31"}
    submitted = await stack.http.post("/market/sync-task", json=body, headers=headers)
    task = await wait_for(stack, headers, data(submitted, 202)["taskId"])

    assert task["status"] == "succeeded", task
    summary = task["result"]["summary"]
    assert summary["source"] == "csv" and summary["successCount"] == 3 and summary["failureCount"] == 0
    assert summary["rowCount"] == summary["fetchedCount"] == 10 + 8 + 5

    aapl = await stored_bars(stack, "AAPL")
    expected = daily(10, 100.0)
    assert {(b.source, b.timeframe) for b in aapl} == {("csv", "1Day")}
    assert [b.close for b in aapl] == expected["close"].tolist()
    assert [b.volume for b in aapl] == expected["volume"].astype(float).tolist()
    assert [b.trade_count for b in aapl] == list(range(500, 510))
    assert [b.vwap for b in aapl] == pytest.approx((expected["close"] - 0.1).tolist())
    assert aapl[0].timestamp.replace(tzinfo=aapl[0].timestamp.tzinfo or UTC) == START
    msft = await stored_bars(stack, "MSFT")
    assert [b.close for b in msft] == daily(8, 300.0)["close"].tolist()
    assert all(b.vwap is None and b.trade_count is None for b in msft)

    logs = data(await stack.http.get(f"/jobs/{task['taskId']}", headers=headers))["logs"]
    assert any("AAPL: fetched 10 1Day bars from csv" in line["message"] for line in logs)

    # The same sync again finds nothing missing.
    again = await stack.http.post("/market/sync-task", json=body, headers=headers)
    repeated = await wait_for(stack, headers, data(again, 202)["taskId"])
    assert repeated["status"] == "succeeded" and repeated["result"]["summary"]["fetchedCount"] == 0
    assert len(await stored_bars(stack, "AAPL")) == 10


async def test_a_sync_of_missing_or_broken_files_fails_with_their_codes(csv_stack):
    stack, headers, _ = csv_stack
    body = {"symbols": ["AAPL", "NOPE", "BROKEN"], "startDate": "2024-01-01", "endDate": "2024-01-31"}
    task = await wait_for(
        stack, headers, data(await stack.http.post("/market/sync-task", json=body, headers=headers), 202)["taskId"]
    )
    assert task["status"] == "succeeded"  # one symbol synced: a partial success
    items = {i["symbol"]: i for i in task["result"]["items"]}
    assert items["AAPL"]["status"] == "ok" and items["AAPL"]["storedCount"] == 10
    assert (items["NOPE"]["status"], items["NOPE"]["errorCode"]) == ("error", "ASSET_NOT_FOUND")
    assert (items["BROKEN"]["status"], items["BROKEN"]["errorCode"]) == ("error", "INVALID_MARKET_DATA_FILE")

    only_broken = {"symbols": ["BROKEN"], "startDate": "2024-01-01", "endDate": "2024-01-31"}
    failed = await wait_for(
        stack,
        headers,
        data(await stack.http.post("/market/sync-task", json=only_broken, headers=headers), 202)["taskId"],
    )
    assert failed["status"] == "failed" and failed["error"]["code"] == "INVALID_MARKET_DATA_FILE"
    assert await stored_bars(stack, "BROKEN") == []


async def test_files_outside_the_directory_are_out_of_reach(csv_stack):
    stack, headers, directory = csv_stack
    daily(3, 50.0).to_csv(directory.parent / "OUTSIDE.csv", index=False)
    error(await stack.http.get("/market/history/..%2F..%2FOUTSIDE", params=RANGE, headers=headers), 404)
    walk = {"symbols": ["../../OUTSIDE", "../1Day/AAPL"], "startDate": "2024-01-01", "endDate": "2024-01-31"}
    assert error(await stack.http.post("/market/sync-task", json=walk, headers=headers), 422)["code"] == (
        "VALIDATION_ERROR"
    )
    # Dots and slashes inside a ticker pass the symbol pattern, but never become a path to a file.
    inside = {**walk, "symbols": ["A/../../OUTSIDE"]}
    task = await wait_for(
        stack, headers, data(await stack.http.post("/market/sync-task", json=inside, headers=headers), 202)["taskId"]
    )
    assert task["status"] == "failed" and task["error"]["code"] == "ASSET_NOT_FOUND"
    assert await stored_bars(stack, "A/../../OUTSIDE") == []


async def test_rows_after_now_in_a_file_are_never_served_or_stored(csv_stack):
    stack, headers, directory = csv_stack
    now = datetime.now(UTC)
    # Ten rows in the past, ten in the future.
    daily(20, 40.0, start=now - timedelta(days=9, hours=12)).to_csv(directory / "1Day" / "FUTR.csv", index=False)
    wide = {"startDate": (now - timedelta(days=30)).date().isoformat(), "endDate": "2200-01-01"}
    candles = data(await stack.http.get("/market/history/FUTR", params=wide, headers=headers))["candles"]
    assert len(candles) == 10 and all(datetime.fromisoformat(c["timestamp"]) <= now for c in candles)
    body = {"symbols": ["FUTR"], **wide}
    task = await wait_for(
        stack, headers, data(await stack.http.post("/market/sync-task", json=body, headers=headers), 202)["taskId"]
    )
    assert task["status"] == "succeeded" and task["result"]["summary"]["fetchedCount"] == 10
    stored = await stored_bars(stack, "FUTR")
    assert len(stored) == 10 and all(b.timestamp.replace(tzinfo=b.timestamp.tzinfo or UTC) <= now for b in stored)


async def test_untidy_files_are_read_or_refused_clearly(csv_stack):
    stack, headers, directory = csv_stack
    blank = daily(3, 70.0)
    blank["trade_count"] = [5, None, 7]  # a blank cell in an integer column
    blank.to_csv(directory / "1Day" / "ko.csv", index=False)  # a lower-case file name
    body = {"symbols": ["KO"], "startDate": "2024-01-01", "endDate": "2024-01-31"}
    task = await wait_for(
        stack, headers, data(await stack.http.post("/market/sync-task", json=body, headers=headers), 202)["taskId"]
    )
    assert task["status"] == "succeeded", task
    assert [b.trade_count for b in await stored_bars(stack, "KO")] == [5, None, 7]

    garbled = daily(3, 80.0)
    garbled["timestamp"] = ["2024-01-02", "yesterday", "2024-01-04"]
    garbled.to_csv(directory / "1Day" / "PEP.csv", index=False)
    assert (
        error(await stack.http.get("/market/history/PEP", params=RANGE, headers=headers), 400)["code"]
        == "INVALID_MARKET_DATA_FILE"
    )
    wordy = daily(3, 90.0)
    wordy["close"] = ["1.0", "abc", "2.0"]
    wordy.to_csv(directory / "1Day" / "XOM.csv", index=False)
    assert error(await stack.http.get("/market/quote/XOM", headers=headers), 400)["code"] == "INVALID_MARKET_DATA_FILE"
    daily(0, 1.0).to_csv(directory / "1Day" / "WMT.csv", index=False)
    assert error(await stack.http.get("/market/quote/WMT", headers=headers), 404)["code"] == "ASSET_NOT_FOUND"


async def test_a_quote_comes_from_the_newest_bar(csv_stack):
    stack, headers, directory = csv_stack
    # AAPL has daily bars to Jan 11 and hourly bars on Jan 3: the newest bar is the daily one.
    quote = data(await stack.http.get("/market/quote/AAPL", headers=headers))["quote"]
    assert quote["timestamp"].startswith("2024-01-11") and quote["price"] == daily(10, 100.0)["close"].iloc[-1]
    (directory / "15Min").mkdir()
    late = daily(1, 500.0, start=datetime(2024, 1, 12, 15, tzinfo=UTC))
    late.to_csv(directory / "15Min" / "AAPL.csv", index=False)
    assert data(await stack.http.get("/market/quote/AAPL", headers=headers))["quote"]["price"] == 500.5
