"""What a hostile client tried against the API's edge: each answer is a 4xx envelope, and nothing is stored."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

from tests.conftest import data, error
from tests.test_admin import create_admin
from tests.test_market import served  # noqa: F401 (the API on a real socket, for the WebSocket case)

PASSWORD = "Secret123x"
JSON = {"content-type": "application/json"}
HUGE_PAGE = "4611686018427387904"


@pytest.mark.parametrize(
    "body",
    [
        b'{"taskType": "market_data_sync", "payload": {"symbols": ["AAPL"], "x": Infinity}, "idempotencyKey": "k1"}',
        b'{"taskType": "market_data_sync", "payload": {"symbols": ["AAPL"], "x": NaN}, "idempotencyKey": "k1"}',
        b'{"taskType": "market_data_sync", "payload": {"symbols": ["AAPL"], "x": 1e999}, "idempotencyKey": "k1"}',
        b'{"taskType": "market_data_sync", "payload": {"symbols": ["\\ud800"]}, "idempotencyKey": "k1"}',
        b'{"taskType": "market_data_sync", "payload": {"\\udfff": 1}, "idempotencyKey": "k1"}',
        b'{"taskType": "market_data_sync", "payload": {}, "idempotencyKey": "k1", "n": 1' + b"0" * 5000 + b"}",
        b'{"taskType": "\xff\xfe"}',
        b'{"taskType": "market_data_sync", "payload": {"symbols": ["A\\u0000"]}, "idempotencyKey": "k1"}',
    ],
)
async def test_unstorable_json_is_refused_at_the_door(stack, body):
    _, _, headers = await stack.new_account(PASSWORD)
    refused = error(await stack.http.post("/jobs", content=body, headers={**headers, **JSON}), 422)
    assert refused["code"] == "VALIDATION_ERROR"
    assert data(await stack.http.get("/jobs", headers=headers))["total"] == 0


async def test_a_lone_surrogate_in_a_compare_request_is_a_422(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    body = b'{"taskIds": ["\\ud800"]}'
    refused = error(await stack.http.post("/backtests/compare", content=body, headers={**headers, **JSON}), 422)
    assert refused["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "path",
    ["/strategies?search=a%00b", "/jobs?taskType=%00", "/backtests?strategyId=%ED%A0%80%00", "/jobs/a%00b"],
)
async def test_nul_in_a_query_or_path_is_a_422_not_a_database_error(stack, path):
    _, _, headers = await stack.new_account(PASSWORD)
    assert error(await stack.http.get(path, headers=headers), 422)["code"] == "VALIDATION_ERROR"
    stack.http.cookies.clear()  # signed out: not even the cookie the sign-in left
    assert error(await stack.http.get(path), 401)["code"] == "MISSING_TOKEN"


async def test_a_paired_surrogate_is_an_ordinary_character(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    body = b'{"taskIds": ["\\ud83d\\ude00"]}'  # an emoji, escaped as JSON allows
    denied = error(await stack.http.post("/backtests/compare", content=body, headers={**headers, **JSON}), 403)
    assert denied["code"] == "BACKTEST_ACCESS_DENIED"


async def test_an_oversized_body_is_413_without_being_parsed(stack):
    body = b'{"email": "a@example.com", "password": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    refused = error(await stack.http.post("/auth/login", content=body, headers=JSON), 413)
    assert refused["code"] == "PAYLOAD_TOO_LARGE"

    async def streamed():  # no Content-Length: refused once the limit is passed
        for _ in range(40):
            yield b" " * 65536

    refused = error(await stack.http.post("/auth/login", content=streamed(), headers=JSON), 413)
    assert refused["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/jobs", b"{not json"),
        ("post", "/jobs", b"{}"),
        ("post", "/backtests", b"[]"),
        ("post", "/backtests/compare", b'{"taskIds": ["\\ud800"]}'),
        ("post", "/strategies", b'{"name": 1e999}'),
        ("patch", "/users/me/preferences", b"{"),
        ("get", f"/jobs?page={HUGE_PAGE}", None),
    ],
)
async def test_who_is_asking_comes_before_what_they_sent(stack, method, path, body):
    response = await getattr(stack.http, method)(path, **({"content": body, "headers": JSON} if body else {}))
    assert error(response, 401)["code"] == "MISSING_TOKEN"


LIST_ROUTES = [
    "/jobs",
    "/backtests",
    "/strategies",
    "/admin/users",
    "/admin/audit-events",
]


@pytest.mark.parametrize("path", LIST_ROUTES)
async def test_a_page_past_any_database_integer_is_a_422(stack, path):
    _, headers = await create_admin(stack)
    for page in (HUGE_PAGE, "0", "-1"):
        refused = error(await stack.http.get(f"{path}?page={page}", headers=headers), 422)
        assert refused["code"] == "VALIDATION_ERROR"
    assert data(await stack.http.get(f"{path}?page=100000&pageSize=200", headers=headers))["items"] == []


async def test_a_strategy_s_backtest_list_bounds_its_page_too(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = data(
        await stack.http.post(
            "/strategies", json={"name": "s", "template": "moving_average", "parameters": {}}, headers=headers
        ),
        201,
    )
    path = f"/strategies/{strategy['id']}/backtests?page={HUGE_PAGE}"
    assert error(await stack.http.get(path, headers=headers), 422)["code"] == "VALIDATION_ERROR"


async def test_answers_are_not_sniffed_or_cached(stack):
    for response in (await stack.http.get("/health"), await stack.http.get("/jobs")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


async def test_websocket_connections_are_not_counted_as_server_errors(served):  # noqa: F811
    _, url = served
    async with websockets.connect(url) as ws:  # no session: refused inside the socket with 4401
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                json.loads(await ws.recv())
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(url.replace("ws://", "http://").replace("/market/stream", "/internal/metrics"))).text
    stream_lines = [line for line in metrics.splitlines() if 'route="/market/stream"' in line and "_total" in line]
    assert stream_lines and not any('status="500"' in line for line in stream_lines)
