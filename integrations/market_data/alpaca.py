"""Alpaca market data through ``alpaca-py``: historical bars (every page), snapshots, assets, the clock.

``StockHistoricalDataClient`` serves bars and snapshots from ``QUANTPOLY_ALPACA_DATA_URL``, ``TradingClient``
the assets and the market clock from ``QUANTPOLY_ALPACA_TRADING_URL`` (both through ``url_override``), with the
configured feed. Both clients run with ``raw_data=True``: bars go straight into a DataFrame (no model object per
bar), and assets and snapshots are read leniently (a new exchange name upstream, or a snapshot bar without
``vw``, must not break the catalog or a quote, as alpaca-py's strict models would).

Every request has the configured timeout and up to ``QUANTPOLY_ALPACA_MAX_RETRIES`` retries, page by page
(``integrations.alpaca_http``).

Every failure becomes an ``UpstreamError`` with a stable code; messages never carry the credentials.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

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

from core.errors import AppError, InvalidInput, UpstreamError
from core.settings import Settings
from integrations.alpaca_http import MALFORMED, Credentials, Limits, bound, upstream_error, upstream_message
from integrations.market_data import BAR_COLUMNS, Asset, ProviderHealth, Quote

logger = logging.getLogger(__name__)

SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,19}$")
TIMEFRAME = re.compile(r"^(\d{1,2})(Min|Hour|Day|Week|Month)$")
UNITS = {
    "Min": TimeFrameUnit.Minute,
    "Hour": TimeFrameUnit.Hour,
    "Day": TimeFrameUnit.Day,
    "Week": TimeFrameUnit.Week,
    "Month": TimeFrameUnit.Month,
}

T = TypeVar("T")


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
        self._credentials = Credentials(key, secret)
        self.data_url = settings.alpaca_data_url.rstrip("/")
        self.trading_url = settings.alpaca_trading_url.rstrip("/")
        self.feed = DataFeed(settings.alpaca_feed)
        self.timeout_seconds = settings.alpaca_timeout_seconds
        self.max_retries = settings.alpaca_max_retries
        self._limits = Limits(self.timeout_seconds, self.max_retries, backoff_seconds, backoff_max_seconds)
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
            bound(clients.data, self._limits)
            bound(clients.trading, self._limits)
            self._local.clients = clients
        return clients

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
        if isinstance(error, APIError) and symbol:
            status = error.status_code or 0
            detail = upstream_message(error)
            if status == 404 or (status in (400, 422) and "symbol" in detail.lower()):
                said = f" ({detail})" if detail else ""
                text = f"{where}: unknown symbol (HTTP {status}){said}"
                return UpstreamError("ASSET_NOT_FOUND", self._credentials.scrub(text))
        return upstream_error(error, where, self._credentials, self._limits)

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
