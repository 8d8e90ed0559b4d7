"""The market routes over HTTP and the quote stream over a real WebSocket, on the synthetic provider."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, date, datetime

import pytest
import uvicorn
import websockets

from activities.market_data import MarketDataActivities
from api.app import create_app
from core.settings import Settings
from db.engine import Database
from db.models import MarketBar
from domain.market import SyncRequest
from integrations.market_data import provider_from_settings
from tests.conftest import data, open_stack

PASSWORD = "Market1Password"


async def user_headers(stack) -> dict[str, str]:
    return (await stack.new_account(PASSWORD))[2]


async def test_catalog_search_and_symbols(stack):
    headers = await user_headers(stack)
    found = data(await stack.http.get("/market/search", params={"keyword": "apple"}, headers=headers))
    assert found[0]["symbol"] == "AAPL" and found[0]["assetClass"] == "us_equity"
    assert data(await stack.http.get("/market/search", params={"keyword": "a", "limit": 3}, headers=headers))[2]
    nyse = data(await stack.http.get("/market/catalog", params={"market": "NYSE", "limit": 200}, headers=headers))
    assert nyse and {a["exchange"] for a in nyse} == {"NYSE"}
    assert data(await stack.http.get("/market/catalog/msft", headers=headers))["name"] == "Microsoft Corporation"
    unknown = await stack.http.get("/market/catalog/NOPE", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {"code": "ASSET_NOT_FOUND", "message": "unknown symbol NOPE", "retryable": False}
    assert "SPY" in data(await stack.http.get("/market/symbols", headers=headers))
    stack.http.cookies.clear()
    assert (await stack.http.get("/market/symbols")).status_code == 401


async def test_quotes_are_cached_for_a_moment(stack):
    headers = await user_headers(stack)
    first = data(await stack.http.get("/market/quote/AAPL", headers=headers))
    second = data(await stack.http.get("/market/latest/AAPL", headers=headers))
    assert first["metadata"] == {"cacheHit": False, "source": "synthetic"}
    assert second["metadata"]["cacheHit"] is True and second["quote"] == first["quote"]
    quote = first["quote"]
    assert quote["symbol"] == "AAPL" and quote["bidPrice"] < quote["price"] < quote["askPrice"]
    batch = data(await stack.http.post("/market/quotes", json={"symbols": ["AAPL", "NOPE"]}, headers=headers))
    ok, bad = batch["items"]
    assert ok["status"] == "ok" and ok["cacheHit"] is True and ok["quote"]["price"] == quote["price"]
    assert bad == {
        "symbol": "NOPE",
        "status": "error",
        "quote": None,
        "errorCode": "QUOTE_NOT_AVAILABLE",
        "cacheHit": False,
        "source": "synthetic",
    }


@pytest.fixture
async def limited_stack(database_url, dev_server, smtp_server, tmp_path):
    async for opened in open_stack(database_url, dev_server.client, smtp_server, tmp_path, quote_rate_limit=3):
        yield opened


async def test_quotes_are_rate_limited_per_user(limited_stack):
    stack = limited_stack
    headers, other = await user_headers(stack), await user_headers(stack)
    for _ in range(3):
        assert (await stack.http.get("/market/quote/IBM", headers=headers)).status_code == 200
    limited = await stack.http.get("/market/quote/IBM", headers=headers)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(limited.headers["retry-after"]) >= 1
    assert (await stack.http.get("/market/quote/IBM", headers=other)).status_code == 200


async def test_history_returns_every_bar_of_the_range(stack):
    headers = await user_headers(stack)
    params = {"startDate": "2024-01-01", "endDate": "2024-03-31"}
    history = data(await stack.http.get("/market/history/aapl", params=params, headers=headers))
    candles = history["candles"]
    assert history["symbol"] == "AAPL" and history["source"] == "synthetic" and len(candles) == 65
    assert set(candles[0]) == {"timestamp", "openPrice", "highPrice", "lowPrice", "closePrice", "volume"}
    assert candles[0]["timestamp"].startswith("2024-01-01") and candles[-1]["timestamp"].startswith("2024-03-29")
    assert all(c["lowPrice"] <= min(c["openPrice"], c["closePrice"]) for c in candles)
    again = data(await stack.http.get("/market/history/AAPL", params=params, headers=headers))
    assert again["candles"] == candles  # deterministic
    tail = data(await stack.http.get("/market/history/AAPL", params={**params, "limit": 5}, headers=headers))
    assert tail["candles"] == candles[-5:]
    backwards = await stack.http.get(
        "/market/history/AAPL", params={"startDate": "2024-03-01", "endDate": "2024-01-01"}, headers=headers
    )
    assert backwards.status_code == 400
    missing = await stack.http.get("/market/history/AAPL", params={"startDate": "2024-03-01"}, headers=headers)
    assert missing.status_code == 422


async def test_provider_health_and_boundary_check(stack):
    headers = await user_headers(stack)
    health = data(await stack.http.get("/market/provider-health", headers=headers))
    assert health["provider"] == "synthetic" and health["healthy"] is True and health["status"] == "ok"
    body = {"symbols": ["KO", "PEP"], "startDate": "2024-01-01", "endDate": "2024-01-31"}
    task_id = (await stack.http.post("/market/sync-task", json=body, headers=headers)).json()["data"]["taskId"]
    for _ in range(100):
        if data(await stack.http.get(f"/jobs/{task_id}", headers=headers))["status"] == "succeeded":
            break
        await asyncio.sleep(0.2)
    check = data(await stack.http.post("/market/boundary/check", json={"symbols": ["KO", "WMT"]}, headers=headers))
    assert check == {
        "consistent": False,
        "missingIds": ["WMT"],
        "extraIds": ["PEP"],
        "mismatchCount": 2,
        "beforeCount": 2,
        "afterCount": 2,
    }


# --- the WebSocket stream, through a real server --------------------------------------------------------


@pytest.fixture
async def served(database_url, dev_server, smtp_server, tmp_path):
    """The API served by uvicorn on a free port, with a fast stream push."""
    async for stack in open_stack(
        database_url, dev_server.client, smtp_server, tmp_path, stream_push_interval_seconds=0.3
    ):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        app = create_app(stack.settings, temporal=dev_server.client)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        try:
            yield stack, f"ws://127.0.0.1:{port}/market/stream"
        finally:
            server.should_exit = True
            await task


async def receive(ws, kind: str) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == kind:
            return message


async def test_stream_pushes_quotes_periodically(served):
    stack, url = served
    headers = await user_headers(stack)
    async with websockets.connect(url, additional_headers=headers) as ws:
        ready = await receive(ws, "stream.ready")
        assert ready["payload"]["subscriptions"] == []
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["aapl", "MSFT"], "channel": "quote"}))
        subscribed = await receive(ws, "stream.subscribed")
        assert subscribed["symbols"] == ["AAPL", "MSFT"]
        seen = []
        while len(seen) < 6:  # the subscribe-time push and at least two periodic rounds
            seen.append(await receive(ws, "market.quote"))
        assert {m["symbol"] for m in seen} == {"AAPL", "MSFT"}
        assert all(m["subscriptionId"] == subscribed["subscriptionId"] and m["payload"]["price"] > 0 for m in seen)
        await ws.send(json.dumps({"action": "subscribe", "symbols": ["NOPE"]}))
        degraded = await receive(ws, "stream.degraded")
        assert degraded["payload"]["errorCode"] == "ASSET_NOT_FOUND"
        await ws.send(json.dumps({"action": "unsubscribe", "subscriptionId": subscribed["subscriptionId"]}))
        assert (await receive(ws, "stream.unsubscribed"))["subscriptionId"] == subscribed["subscriptionId"]
        await ws.send(json.dumps({"action": "unsubscribe", "subscriptionId": "nope"}))
        assert (await receive(ws, "stream.error"))["error"]["code"] == "STREAM_SUBSCRIPTION_NOT_FOUND"
        await ws.send(json.dumps({"action": "subscribe", "symbols": [f"S{i}" for i in range(21)]}))
        assert (await receive(ws, "stream.error"))["error"]["code"] == "STREAM_SUBSCRIPTION_LIMIT_EXCEEDED"
        await ws.send("not json")
        assert (await receive(ws, "stream.error"))["error"]["code"] == "STREAM_INVALID_SUBSCRIPTION"
        await ws.send(json.dumps({"action": "status"}))
        status = await receive(ws, "stream.status")
        assert [s["symbols"] for s in status["payload"]["subscriptions"]] == [["NOPE"]]


async def test_stream_requires_a_session_and_limits_connections(served):
    stack, url = served
    async with websockets.connect(url) as ws:
        assert (await receive(ws, "stream.error"))["error"]["code"] == "MISSING_TOKEN"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4401
    headers = await user_headers(stack)
    open_sockets = [await websockets.connect(url, additional_headers=headers) for _ in range(3)]
    for ws in open_sockets:  # each connection counts once the server has authenticated it
        await receive(ws, "stream.ready")
    try:
        async with websockets.connect(url, additional_headers=headers) as fourth:
            assert (await receive(fourth, "stream.error"))["error"]["code"] == "STREAM_CONNECTION_LIMIT_EXCEEDED"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await fourth.recv()
            assert closed.value.rcvd.code == 4408
        status = (await stack.http.get("/market/stream/status", headers=headers)).json()["data"]
        assert status["mode"] == "periodic_push"
    finally:
        for ws in open_sockets:
            await ws.close()


async def test_a_range_read_for_the_engine_is_kept_while_it_holds_the_same_bars(database_url):
    """A worker reads a range of bars for the engine once, and again only when the range holds more bars."""
    settings = Settings(database_url=database_url, market_data_provider="synthetic")
    db = Database.from_settings(settings)
    market = MarketDataActivities(db, provider_from_settings(settings), settings)
    source = provider_from_settings(settings).source
    request = SyncRequest(symbols=["KEPT"], start_date=date(2024, 1, 1), end_date=date(2024, 1, 31))
    days = [datetime(2024, 1, day, tzinfo=UTC) for day in range(2, 12)]

    async def store(moments: list[datetime]) -> None:
        async with db.session() as session:
            session.add_all(
                MarketBar(
                    symbol="KEPT",
                    timeframe="1Day",
                    timestamp=at,
                    source=source,
                    open=1.0,
                    high=2.0,
                    low=0.5,
                    close=1.5 + at.day,
                    volume=10.0,
                )
                for at in moments
            )

    try:
        await store(days[:-1])
        reads: list[int] = []
        first = await market.stored_arrays("KEPT", "1Day", request, reads.append, count=len(days) - 1)
        again = await market.stored_arrays("KEPT", "1Day", request, reads.append, count=len(days) - 1)
        assert again is first and reads == [len(days) - 1]  # read once
        assert not first.close.flags.writeable  # shared by the runs that read the range

        await store(days[-1:])  # the range now holds one more bar: read again, all of them
        grown = await market.stored_arrays("KEPT", "1Day", request, reads.append, count=len(days))
        assert reads == [len(days) - 1, len(days)] and grown.close.tolist() == [1.5 + at.day for at in days]
        uncounted = await market.stored_arrays("KEPT", "1Day", request, reads.append)
        assert len(uncounted) == len(days) and len(reads) == 3  # no count given: always read
    finally:
        await db.dispose()
