"""The alpaca provider, only through alpaca-py, against the local Alpaca-compatible server in fake_alpaca."""

from __future__ import annotations

import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from pydantic import ValidationError

from core.errors import AppError, InvalidInput, UpstreamError
from core.settings import Settings
from integrations.market_data import BAR_COLUMNS, Asset, provider_from_settings
from integrations.market_data.alpaca import AlpacaProvider
from tests.conftest import secret
from tests.fake_alpaca import API_KEY, SECRET_KEY, FakeAlpaca, fake_alpaca_fixture  # noqa: F401 (the fixture)

START = datetime(2024, 1, 2, 21, tzinfo=UTC)


def settings_for(fake: FakeAlpaca, **overrides) -> Settings:
    values = dict(
        market_data_provider="alpaca",
        alpaca_api_key=API_KEY,
        alpaca_secret_key=SECRET_KEY,
        alpaca_data_url=fake.data_url,
        alpaca_trading_url=fake.trading_url,
        alpaca_timeout_seconds=0.5,
        alpaca_max_retries=2,
    )
    values.update(overrides)
    return Settings(**values)


def provider_for(fake: FakeAlpaca, **overrides) -> AlpacaProvider:
    return AlpacaProvider(settings_for(fake, **overrides), backoff_seconds=0.01, backoff_max_seconds=0.5)


def daily_bars(count: int, start: datetime = START, step: timedelta = timedelta(days=1)) -> list[dict]:
    return [
        {
            "t": start + i * step,
            "o": 100.0 + i,
            "h": 101.5 + i,
            "l": 99.25 + i,
            "c": 100.75 + i,
            "v": 1_000_000 + i,
            "n": 5_000 + i,
            "vw": 100.5 + i,
        }
        for i in range(count)
    ]


def expected_frame(bars: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([b["t"] for b in bars], utc=True),
            "open": [b["o"] for b in bars],
            "high": [b["h"] for b in bars],
            "low": [b["l"] for b in bars],
            "close": [b["c"] for b in bars],
            "volume": [float(b["v"]) for b in bars],
            "vwap": [b["vw"] for b in bars],
            "trade_count": [b["n"] for b in bars],
        }
    )[BAR_COLUMNS]


@pytest.fixture
def market(fake_alpaca: FakeAlpaca) -> FakeAlpaca:
    fake_alpaca.add_asset("AAPL", "Apple Inc. Common Stock", "NASDAQ")
    fake_alpaca.add_asset("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", fractionable=False)
    fake_alpaca.add_asset("BRK.B", "Berkshire Hathaway Inc. Class B", "NYSE", tradable=False)
    fake_alpaca.add_asset("OLD", "Delisted Corp", "NYSE", status="inactive")
    fake_alpaca.add_asset("BTC/USD", "Bitcoin", "CRYPTO", asset_class="crypto")
    fake_alpaca.add_bars("AAPL", daily_bars(11))
    fake_alpaca.set_snapshot(
        "AAPL",
        {
            "latestTrade": {
                "t": "2024-03-01T15:59:59.123456789-05:00",
                "x": "V",
                "p": 180.25,
                "s": 100,
                "c": ["@"],
                "i": 7,
            },
            "latestQuote": {
                "t": "2024-03-01T20:59:59.5Z",
                "ax": "V",
                "ap": 180.3,
                "as": 2,
                "bx": "V",
                "bp": 180.2,
                "bs": 3,
                "c": ["R"],
                "z": "C",
            },
            "minuteBar": {
                "t": "2024-03-01T20:59:00Z",
                "o": 180,
                "h": 180.4,
                "l": 179.9,
                "c": 180.25,
                "v": 900,
                "n": 12,
                "vw": 180.1,
            },
            "dailyBar": {
                "t": "2024-03-01T05:00:00Z",
                "o": 179.5,
                "h": 181,
                "l": 178.75,
                "c": 180.25,
                "v": 4_500_000,
                "n": 51_234,
                "vw": 180.02,
            },
            "prevDailyBar": {
                "t": "2024-02-29T05:00:00Z",
                "o": 178,
                "h": 179.9,
                "l": 177.1,
                "c": 179.66,
                "v": 5e6,
                "n": 60_001,
                "vw": 178.9,
            },
        },
    )
    return fake_alpaca


# --- bars ------------------------------------------------------------------------------------------------


def test_bars_cross_every_page_with_exact_values_and_utc_timestamps(market: FakeAlpaca):
    provider = provider_for(market)
    frame = provider.bars("AAPL", "1Day", START, START + timedelta(days=10))

    assert list(frame.columns) == BAR_COLUMNS
    assert str(frame["timestamp"].dt.tz) == "UTC"
    pd.testing.assert_frame_equal(frame, expected_frame(daily_bars(11)), check_dtype=False)
    assert frame["timestamp"].iloc[0].to_pydatetime() == START

    pages = market.requests_to("/v2/stocks/bars")
    assert len(pages) == 3  # 4 + 4 + 3 bars with a page size of 4
    assert [p.api for p in pages] == ["data"] * 3
    assert "page_token" not in pages[0].query and pages[1].query["page_token"] and pages[2].query["page_token"]
    first = pages[0].query
    assert (first["symbols"], first["timeframe"], first["feed"]) == ("AAPL", "1Day", "iex")
    assert _utc(first["start"]) == START and _utc(first["end"]) == START + timedelta(days=10)
    assert all(p.headers["APCA-API-KEY-ID"] == API_KEY for p in pages)


def test_bars_of_a_sub_range_are_exactly_the_bars_inside_it(market: FakeAlpaca):
    frame = provider_for(market).bars("aapl", "1Day", START + timedelta(days=2), START + timedelta(days=8))
    pd.testing.assert_frame_equal(frame, expected_frame(daily_bars(11)[2:9]), check_dtype=False)


def test_the_configured_provider_never_asks_for_or_answers_bars_after_now(market: FakeAlpaca):
    now = datetime.now(UTC)
    market.add_bars("AAPL", daily_bars(20, start=now - timedelta(days=9, hours=12)))  # ten of them in the future
    provider = provider_from_settings(settings_for(market))
    frame = provider.bars("AAPL", "1Day", now - timedelta(days=30), datetime(2200, 1, 1, tzinfo=UTC))
    assert len(frame) == 10 and frame["timestamp"].max() <= datetime.now(UTC)
    asked = [_utc(r.query["end"]) for r in market.requests_to("/v2/stocks/bars")]
    assert asked and max(asked) <= datetime.now(UTC)
    # A range wholly in the future asks Alpaca for no bars at all, yet an unknown symbol is still unknown.
    future = (now + timedelta(days=1), now + timedelta(days=9))
    assert provider.bars("AAPL", "1Day", *future).empty and len(market.requests_to("/v2/stocks/bars")) == len(asked)
    with pytest.raises(UpstreamError) as unknown:
        provider.bars("NOPE", "1Day", *future)
    assert unknown.value.code == "ASSET_NOT_FOUND"


@pytest.mark.parametrize(
    ("timeframe", "step"),
    [
        ("1Min", timedelta(minutes=1)),
        ("5Min", timedelta(minutes=5)),
        ("15Min", timedelta(minutes=15)),
        ("1Hour", timedelta(hours=1)),
        ("1Day", timedelta(days=1)),
    ],
)
def test_bars_of_each_timeframe(fake_alpaca: FakeAlpaca, timeframe: str, step: timedelta):
    start = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
    bars = daily_bars(9, start, step)
    fake_alpaca.add_bars("MSFT", bars, timeframe)
    fake_alpaca.add_bars("MSFT", daily_bars(9, start, step * 2), "1Week")  # another timeframe stays apart

    frame = provider_for(fake_alpaca).bars("MSFT", timeframe, start, start + 8 * step)

    pd.testing.assert_frame_equal(frame, expected_frame(bars), check_dtype=False)
    assert {r.query["timeframe"] for r in fake_alpaca.requests_to("/v2/stocks/bars")} == {timeframe}


def test_bars_without_trade_count_or_vwap_keep_the_columns(fake_alpaca: FakeAlpaca):
    fake_alpaca.add_asset("IEXT", "Thin Data Inc.")
    fake_alpaca.add_bars("IEXT", [{"t": START, "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10}])
    frame = provider_for(fake_alpaca).bars("IEXT", "1Day", START, START)
    assert list(frame.columns) == BAR_COLUMNS
    assert frame["trade_count"].tolist() == [None] and frame["vwap"].isna().all()


def test_a_known_symbol_without_bars_is_empty_and_an_unknown_one_is_not_found(market: FakeAlpaca):
    provider = provider_for(market)
    empty = provider.bars("MSFT", "1Day", START, START + timedelta(days=3))
    assert empty.empty and list(empty.columns) == BAR_COLUMNS
    assert str(empty["timestamp"].dtype) == "datetime64[ns, UTC]"

    with pytest.raises(UpstreamError) as caught:
        provider.bars("NOPE", "1Day", START, START + timedelta(days=3))
    assert (caught.value.code, caught.value.status, caught.value.retryable) == ("ASSET_NOT_FOUND", 404, False)


def test_an_unsupported_timeframe_or_a_malformed_symbol_never_reaches_alpaca(market: FakeAlpaca):
    provider = provider_for(market)
    with pytest.raises(InvalidInput) as caught:
        provider.bars("AAPL", "7Fortnights", START, START + timedelta(days=3))
    assert caught.value.code == "UNSUPPORTED_TIMEFRAME"
    with pytest.raises(UpstreamError) as not_found:
        provider.asset("../clock")
    assert not_found.value.code == "ASSET_NOT_FOUND"
    assert market.requests == []


def test_bars_from_concurrent_threads(market: FakeAlpaca):
    provider = provider_for(market)
    with ThreadPoolExecutor(max_workers=4) as pool:
        frames = list(pool.map(lambda _: provider.bars("AAPL", "1Day", START, START + timedelta(days=10)), range(8)))
    for frame in frames:
        pd.testing.assert_frame_equal(frame, expected_frame(daily_bars(11)), check_dtype=False)


# --- assets and quotes -----------------------------------------------------------------------------------


def test_assets_are_the_active_us_equities_mapped(market: FakeAlpaca):
    assets = provider_for(market).assets()
    assert assets == [
        Asset("AAPL", "Apple Inc. Common Stock", "NASDAQ", "USD", "us_equity", True, True),
        Asset("BRK.B", "Berkshire Hathaway Inc. Class B", "NYSE", "USD", "us_equity", False, True),
        Asset("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", "USD", "us_equity", True, False),
    ]
    (request,) = market.requests_to("/v2/assets")
    assert request.api == "trading" and request.query == {"status": "active", "asset_class": "us_equity"}


def test_one_asset_and_an_unknown_one(market: FakeAlpaca):
    provider = provider_for(market)
    assert provider.asset("msft") == Asset("MSFT", "Microsoft Corporation Common Stock", "NASDAQ", fractionable=False)
    assert provider.asset("BRK.B").tradable is False
    with pytest.raises(UpstreamError) as caught:
        provider.asset("ZZZZ")
    assert (caught.value.code, caught.value.status, caught.value.retryable) == ("ASSET_NOT_FOUND", 404, False)
    assert "ZZZZ" in caught.value.message
    assert provider.last_failure_code == "ASSET_NOT_FOUND"


def test_quote_from_the_snapshot(market: FakeAlpaca):
    quote = provider_for(market).quote("aapl")
    assert quote.symbol == "AAPL"
    assert quote.price == 180.25
    assert quote.previous_close == 179.66
    assert (quote.open_price, quote.high_price, quote.low_price, quote.volume) == (179.5, 181.0, 178.75, 4_500_000)
    assert (quote.bid_price, quote.ask_price) == (180.2, 180.3)
    assert quote.timestamp == datetime(2024, 3, 1, 20, 59, 59, 123456, tzinfo=UTC)
    assert quote.timestamp.utcoffset() == timedelta(0)
    (request,) = market.requests_to("/v2/stocks/snapshots")
    assert request.api == "data" and request.query == {"symbols": "AAPL", "feed": "iex"}


def test_quote_falls_back_to_bars_without_a_trade(market: FakeAlpaca):
    market.set_snapshot("MSFT", {"dailyBar": {"t": "2024-03-01T05:00:00Z", "o": 1, "h": 3, "l": 0.5, "c": 2, "v": 9}})
    quote = provider_for(market).quote("MSFT")
    assert (quote.price, quote.previous_close, quote.bid_price) == (2.0, None, None)
    assert quote.timestamp == datetime(2024, 3, 1, 5, tzinfo=UTC)


def test_quote_of_an_unknown_symbol_or_an_empty_snapshot_is_not_found(market: FakeAlpaca):
    provider = provider_for(market)
    market.set_snapshot("MSFT", {"latestTrade": None, "latestQuote": None})
    for symbol in ("NOPE", "MSFT"):
        with pytest.raises(UpstreamError) as caught:
            provider.quote(symbol)
        assert (caught.value.code, caught.value.retryable) == ("ASSET_NOT_FOUND", False)


# --- failures --------------------------------------------------------------------------------------------

OPERATIONS = {
    "bars": ("/v2/stocks/bars", lambda p: p.bars("AAPL", "1Day", START, START + timedelta(days=10))),
    "assets": ("/v2/assets", lambda p: p.assets()),
    "asset": ("/v2/assets/", lambda p: p.asset("AAPL")),
    "quote": ("/v2/stocks/snapshots", lambda p: p.quote("AAPL")),
}


def failing(provider: AlpacaProvider, operation: str) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        OPERATIONS[operation][1](provider)
    return caught.value


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    ("status", "code", "http_status", "retryable", "attempts"),
    [
        (401, "UPSTREAM_AUTH_FAILED", 502, False, 1),
        (403, "UPSTREAM_AUTH_FAILED", 502, False, 1),
        (429, "UPSTREAM_RATE_LIMITED", 429, True, 3),
        (500, "UPSTREAM_UNAVAILABLE", 502, True, 3),
        (503, "UPSTREAM_UNAVAILABLE", 502, True, 3),
        (504, "UPSTREAM_UNAVAILABLE", 502, True, 3),
    ],
)
def test_http_failures_map_to_stable_codes(market, operation, status, code, http_status, retryable, attempts):
    path = OPERATIONS[operation][0]
    market.fail(status, times=None, path=path)
    provider = provider_for(market)

    error = failing(provider, operation)

    assert (error.code, error.status, error.retryable) == (code, http_status, retryable)
    assert len(market.requests_to(path)) == attempts  # 1 + alpaca_max_retries for what can pass on a retry
    assert provider.last_failure_code == code


def test_wrong_credentials_are_an_auth_failure(market: FakeAlpaca):
    provider = provider_for(market, alpaca_secret_key=secret("not-the-right-secret-1234"))
    for operation in OPERATIONS:
        error = failing(provider, operation)
        assert (error.code, error.retryable) == ("UPSTREAM_AUTH_FAILED", False)
    assert {r.status for r in market.requests} == {401}


def test_rate_limit_then_success_is_retried_with_backoff(market: FakeAlpaca):
    market.fail(429, times=2, path="/v2/stocks/snapshots")
    provider = provider_for(market)
    assert provider.quote("AAPL").price == 180.25
    assert [r.status for r in market.requests_to("/v2/stocks/snapshots")] == [429, 429, 200]
    assert provider.last_failure_code is None


def test_retry_after_is_honoured(market: FakeAlpaca):
    market.fail(429, times=1, path="/v2/assets", retry_after="0.3")
    started = time.perf_counter()
    assert len(provider_for(market).assets()) == 3
    # A lower bound only: the client waited at least what the server asked for.
    assert time.perf_counter() - started >= 0.3


def test_without_retries_a_rate_limit_fails_at_once(market: FakeAlpaca):
    market.fail(429, times=None, path="/v2/assets")
    error = failing(provider_for(market, alpaca_max_retries=0), "assets")
    assert error.code == "UPSTREAM_RATE_LIMITED" and len(market.requests_to("/v2/assets")) == 1


def test_a_failed_page_is_retried_alone_and_no_bar_is_lost(market: FakeAlpaca):
    market.fail(503, times=1, path="/v2/stocks/bars", skip=1)  # the second page fails once
    frame = provider_for(market).bars("AAPL", "1Day", START, START + timedelta(days=10))

    pd.testing.assert_frame_equal(frame, expected_frame(daily_bars(11)), check_dtype=False)
    pages = market.requests_to("/v2/stocks/bars")
    assert [p.status for p in pages] == [200, 503, 200, 200]
    assert "page_token" not in pages[0].query
    assert pages[1].query["page_token"] == pages[2].query["page_token"] != pages[3].query["page_token"]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("kind", ["hang", "hang_body"])
def test_a_hung_upstream_is_a_timeout(market: FakeAlpaca, operation: str, kind: str):
    path = OPERATIONS[operation][0]
    market.fail(kind, times=None, path=path)

    error = failing(provider_for(market), operation)

    assert (error.code, error.status, error.retryable) == ("UPSTREAM_TIMEOUT", 504, True)
    assert len(market.requests_to(path)) == 1  # a timeout is not retried


@pytest.mark.parametrize("operation", OPERATIONS)
def test_malformed_json_is_unavailable(market: FakeAlpaca, operation: str):
    market.fail("malformed", times=None, path=OPERATIONS[operation][0])
    error = failing(provider_for(market), operation)
    assert (error.code, error.status, error.retryable) == ("UPSTREAM_UNAVAILABLE", 502, True)
    assert "malformed" in error.message


@pytest.mark.parametrize("operation", ["bars", "assets", "asset"])
def test_json_of_the_wrong_shape_is_unavailable(market: FakeAlpaca, operation: str):
    market.fail("unexpected", times=None, path=OPERATIONS[operation][0])
    assert failing(provider_for(market), operation).code == "UPSTREAM_UNAVAILABLE"


def test_an_unreachable_upstream_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: connections are refused
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        market_data_provider="alpaca",
        alpaca_api_key=API_KEY,
        alpaca_secret_key=SECRET_KEY,
        alpaca_data_url=url,
        alpaca_trading_url=url,
        alpaca_timeout_seconds=0.5,
        alpaca_max_retries=1,
    )
    provider = AlpacaProvider(settings, backoff_seconds=0.01)
    with pytest.raises(UpstreamError) as caught:
        provider.asset("AAPL")
    assert (caught.value.code, caught.value.retryable) == ("UPSTREAM_UNAVAILABLE", True)
    health = provider.health()
    assert (health.healthy, health.last_failure_code) == (False, "UPSTREAM_UNAVAILABLE")


# --- health ----------------------------------------------------------------------------------------------


def test_health_ok_then_degraded_then_ok(market: FakeAlpaca):
    provider = provider_for(market)

    ok = provider.health()
    assert (ok.provider, ok.transport, ok.healthy, ok.status) == ("alpaca", "alpaca-py", True, "ok")
    assert ok.base_url == market.data_url and ok.timeout_seconds == 0.5
    assert ok.last_latency_ms is not None and ok.last_latency_ms > 0 and ok.last_failure_code is None
    assert ok.message == "market open"
    (clock,) = market.requests_to("/v2/clock")
    assert clock.api == "trading"

    market.fail(503, times=None, path="/v2/clock")
    degraded = provider.health()
    assert (degraded.healthy, degraded.status) == (False, "degraded")
    assert degraded.last_failure_code == "UPSTREAM_UNAVAILABLE"
    assert "503" in degraded.message

    market.clear_faults()
    market.fail("hang", times=1, path="/v2/clock")
    slow = provider.health()
    assert (slow.healthy, slow.last_failure_code) == (False, "UPSTREAM_TIMEOUT")
    assert slow.last_latency_ms >= 500

    market.clock_open = False
    again = provider.health()
    assert (again.healthy, again.status, again.last_failure_code) == (True, "ok", None)
    assert again.message.startswith("market closed; next open")


def test_health_reports_the_last_call_of_any_kind(market: FakeAlpaca):
    provider = provider_for(market)
    market.fail(429, times=None, path="/v2/stocks/bars")
    failing(provider, "bars")
    assert provider.last_failure_code == "UPSTREAM_RATE_LIMITED" and provider.last_latency_ms > 0
    market.clear_faults()
    provider.quote("AAPL")
    assert provider.last_failure_code is None


def test_health_with_refused_credentials_is_degraded(market: FakeAlpaca):
    health = provider_for(market, alpaca_api_key=secret("PKWRONGKEY0000000000")).health()
    assert (health.healthy, health.status, health.last_failure_code) == (False, "degraded", "UPSTREAM_AUTH_FAILED")


# --- configuration and secrecy ---------------------------------------------------------------------------


def test_missing_credentials_refuse_to_start(fake_alpaca: FakeAlpaca):
    with pytest.raises(ValidationError, match="ALPACA_CONFIG_MISSING"):
        Settings(market_data_provider="alpaca", alpaca_api_key=API_KEY)
    complete = settings_for(fake_alpaca)
    for missing in ({"alpaca_api_key": None}, {"alpaca_secret_key": None}):
        with pytest.raises(AppError) as caught:
            AlpacaProvider(complete.model_copy(update=missing))
        assert caught.value.code == "ALPACA_CONFIG_MISSING"
    assert isinstance(provider_from_settings(complete).inner, AlpacaProvider)
    assert fake_alpaca.requests == []


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records():
    """Every record logged during the test (caplog's job, but this works under ``-p no:logging`` too)."""
    handler, root = _Records(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_keys_never_reach_errors_logs_or_reprs(market: FakeAlpaca, log_records):
    provider = provider_for(market, alpaca_timeout_seconds=0.2)
    messages: list[str] = [repr(provider)]
    for fault in (401, 403, 429, 500, 504, "hang", "hang_body", "malformed", "unexpected"):
        market.clear_faults()
        market.fail(fault, times=None)
        for operation in OPERATIONS:
            try:
                OPERATIONS[operation][1](provider)
            except UpstreamError as error:
                messages += [str(error), error.message, repr(error)]
        messages.append(str(provider.health()))
    market.clear_faults()
    provider.bars("AAPL", "1Day", START, START + timedelta(days=10))
    messages.append(str(provider.health()))

    assert any("retry" in record.getMessage() for record in log_records)  # the retries were logged
    assert any(record.name.startswith("urllib3") for record in log_records)  # and the transport's own lines
    texts = messages + [record.getMessage() for record in log_records]
    texts += [logging.Formatter().formatException(r.exc_info) for r in log_records if r.exc_info]
    for value in (API_KEY, SECRET_KEY):
        assert not [text for text in texts if value in text]


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
