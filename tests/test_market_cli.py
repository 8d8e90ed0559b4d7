"""`quantpoly market ...` against the real stack: the same answers and error codes as the /market routes, on the
alpaca provider (through alpaca-py against the local Alpaca-compatible server) and on the synthetic default;
and the API, the worker and the CLI refusing to start with `alpaca` selected and no credentials."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import data, open_stack
from tests.fake_alpaca import API_KEY, SECRET_KEY, FakeAlpaca, fake_alpaca_fixture  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "MarketCli1Password"
START = datetime(2024, 1, 2, 21, tzinfo=UTC)


def daily_bars(count: int, start: datetime = START) -> list[dict]:
    return [
        {
            "t": start + timedelta(days=i),
            "o": 100.0 + i,
            "h": 102.0 + i,
            "l": 99.0 + i,
            "c": 101.0 + i + i / 100,
            "v": 1_000_000 + i,
            "n": 5_000 + i,
            "vw": 100.5 + i,
        }
        for i in range(count)
    ]


SNAPSHOT = {
    "latestTrade": {"t": "2024-03-01T20:59:59Z", "x": "V", "p": 180.25, "s": 100, "c": ["@"], "i": 7},
    "latestQuote": {"t": "2024-03-01T20:59:59Z", "ax": "V", "ap": 180.3, "as": 2, "bx": "V", "bp": 180.2, "bs": 3},
    "dailyBar": {"t": "2024-03-01T05:00:00Z", "o": 179.5, "h": 181, "l": 178.75, "c": 180.25, "v": 4_500_000},
    "prevDailyBar": {"t": "2024-02-29T05:00:00Z", "o": 178, "h": 179.9, "l": 177.1, "c": 179.66, "v": 5e6},
}


def out(result) -> object:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return json.loads(result.stdout)


def cli_error(result) -> dict:
    """The CLI's error line: the last line of stderr (debug log lines may come before it)."""
    assert result.exit_code == 1, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.stdout == ""
    return json.loads(result.stderr.strip().splitlines()[-1])["error"]


async def new_user(stack) -> tuple[str, dict[str, str]]:
    email, _, headers = await stack.new_account(PASSWORD)
    return email, headers


# --- the alpaca provider, pointed at the local Alpaca-compatible server ----------------------------------


@pytest.fixture
async def alpaca(database_url, dev_server, smtp_server, tmp_path, fake_alpaca: FakeAlpaca):
    """A stack on the alpaca provider (API, worker and the CLI's environment) and the fake it talks to."""
    fake_alpaca.add_asset("AAPL", "Apple Inc. Common Stock", "NASDAQ")
    fake_alpaca.add_asset("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", fractionable=False)
    fake_alpaca.add_bars("AAPL", daily_bars(30))
    # Bars just outside the asked range must not be returned.
    fake_alpaca.add_bars("AAPL", daily_bars(3, START - timedelta(days=5)) + daily_bars(2, START + timedelta(days=31)))
    fake_alpaca.set_snapshot("AAPL", SNAPSHOT)
    fake_alpaca.set_snapshot("MSFT", SNAPSHOT)
    fake_alpaca.hang_seconds = 2.0
    settings = dict(
        market_data_provider="alpaca",
        alpaca_api_key=API_KEY,
        alpaca_secret_key=SECRET_KEY,
        alpaca_data_url=fake_alpaca.data_url,
        alpaca_trading_url=fake_alpaca.trading_url,
        alpaca_timeout_seconds=0.5,
        alpaca_max_retries=1,
        quote_cache_ttl_seconds=0,
    )
    async for stack in open_stack(database_url, dev_server.client, smtp_server, tmp_path, **settings):
        stack.env.update({f"QUANTPOLY_{name.upper()}": str(value) for name, value in settings.items()})
        yield stack, fake_alpaca


async def test_history_over_http_and_cli_return_every_bar_across_pages(alpaca):
    stack, fake = alpaca
    _, headers = await new_user(stack)
    params = {"startDate": "2024-01-02", "endDate": "2024-01-31"}

    over_http = data(await stack.http.get("/market/history/AAPL", params=params, headers=headers))
    http_pages = len(fake.requests_to("/v2/stocks/bars"))
    from_cli = out(await stack.cli("market", "history", "aapl", "--start", "2024-01-02", "--end", "2024-01-31"))
    cli_pages = len(fake.requests_to("/v2/stocks/bars")) - http_pages

    expected = daily_bars(30)
    assert over_http["source"] == "alpaca" and over_http["symbol"] == "AAPL"
    assert len(over_http["candles"]) == 30
    assert [c["closePrice"] for c in over_http["candles"]] == [b["c"] for b in expected]
    assert (from_cli["symbol"], from_cli["timeframe"], from_cli["source"]) == ("AAPL", "1Day", "alpaca")
    assert len(from_cli["candles"]) == 30
    assert [c["close_price"] for c in from_cli["candles"]] == [c["closePrice"] for c in over_http["candles"]]
    assert [c["timestamp"] for c in from_cli["candles"]] == [c["timestamp"] for c in over_http["candles"]]
    assert datetime.fromisoformat(from_cli["candles"][0]["timestamp"]) == START
    assert set(from_cli["candles"][0]) == {
        "timestamp",
        "open_price",
        "high_price",
        "low_price",
        "close_price",
        "volume",
    }
    # 30 bars, at most 4 a page: both went through every page, each page after the first by its token.
    assert http_pages == cli_pages == 8
    tokens = ["page_token" in p.query for p in fake.requests_to("/v2/stocks/bars")]
    assert tokens == ([False] + [True] * 7) * 2

    tail = out(
        await stack.cli("market", "history", "AAPL", "--start", "2024-01-02", "--end", "2024-01-31", "--limit", "5")
    )
    assert [c["close_price"] for c in tail["candles"]] == [b["c"] for b in expected[-5:]]


async def test_quote_over_http_and_cli(alpaca):
    stack, _ = alpaca
    address, headers = await new_user(stack)
    over_http = data(await stack.http.get("/market/quote/AAPL", headers=headers))
    from_cli = out(await stack.cli("market", "quote", "aapl", "--user", address))
    assert over_http["quote"]["price"] == from_cli["quote"]["price"] == 180.25
    assert from_cli["quote"]["previous_close"] == 179.66 and from_cli["quote"]["bid_price"] == 180.2
    assert from_cli["metadata"] == {"cache_hit": False, "source": "alpaca"}

    batch = out(await stack.cli("market", "quotes", "AAPL", "NOPE", "--user", address))
    ok, bad = batch["items"]
    assert (ok["symbol"], ok["status"], ok["quote"]["price"]) == ("AAPL", "ok", 180.25)
    assert (bad["symbol"], bad["status"], bad["error_code"]) == ("NOPE", "error", "QUOTE_NOT_AVAILABLE")

    unknown = await stack.cli("market", "quote", "AAPL", "--user", "nobody@example.com")
    assert cli_error(unknown)["code"] == "USER_NOT_FOUND"


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [(429, 429, "UPSTREAM_RATE_LIMITED"), ("hang", 504, "UPSTREAM_TIMEOUT")],
)
async def test_an_upstream_fault_gives_the_same_code_over_http_and_cli(alpaca, fault, status, code):
    stack, fake = alpaca
    address, headers = await new_user(stack)
    fake.fail(fault, times=None, path="/v2/stocks/snapshots")

    answer = await stack.http.get("/market/quote/AAPL", headers=headers)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["retryable"]) == (code, True)

    before = len(fake.requests_to("/v2/stocks/snapshots"))
    result = await stack.cli("market", "quote", "AAPL", "--user", address)
    assert (cli_error(result)["code"], cli_error(result)["retryable"]) == (code, True)
    # The CLI went upstream itself (no cache between processes), retrying a 429 once, never a timeout.
    assert len(fake.requests_to("/v2/stocks/snapshots")) - before == (2 if fault == 429 else 1)

    fake.clear_faults()
    assert data(await stack.http.get("/market/quote/AAPL", headers=headers))["quote"]["price"] == 180.25
    assert out(await stack.cli("market", "quote", "AAPL", "--user", address))["quote"]["price"] == 180.25


async def test_unknown_assets_are_not_found_over_http_and_cli(alpaca):
    stack, _ = alpaca
    _, headers = await new_user(stack)
    over_http = await stack.http.get("/market/catalog/ZZZZ", headers=headers)
    assert over_http.status_code == 404 and over_http.json()["error"]["code"] == "ASSET_NOT_FOUND"
    assert cli_error(await stack.cli("market", "catalog-detail", "ZZZZ"))["code"] == "ASSET_NOT_FOUND"
    history = ("market", "history", "ZZZZ", "--start", "2024-01-02", "--end", "2024-01-31")
    assert cli_error(await stack.cli(*history))["code"] == "ASSET_NOT_FOUND"

    detail = out(await stack.cli("market", "catalog-detail", "msft"))
    assert detail == {
        "symbol": "MSFT",
        "name": "Microsoft Corporation Common Stock",
        "exchange": "NASDAQ",
        "currency": "USD",
        "asset_class": "us_equity",
        "tradable": True,
        "fractionable": False,
    }
    assert out(await stack.cli("market", "symbols")) == data(await stack.http.get("/market/symbols", headers=headers))
    assert out(await stack.cli("market", "search", "micro"))[0]["symbol"] == "MSFT"


async def test_provider_health_over_http_and_cli(alpaca):
    stack, fake = alpaca
    _, headers = await new_user(stack)

    over_http = data(await stack.http.get("/market/provider-health", headers=headers))
    from_cli = out(await stack.cli("market", "health"))
    assert (over_http["provider"], over_http["transport"], over_http["healthy"]) == ("alpaca", "alpaca-py", True)
    assert over_http["status"] == "ok" and over_http["lastFailureCode"] is None and over_http["lastLatencyMs"] > 0
    assert (from_cli["provider"], from_cli["transport"], from_cli["healthy"]) == ("alpaca", "alpaca-py", True)
    assert from_cli["status"] == "ok" and from_cli["last_failure_code"] is None and from_cli["last_latency_ms"] > 0
    assert from_cli["base_url"] == fake.data_url and from_cli["timeout_seconds"] == 0.5

    fake.fail(503, times=None, path="/v2/clock")
    degraded_http = data(await stack.http.get("/market/provider-health", headers=headers))
    degraded_cli = out(await stack.cli("market", "health"))
    assert (degraded_http["healthy"], degraded_http["status"]) == (False, "degraded")
    assert degraded_http["lastFailureCode"] == "UPSTREAM_UNAVAILABLE"
    assert (degraded_cli["healthy"], degraded_cli["status"]) == (False, "degraded")
    assert degraded_cli["last_failure_code"] == "UPSTREAM_UNAVAILABLE"

    fake.clear_faults()
    fake.fail("hang", times=None, path="/v2/clock")
    slow = out(await stack.cli("market", "health"))
    assert (slow["healthy"], slow["last_failure_code"]) == (False, "UPSTREAM_TIMEOUT")
    slow_http = data(await stack.http.get("/market/provider-health", headers=headers))
    assert (slow_http["healthy"], slow_http["lastFailureCode"]) == (False, "UPSTREAM_TIMEOUT")

    fake.clear_faults()
    assert data(await stack.http.get("/market/provider-health", headers=headers))["healthy"] is True
    assert out(await stack.cli("market", "health"))["healthy"] is True


# --- missing credentials: nothing starts ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


API = ["-m", "cli.main", "api"]
WORKER = ["worker.py"]
SYMBOLS = ["-m", "cli.main", "market", "symbols"]
HISTORY = ["-m", "cli.main", "market", "history", "AAPL", "--start", "2024-01-02", "--end", "2024-01-31"]


@pytest.mark.parametrize(
    ("command", "present"),
    [
        (API, None),
        (WORKER, None),
        (["-m", "cli.main", "worker"], None),
        (SYMBOLS, None),
        (HISTORY, None),
        (API, "API_KEY"),
        (WORKER, "SECRET_KEY"),
        (SYMBOLS, "API_KEY"),
    ],
    ids=[
        "api",
        "worker.py",
        "cli-worker",
        "cli-symbols",
        "cli-history",
        "api-key-only",
        "worker-secret-only",
        "cli-key-only",
    ],
)
def test_without_alpaca_credentials_nothing_starts(tmp_path, command, present):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTPOLY_")}
    env.update(
        QUANTPOLY_MARKET_DATA_PROVIDER="alpaca",
        QUANTPOLY_VAR_DIR=str(tmp_path / "var"),
        QUANTPOLY_API_PORT=str(_free_port()),  # should it wrongly serve, never on a port in use
        QUANTPOLY_TEMPORAL_ADDRESS=f"127.0.0.1:{_free_port()}",  # and never on a real Temporal
        QUANTPOLY_ALPACA_DATA_URL="http://127.0.0.1:9/data",
        QUANTPOLY_ALPACA_TRADING_URL="http://127.0.0.1:9/trading",
    )
    if present:
        env[f"QUANTPOLY_ALPACA_{present}"] = {"API_KEY": API_KEY, "SECRET_KEY": SECRET_KEY}[present]
    process = subprocess.Popen(
        [sys.executable, *command], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command)} kept running without Alpaca credentials:\n{stderr[-2000:]}")
    assert process.returncode != 0, stdout
    assert "ALPACA_CONFIG_MISSING" in stderr
    assert "Traceback" not in stderr  # one clear line, not a crash
    assert stdout == ""
    for value in (API_KEY, SECRET_KEY):
        assert value not in stderr


# --- the synthetic default -----------------------------------------------------------------------------


async def test_synthetic_catalog_search_and_symbols(stack):
    _, headers = await new_user(stack)
    found = out(await stack.cli("market", "search", "apple"))
    assert found[0]["symbol"] == "AAPL" and found[0]["asset_class"] == "us_equity"
    assert [a["symbol"] for a in found] == [
        a["symbol"] for a in data(await stack.http.get("/market/search", params={"keyword": "apple"}, headers=headers))
    ]
    assert len(out(await stack.cli("market", "search", "a", "--limit", "3"))) == 3

    nyse = out(await stack.cli("market", "catalog", "--market", "NYSE", "--limit", "200"))
    assert nyse and {a["exchange"] for a in nyse} == {"NYSE"}
    over_http = data(await stack.http.get("/market/catalog", params={"market": "NYSE", "limit": 200}, headers=headers))
    assert [a["symbol"] for a in nyse] == [a["symbol"] for a in over_http]
    assert out(await stack.cli("market", "catalog", "--asset-class", "crypto")) == []
    assert len(out(await stack.cli("market", "catalog", "--limit", "2"))) == 2
    assert (await stack.cli("market", "catalog", "--limit", "500")).exit_code == 2  # the route's bound

    detail = out(await stack.cli("market", "catalog-detail", "msft"))
    assert detail["name"] == "Microsoft Corporation" and set(detail) == {
        "symbol",
        "name",
        "exchange",
        "currency",
        "asset_class",
        "tradable",
        "fractionable",
    }
    missing = cli_error(await stack.cli("market", "catalog-detail", "NOPE"))
    assert missing == {"code": "ASSET_NOT_FOUND", "message": "unknown symbol NOPE", "retryable": False}

    symbols = out(await stack.cli("market", "symbols"))
    assert "SPY" in symbols and symbols == data(await stack.http.get("/market/symbols", headers=headers))


async def test_synthetic_quote_history_and_health(stack):
    address, headers = await new_user(stack)
    quote = out(await stack.cli("market", "quote", "IBM", "--user", address))
    assert quote["metadata"] == {"cache_hit": False, "source": "synthetic"}
    assert quote["quote"]["bid_price"] < quote["quote"]["price"] < quote["quote"]["ask_price"]
    batch = out(await stack.cli("market", "quotes", "IBM", "NOPE", "--user", address))
    assert [(i["symbol"], i["status"], i["error_code"]) for i in batch["items"]] == [
        ("IBM", "ok", None),
        ("NOPE", "error", "QUOTE_NOT_AVAILABLE"),
    ]

    params = {"startDate": "2024-01-01", "endDate": "2024-03-31"}
    over_http = data(await stack.http.get("/market/history/AAPL", params=params, headers=headers))
    history = out(await stack.cli("market", "history", "AAPL", "--start", "2024-01-01", "--end", "2024-03-31"))
    assert history["source"] == "synthetic" and len(history["candles"]) == len(over_http["candles"]) == 65
    assert [c["close_price"] for c in history["candles"]] == [c["closePrice"] for c in over_http["candles"]]
    backwards = await stack.cli("market", "history", "AAPL", "--start", "2024-03-01", "--end", "2024-01-01")
    assert cli_error(backwards)["code"] == "INVALID_ARGUMENT"
    bad_timeframe = ("market", "history", "AAPL", "--start", "2024-01-01", "--end", "2024-01-31", "--timeframe", "7Y")
    assert cli_error(await stack.cli(*bad_timeframe))["code"] == "INVALID_ARGUMENT"
    assert (await stack.cli("market", "history", "AAPL", "--start", "2024-01-01")).exit_code == 2

    health = out(await stack.cli("market", "health"))
    assert (health["provider"], health["healthy"], health["status"]) == ("synthetic", True, "ok")
    assert set(health) == {
        "provider",
        "transport",
        "healthy",
        "status",
        "message",
        "base_url",
        "timeout_seconds",
        "last_latency_ms",
        "last_failure_code",
    }


async def test_table_output(stack):
    address, _ = await new_user(stack)

    def table(result) -> list[str]:
        assert result.exit_code == 0, result.stderr
        assert not result.stdout.lstrip().startswith(("{", "["))
        return result.stdout.rstrip("\n").splitlines()

    catalog = table(await stack.cli("--table", "market", "catalog", "--limit", "3"))
    assert catalog[0].split() == ["SYMBOL", "NAME", "EXCHANGE", "CURRENCY", "ASSET_CLASS", "TRADABLE", "FRACTIONABLE"]
    assert len(catalog) == 4 and catalog[1].startswith("AAPL ")

    history = table(
        await stack.cli("--table", "market", "history", "AAPL", "--start", "2024-01-01", "--end", "2024-01-31")
    )
    assert history[0].split() == ["TIMESTAMP", "OPEN_PRICE", "HIGH_PRICE", "LOW_PRICE", "CLOSE_PRICE", "VOLUME"]
    assert len(history) == 1 + 23 and history[1].startswith("2024-01-01")

    symbols = table(await stack.cli("--table", "market", "symbols"))
    assert symbols[0].strip() == "SYMBOL" and "SPY" in [line.strip() for line in symbols]

    health = table(await stack.cli("--table", "market", "health"))
    # One record prints as field/value rows.
    assert health[0].split() == ["FIELD", "VALUE"]
    fields = {p[0]: p[1].strip() for p in (line.split(None, 1) for line in health[1:]) if len(p) == 2}
    assert (fields["provider"], fields["transport"], fields["healthy"], fields["status"]) == (
        "synthetic",
        "in-process",
        "True",
        "ok",
    )

    quote = table(await stack.cli("--table", "market", "quote", "AAPL", "--user", address))
    quoted = {p[0]: p[1].strip() for p in (line.split(None, 1) for line in quote[1:]) if len(p) == 2}
    assert quote[0].split() == ["FIELD", "VALUE"]
    assert (quoted["symbol"], quoted["source"], quoted["cache_hit"]) == ("AAPL", "synthetic", "False")

    quotes = table(await stack.cli("--table", "market", "quotes", "AAPL", "NOPE", "--user", address))
    assert quotes[0].split() == [
        "SYMBOL",
        "STATUS",
        "PRICE",
        "BID_PRICE",
        "ASK_PRICE",
        "ERROR_CODE",
        "CACHE_HIT",
        "SOURCE",
    ]
    assert quotes[2].split() == ["NOPE", "error", "QUOTE_NOT_AVAILABLE", "False", "synthetic"]

    search = table(await stack.cli("--table", "market", "search", "apple"))
    assert search[1].startswith("AAPL ")
