"""Alpaca market data through ``alpaca-py``: historical bars (every page), snapshots, assets, the clock.

``StockHistoricalDataClient`` serves bars and snapshots from ``QUANTPOLY_ALPACA_DATA_URL``, ``TradingClient``
the assets and the market clock from ``QUANTPOLY_ALPACA_TRADING_URL`` (both through ``url_override``), with the
configured feed. Both clients run with ``raw_data=True``: bars go straight into a DataFrame (no model object per
bar), and assets and snapshots are read leniently (a new exchange name upstream, or a snapshot bar without
``vw``, must not break the catalog or a quote, as alpaca-py's strict models would).

alpaca-py has no timeout setting and its built-in retry waits a fixed 3 s on 429/504 only. So each client's
``requests`` session gets a transport adapter (:class:`_BoundedAdapter`) that gives every request the configured
timeout and retries 429, 5xx and refused/reset connections with exponential backoff (honouring Retry-After, capped)
up to ``QUANTPOLY_ALPACA_MAX_RETRIES`` times, page by page, and the built-in retry loop is switched off. Timeouts
are not retried: a hung upstream would otherwise hold the caller for (retries + 1) x timeout.

Every failure becomes an ``UpstreamError`` with a stable code; messages never carry the credentials.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pandas as pd
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.mappings import BAR_MAPPING
from alpaca.data.requests import StockBarsRequest, StockSnapshotRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AssetClass, AssetStatus
from alpaca.trading.requests import GetAssetsRequest
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from core.errors import AppError, InvalidInput, UpstreamError
from core.settings import Settings
from integrations.market_data import BAR_COLUMNS, Asset, ProviderHealth, Quote

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,19}$")
TIMEFRAME = re.compile(r"^(\d{1,2})(Min|Hour|Day|Week|Month)$")
UNITS = {
    "Min": TimeFrameUnit.Minute,
    "Hour": TimeFrameUnit.Hour,
    "Day": TimeFrameUnit.Day,
    "Week": TimeFrameUnit.Week,
    "Month": TimeFrameUnit.Month,
}
# Shapes a broken upstream answer can raise while alpaca-py or we read it (JSONDecodeError is a ValueError).
MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, ValidationError)

T = TypeVar("T")


@dataclass(frozen=True)
class _Credentials:
    key: str = field(repr=False)
    secret: str = field(repr=False)

    def scrub(self, text: str) -> str:
        for value in (self.key, self.secret):
            text = text.replace(value, "***")
        return text


class _BoundedAdapter(HTTPAdapter):
    """A default timeout for every request and retries with backoff on 429, 5xx and connection failures."""

    def __init__(self, *, timeout: float, retries: int, backoff: float, backoff_max: float) -> None:
        super().__init__()
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._backoff_max = backoff_max

    def _delay(self, attempt: int, retry_after: str | None = None) -> float:
        delay = self._backoff * (2**attempt)
        delay = delay / 2 + random.random() * delay / 2  # jitter: concurrent callers do not retry in step
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass  # an HTTP date: the exponential delay stands
        return min(delay, self._backoff_max)

    def send(self, request, stream=False, timeout=None, **kwargs):  # type: ignore[override]
        if timeout is None:
            timeout = (self._timeout, self._timeout)  # connect, read (between bytes)
        path = urlsplit(request.url).path  # never the query or the headers in a log line
        attempt = 0
        while True:
            try:
                response = super().send(request, stream=stream, timeout=timeout, **kwargs)
            except requests.ConnectionError as error:
                if isinstance(error, requests.Timeout) or attempt >= self._retries:
                    raise
                delay, reason = self._delay(attempt), "could not be reached"
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self._retries:
                    return response
                delay = self._delay(attempt, response.headers.get("Retry-After"))
                reason = f"answered HTTP {response.status_code}"
                response.close()
            attempt += 1
            logger.warning(
                "alpaca %s %s %s; retry %d of %d in %.2f s", request.method, path, reason, attempt, self._retries, delay
            )
            time.sleep(delay)


@dataclass
class _Clients:
    data: StockHistoricalDataClient
    trading: TradingClient


class AlpacaProvider:
    source = "alpaca"

    def __init__(self, settings: Settings, *, backoff_seconds: float = 0.5, backoff_max_seconds: float = 8.0) -> None:
        key = settings.alpaca_api_key.get_secret_value() if settings.alpaca_api_key else ""
        secret = settings.alpaca_secret_key.get_secret_value() if settings.alpaca_secret_key else ""
        if not key.strip() or not secret.strip():
            raise AppError(
                "QUANTPOLY_ALPACA_API_KEY and QUANTPOLY_ALPACA_SECRET_KEY are required "
                "when QUANTPOLY_MARKET_DATA_PROVIDER=alpaca",
                code="ALPACA_CONFIG_MISSING",
                status=503,
            )
        self._credentials = _Credentials(key, secret)
        self.data_url = settings.alpaca_data_url.rstrip("/")
        self.trading_url = settings.alpaca_trading_url.rstrip("/")
        self.feed = DataFeed(settings.alpaca_feed)
        self.timeout_seconds = settings.alpaca_timeout_seconds
        self.max_retries = settings.alpaca_max_retries
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        # requests sessions are not documented as thread-safe: each thread gets its own pair of clients.
        self._local = threading.local()
        self._lock = threading.Lock()
        self.last_latency_ms: float | None = None
        self.last_failure_code: str | None = None
        self._clients()  # fail at start, not at the first call, if alpaca-py's internals moved

    def __repr__(self) -> str:
        return f"AlpacaProvider(data_url={self.data_url!r}, trading_url={self.trading_url!r}, feed={self.feed.value!r})"

    # --- clients ----------------------------------------------------------------------------------------

    def _clients(self) -> _Clients:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            creds = self._credentials
            clients = _Clients(
                data=StockHistoricalDataClient(
                    api_key=creds.key, secret_key=creds.secret, raw_data=True, url_override=self.data_url
                ),
                trading=TradingClient(
                    api_key=creds.key, secret_key=creds.secret, raw_data=True, url_override=self.trading_url
                ),
            )
            self._bound(clients.data)
            self._bound(clients.trading)
            self._local.clients = clients
        return clients

    def _bound(self, client: Any) -> None:
        session = getattr(client, "_session", None)
        if not isinstance(session, requests.Session) or not isinstance(getattr(client, "_retry", None), int):
            # Without these, requests would have no timeout at all: refuse rather than hang silently.
            raise RuntimeError("this alpaca-py version has no RESTClient._session/_retry; AlpacaProvider needs them")
        client._retry = 0  # alpaca-py's own loop (fixed 3 s wait, 429/504 only) is off; the adapter retries
        adapter = _BoundedAdapter(
            timeout=self.timeout_seconds, retries=self.max_retries, backoff=self._backoff, backoff_max=self._backoff_max
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)

    # --- calls, timing and error mapping ------------------------------------------------------------------

    def _record(self, started: float, failure_code: str | None) -> None:
        with self._lock:
            self.last_latency_ms = round((time.perf_counter() - started) * 1000, 3)
            self.last_failure_code = failure_code

    def _call(self, operation: str, work: Callable[[_Clients], T], symbol: str | None = None) -> T:
        started = time.perf_counter()
        try:
            result = work(self._clients())
        except UpstreamError as error:
            failure = error
        except (APIError, requests.RequestException, *MALFORMED) as error:
            failure = self._upstream_error(error, operation, symbol)
        else:
            self._record(started, None)
            return result
        self._record(started, failure.code)
        raise failure from None

    def _upstream_error(self, error: Exception, operation: str, symbol: str | None) -> UpstreamError:
        where = f"alpaca {operation}" + (f" for {symbol}" if symbol else "")

        def make(code: str, text: str) -> UpstreamError:
            return UpstreamError(code, self._credentials.scrub(f"{where}: {text}"))

        if isinstance(error, APIError):
            status = error.status_code or 0
            detail = _upstream_message(error)
            said = f" ({detail})" if detail else ""
            if status in (401, 403):
                return make("UPSTREAM_AUTH_FAILED", f"the credentials were refused (HTTP {status}){said}")
            if status == 429:
                return make("UPSTREAM_RATE_LIMITED", f"rate limited (HTTP 429) after {self.max_retries} retries")
            if symbol and (status == 404 or (status in (400, 422) and "symbol" in detail.lower())):
                return make("ASSET_NOT_FOUND", f"unknown symbol (HTTP {status}){said}")
            if status in RETRY_STATUSES:
                return make("UPSTREAM_UNAVAILABLE", f"HTTP {status} after {self.max_retries} retries{said}")
            return make("UPSTREAM_UNAVAILABLE", f"unexpected HTTP {status}{said}")
        if isinstance(error, requests.Timeout) or (
            isinstance(error, requests.ConnectionError) and any(isinstance(a, ReadTimeoutError) for a in error.args)
        ):
            # A read timeout while the body streams surfaces from requests as a ConnectionError.
            return make("UPSTREAM_TIMEOUT", f"no answer within {self.timeout_seconds:g} s")
        if isinstance(error, requests.ConnectionError):
            return make("UPSTREAM_UNAVAILABLE", f"connection failed after {self.max_retries} retries")
        if isinstance(error, requests.RequestException) and not isinstance(error, ValueError):
            return make("UPSTREAM_UNAVAILABLE", f"request failed ({type(error).__name__})")
        return make("UPSTREAM_UNAVAILABLE", f"malformed response ({type(error).__name__})")

    # --- the interface ----------------------------------------------------------------------------------

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        symbol = _symbol(symbol)
        frame_spec = _timeframe(timeframe)
        start, end = _utc(start), _utc(end)
        if end < start:
            return _empty_bars()
        request = StockBarsRequest(symbol_or_symbols=symbol, timeframe=frame_spec, start=start, end=end, feed=self.feed)

        def fetch(clients: _Clients) -> pd.DataFrame:
            raw = clients.data.get_stock_bars(request)  # alpaca-py follows next_page_token to the last page
            if not isinstance(raw, dict):
                raise TypeError("bars: an object was expected")
            return _bars_frame(raw.get(symbol) or [], start, end)

        frame = self._call("bars", fetch, symbol)
        if frame.empty:
            self.asset(symbol)  # an unknown symbol is ASSET_NOT_FOUND, a known one simply has no bars here
        return frame

    def assets(self) -> list[Asset]:
        request = GetAssetsRequest(status=AssetStatus.ACTIVE, asset_class=AssetClass.US_EQUITY)

        def fetch(clients: _Clients) -> list[Asset]:
            raw = clients.trading.get_all_assets(request)
            if not isinstance(raw, list):
                raise TypeError("assets: a list was expected")
            return sorted((_asset(item) for item in raw), key=lambda a: a.symbol)

        return self._call("assets", fetch)

    def asset(self, symbol: str) -> Asset:
        symbol = _symbol(symbol)
        return self._call("asset", lambda clients: _asset(clients.trading.get_asset(symbol)), symbol)

    def quote(self, symbol: str) -> Quote:
        symbol = _symbol(symbol)
        request = StockSnapshotRequest(symbol_or_symbols=symbol, feed=self.feed)

        def fetch(clients: _Clients) -> Quote:
            raw = clients.data.get_stock_snapshot(request)
            if not isinstance(raw, dict):
                raise TypeError("snapshots: an object was expected")
            item = raw.get(symbol)
            if not item:
                raise UpstreamError("ASSET_NOT_FOUND", f"alpaca quote for {symbol}: no snapshot")
            if not isinstance(item, dict):
                raise TypeError("snapshot: an object was expected")
            return _quote(symbol, item)

        return self._call("quote", fetch, symbol)

    def health(self) -> ProviderHealth:
        def probe(clients: _Clients) -> dict[str, Any]:
            clock = clients.trading.get_clock()
            if not isinstance(clock, dict) or not isinstance(clock.get("is_open"), bool):
                raise TypeError("clock: an object with is_open was expected")
            return clock

        try:
            clock = self._call("clock", probe)
        except UpstreamError as error:
            healthy, message = False, error.message
        else:
            healthy = True
            message = "market open" if clock["is_open"] else f"market closed; next open {clock.get('next_open')}"
        with self._lock:
            latency, failure = self.last_latency_ms, self.last_failure_code
        return ProviderHealth(
            provider="alpaca",
            transport="alpaca-py",
            healthy=healthy,
            status="ok" if healthy else "degraded",
            message=message,
            base_url=self.data_url,
            timeout_seconds=self.timeout_seconds,
            last_latency_ms=latency,
            last_failure_code=failure,
        )


# --- mapping helpers -------------------------------------------------------------------------------------


def _symbol(symbol: str) -> str:
    normalized = (symbol or "").strip().upper()
    if not SYMBOL.match(normalized):
        raise UpstreamError("ASSET_NOT_FOUND", f"{symbol!r} is not a symbol")
    return normalized


def _timeframe(timeframe: str) -> TimeFrame:
    found = TIMEFRAME.match(timeframe or "")
    if found:
        try:
            return TimeFrame(int(found.group(1)), UNITS[found.group(2)])
        except ValueError:
            pass
    raise InvalidInput(f"alpaca has no {timeframe} bars", code="UNSUPPORTED_TIMEFRAME")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _empty_bars() -> pd.DataFrame:
    frame = pd.DataFrame({column: pd.Series(dtype="float64") for column in BAR_COLUMNS})
    frame["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
    return frame


def _bars_frame(raw: list[dict[str, Any]], start: datetime, end: datetime) -> pd.DataFrame:
    if not isinstance(raw, list):
        raise TypeError("bars: a list was expected")
    if not raw:
        return _empty_bars()
    frame = pd.DataFrame.from_records(raw).rename(columns=BAR_MAPPING)
    for column in ("timestamp", "open", "high", "low", "close", "volume"):
        if column not in frame.columns:
            raise KeyError(f"bars lack {column}")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    for column in ("open", "high", "low", "close", "volume", "vwap"):
        frame[column] = pd.to_numeric(frame[column], errors="raise") if column in frame else float("nan")
    frame["vwap"] = frame["vwap"].astype("float64")
    if "trade_count" in frame and frame["trade_count"].notna().all():
        frame["trade_count"] = frame["trade_count"].astype("int64")
    elif "trade_count" in frame:
        frame["trade_count"] = pd.Series([int(c) if pd.notna(c) else None for c in frame["trade_count"]], dtype=object)
    else:
        frame["trade_count"] = pd.Series([None] * len(frame), dtype=object)
    frame = frame[(frame["timestamp"] >= start) & (frame["timestamp"] <= end)]
    frame = frame.drop_duplicates("timestamp", keep="last").sort_values("timestamp")
    return frame[BAR_COLUMNS].reset_index(drop=True)


def _asset(raw: Any) -> Asset:
    if not isinstance(raw, dict) or not isinstance(raw.get("symbol"), str):
        raise TypeError("asset: an object with a symbol was expected")
    return Asset(
        symbol=raw["symbol"],
        name=raw.get("name") or raw["symbol"],
        exchange=str(raw.get("exchange") or ""),
        currency="USD",
        asset_class=str(raw.get("class") or "us_equity"),
        tradable=bool(raw.get("tradable", False)),
        fractionable=bool(raw.get("fractionable", False)),
    )


def _number(part: dict[str, Any] | None, key: str) -> float | None:
    value = part.get(key) if part else None
    return None if value is None else float(value)


def _quote(symbol: str, snapshot: dict[str, Any]) -> Quote:
    """Alpaca's snapshot: ``latestTrade``, ``latestQuote``, ``minuteBar``, ``dailyBar``, ``prevDailyBar``.

    Read leniently (any part may be missing, as on a thin feed); the price is the last trade's, else the
    latest bar's close."""
    parts = {key: snapshot.get(key) for key in ("latestTrade", "latestQuote", "minuteBar", "dailyBar", "prevDailyBar")}
    if any(part is not None and not isinstance(part, dict) for part in parts.values()):
        raise TypeError("snapshot: objects were expected")
    trade, last_quote = parts["latestTrade"], parts["latestQuote"]
    day, minute, previous = parts["dailyBar"], parts["minuteBar"], parts["prevDailyBar"]
    for source, key in ((trade, "p"), (minute, "c"), (day, "c")):
        if source and source.get(key) is not None:
            price, moment = float(source[key]), _moment(source["t"])
            break
    else:
        raise UpstreamError("ASSET_NOT_FOUND", f"alpaca quote for {symbol}: the snapshot has no price")
    return Quote(
        symbol=symbol,
        price=price,
        previous_close=_number(previous, "c"),
        open_price=_number(day, "o"),
        high_price=_number(day, "h"),
        low_price=_number(day, "l"),
        volume=_number(day, "v"),
        bid_price=_number(last_quote, "bp"),
        ask_price=_number(last_quote, "ap"),
        timestamp=moment,
    )


def _moment(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Alpaca's trades and quotes) as an aware UTC datetime, to the microsecond."""
    stamp = pd.Timestamp(text)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("us").to_pydatetime()


def _upstream_message(error: APIError) -> str:
    """Alpaca's ``{"code", "message"}`` body, or nothing: a proxy's HTML page is not worth repeating."""
    try:
        message = error.message
    except Exception:  # not JSON, or no message in it
        return ""
    return str(message)[:200] if message else ""
