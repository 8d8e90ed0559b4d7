"""A local server speaking enough of Alpaca's REST wire format for alpaca-py, with faults on demand.

One ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) serves two base URLs, so a client pointed at the wrong one
fails: ``data_url`` (``.../data``) answers ``/v2/stocks/bars`` (paged with ``next_page_token``, at most
``page_size`` bars a page), ``/v2/stocks/snapshots`` and ``/v2/stocks/{sym}/snapshot``; ``trading_url``
(``.../trading``) answers ``/v2/assets``, ``/v2/assets/{sym}`` and ``/v2/clock``. Every request must carry
``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY`` (otherwise 401 with Alpaca's ``{"code", "message"}`` body) and
is recorded in ``requests``.

Faults: ``fail(kind, times=N, path=...)`` makes the next N matching requests (``times=None``: all of them)
answer an HTTP status (401, 403, 429, 500, 503, 504 ...), ``"hang"`` (no answer until ``hang_seconds``),
``"hang_body"`` (headers and half a body, then nothing), ``"malformed"`` (200 with broken JSON) or
``"unexpected"`` (200 with well-formed JSON of the wrong shape).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import secret

API_KEY = secret("PKFAKE0123456789ABCD")
SECRET_KEY = secret("fake-secret-Zq8vX3mN5tR7wY2kP4sL")

ERRORS = {
    400: (40010001, "invalid request"),
    401: (40110000, "request is not authorized"),
    403: (40310000, "forbidden"),
    404: (40410000, "not found"),
    422: (42210000, "unprocessable"),
    429: (42910000, "rate limit exceeded"),
    500: (50010000, "internal server error"),
    502: (50210000, "bad gateway"),
    503: (50310000, "service unavailable"),
    504: (50410000, "gateway timeout"),
}


@dataclass
class Recorded:
    api: str  # "data" or "trading"
    method: str
    path: str  # below the base URL, e.g. /v2/stocks/bars
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False)  # carries the credentials: kept out of reprs and reports
    status: int = 0


@dataclass
class Fault:
    kind: int | str
    remaining: int | None  # None: every matching request
    path: str | None
    retry_after: str | None = None
    skip: int = 0  # matching requests let through before the fault starts


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class FakeAlpaca:
    def __init__(self, key: str = API_KEY, secret_key: str = SECRET_KEY, page_size: int = 4) -> None:
        self.key, self.secret_key, self.page_size = key, secret_key, page_size
        self.bars: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.clock_open = True
        self.hang_seconds = 5.0
        self.requests: list[Recorded] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-alpaca", daemon=True
        )
        base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.data_url = f"{base}/data"
        self.trading_url = f"{base}/trading"

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FakeAlpaca:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()  # hung handlers return
        self._server.shutdown()
        self._server.server_close()

    # --- content -----------------------------------------------------------------------------------------

    def add_bars(self, symbol: str, bars: list[dict[str, Any]], timeframe: str = "1Day") -> None:
        """Bars as ``{"t": datetime|str, "o", "h", "l", "c", "v", "n", "vw"}``, stored in Alpaca's shape."""
        rows = self.bars.setdefault((symbol.upper(), timeframe), [])
        for bar in bars:
            row = dict(bar)
            if isinstance(row["t"], datetime):
                row["t"] = _rfc3339(row["t"])
            rows.append(row)
        rows.sort(key=lambda r: _parse_time(r["t"]))

    def add_asset(
        self,
        symbol: str,
        name: str,
        exchange: str = "NASDAQ",
        *,
        tradable: bool = True,
        fractionable: bool = True,
        status: str = "active",
        asset_class: str = "us_equity",
    ) -> None:
        self.assets[symbol.upper()] = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol.upper())),
            "class": asset_class,
            "exchange": exchange,
            "symbol": symbol.upper(),
            "name": name,
            "status": status,
            "tradable": tradable,
            "marginable": True,
            "shortable": True,
            "easy_to_borrow": True,
            "fractionable": fractionable,
            "maintenance_margin_requirement": 30,
            "attributes": [],
        }

    def set_snapshot(self, symbol: str, snapshot: dict[str, Any]) -> None:
        """A snapshot in Alpaca's shape: latestTrade, latestQuote, minuteBar, dailyBar, prevDailyBar."""
        self.snapshots[symbol.upper()] = snapshot

    def fail(
        self,
        kind: int | str,
        times: int | None = 1,
        path: str | None = None,
        *,
        retry_after: str | None = None,
        skip: int = 0,
    ) -> None:
        """After ``skip`` of them, the next ``times`` requests whose path starts with ``path`` (any if None) fail
        as ``kind``; ``times=None`` is every one. A status fault may carry a ``Retry-After`` header."""
        with self._lock:
            self._faults.append(Fault(kind, times, path, retry_after, skip))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(path)]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining != 0 and (fault.path is None or path.startswith(fault.path)):
                    if fault.skip:
                        fault.skip -= 1
                        continue
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    # --- routes ------------------------------------------------------------------------------------------

    def _route(self, api: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if api == "data" and path == "/v2/stocks/bars":
            return self._bars_page(query)
        if api == "data" and path == "/v2/stocks/snapshots":
            symbols = [s for s in query.get("symbols", "").split(",") if s]
            return 200, {s: self.snapshots[s] for s in symbols if s in self.snapshots}
        if api == "data" and len(parts) == 4 and parts[:2] == ["v2", "stocks"] and parts[3] == "snapshot":
            found = self.snapshots.get(parts[2])
            return (200, {"symbol": parts[2], **found}) if found else (404, {"code": 40410000, "message": "not found"})
        if api == "trading" and path == "/v2/assets":
            status, asset_class = query.get("status"), query.get("asset_class")
            chosen = [
                a
                for a in self.assets.values()
                if (not status or a["status"] == status) and (not asset_class or a["class"] == asset_class)
            ]
            return 200, chosen
        if api == "trading" and len(parts) == 3 and parts[:2] == ["v2", "assets"]:
            found = self.assets.get(parts[2])
            if found:
                return 200, found
            return 404, {"code": 40410000, "message": f"asset not found for {parts[2]}"}
        if api == "trading" and path == "/v2/clock":
            now = datetime.now(UTC)
            return 200, {
                "timestamp": now.isoformat(),
                "is_open": self.clock_open,
                "next_open": _rfc3339(now + timedelta(hours=14)),
                "next_close": _rfc3339(now + timedelta(hours=4)),
            }
        return 404, {"code": 40410000, "message": "endpoint not found"}

    def _bars_page(self, query: dict[str, str]) -> tuple[int, Any]:
        symbols = [s for s in query.get("symbols", "").split(",") if s]
        timeframe = query.get("timeframe", "")
        if not symbols or not timeframe:
            return 422, {"code": 42210000, "message": "symbols and timeframe are required"}
        try:
            start = _parse_time(query["start"]) if "start" in query else datetime.min.replace(tzinfo=UTC)
            end = _parse_time(query["end"]) if "end" in query else datetime.now(UTC)
        except ValueError:
            return 422, {"code": 42210000, "message": "invalid start or end"}
        # Alpaca pages over (symbol, time); the token names the last bar sent.
        rows = [
            (symbol, bar)
            for symbol in sorted(symbols)
            for bar in self.bars.get((symbol, timeframe), [])
            if start <= _parse_time(bar["t"]) <= end
        ]
        offset = 0
        if query.get("page_token"):
            try:
                last_symbol, last_time = base64.b64decode(query["page_token"]).decode().split("|")
            except ValueError:
                return 400, {"code": 40010001, "message": "invalid page token"}
            offset = next(
                (i + 1 for i, (s, b) in enumerate(rows) if s == last_symbol and b["t"] == last_time), len(rows)
            )
        limit = min(int(query.get("limit") or 1000), self.page_size, 10_000)
        page = rows[offset : offset + limit]
        grouped: dict[str, list[dict[str, Any]]] = {}
        for symbol, bar in page:
            grouped.setdefault(symbol, []).append(bar)
        token = None
        if offset + limit < len(rows):
            symbol, bar = page[-1]
            token = base64.b64encode(f"{symbol}|{bar['t']}".encode()).decode()
        return 200, {"bars": grouped, "next_page_token": token}

    # --- HTTP ----------------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
                pass  # quiet: the request line is recorded in fake.requests instead

            def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, extra: dict[str, str] | None = None) -> None:
                code, message = ERRORS.get(status, (status * 100000, "error"))
                self._send(status, json.dumps({"code": code, "message": message}).encode(), extra)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                split = urlsplit(self.path)
                api, _, rest = split.path.lstrip("/").partition("/")
                path = "/" + rest
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                record = Recorded(api, "GET", path, query, dict(self.headers.items()))
                with fake._lock:
                    fake.requests.append(record)
                fault = fake._take_fault(path)
                if fault is not None:
                    record.status = self._fault(fault)
                    return
                if self.headers.get("APCA-API-KEY-ID") != fake.key or (
                    self.headers.get("APCA-API-SECRET-KEY") != fake.secret_key
                ):
                    record.status = 401
                    self._error(401)
                    return
                if api not in ("data", "trading"):
                    status, body = 404, {"code": 40410000, "message": "endpoint not found"}
                else:
                    status, body = fake._route(api, path, query)
                record.status = status
                self._send(status, json.dumps(body).encode())

            def _fault(self, fault: Fault) -> int:
                if fault.kind == "hang":
                    fake._release.wait(fake.hang_seconds)
                    self.close_connection = True
                    return 0
                if fault.kind == "hang_body":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "64")
                    self.end_headers()
                    self.wfile.write(b'{"bars": {"AAPL": [')
                    self.wfile.flush()
                    fake._release.wait(fake.hang_seconds)
                    self.close_connection = True
                    return 200
                if fault.kind == "malformed":
                    self._send(200, b'{"bars": {"AAPL": [{"t": "2024-01-02T05:00:00Z", "o": 1.0,')
                    return 200
                if fault.kind == "unexpected":
                    self._send(200, b'{"unexpected": true}')
                    return 200
                status = int(fault.kind)
                self._error(status, {"Retry-After": fault.retry_after} if fault.retry_after else None)
                return status

        return Handler


@pytest.fixture(name="fake_alpaca")
def fake_alpaca_fixture() -> Iterator[FakeAlpaca]:
    fake = FakeAlpaca().start()
    try:
        yield fake
    finally:
        fake.close()
