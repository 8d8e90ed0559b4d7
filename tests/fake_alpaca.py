"""A local server speaking enough of Alpaca's REST wire format for alpaca-py, with faults on demand.

One ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) serves two base URLs, so a client pointed at the wrong one
fails: ``data_url`` (``.../data``) answers ``/v2/stocks/bars`` (paged with ``next_page_token``, at most
``page_size`` bars a page), ``/v2/stocks/snapshots`` and ``/v2/stocks/{sym}/snapshot``; ``trading_url``
(``.../trading``) answers ``/v2/assets``, ``/v2/assets/{sym}``, ``/v2/clock``, and a paper account's
``/v2/account``, ``/v2/positions`` and ``/v2/orders`` (POST; GET and DELETE by id; GET
``/v2/orders:by_client_order_id``, with a second order under one client_order_id refused as Alpaca does).
Orders are accepted, then, by ``order_mode``: "fill" fills each whole at its first read after submission (a
market order at ``prices[symbol]``, a limit order at its limit), "hold" keeps it open until ``fill_order``,
"reject" refuses it with 403 (too little buying power). Every request must carry
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
from decimal import Decimal
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
        self.cash = Decimal("100000")
        self.prices: dict[str, Decimal] = {}
        self.order_mode = "fill"
        self.orders: dict[str, dict[str, Any]] = {}  # by Alpaca's id
        self.positions: dict[str, Decimal] = {}
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

    def _route(self, api: str, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if api == "trading" and (path.startswith("/v2/orders") or path in ("/v2/account", "/v2/positions")):
            with self._lock:
                return self._trading(method, path, query, body)
        if method != "GET":
            return 405, {"code": 40510000, "message": "method not allowed"}
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

    # --- the paper account: orders, positions, cash ------------------------------------------------------------

    def fill_order(
        self, client_order_id: str, price: Decimal | str | None = None, quantity: Decimal | str | None = None
    ):
        """Fill an open order (all of it, or ``quantity``) at ``price`` (its limit or market price by default)."""
        with self._lock:
            order = self._by_client_id(client_order_id)
            assert order is not None and order["status"] not in ("filled", "canceled"), order
            self._fill(order, None if price is None else Decimal(str(price)), quantity)

    def orders_placed(self) -> list[dict[str, Any]]:
        """The orders the account took (refused submissions are not orders)."""
        with self._lock:
            return [dict(order) for order in self.orders.values()]

    def _by_client_id(self, client_order_id: str) -> dict[str, Any] | None:
        return next((o for o in self.orders.values() if o["client_order_id"] == client_order_id), None)

    def _fill(self, order: dict[str, Any], price: Decimal | None, quantity: Decimal | str | None = None) -> None:
        if price is None:
            price = (
                Decimal(order["limit_price"])
                if order["limit_price"]
                else self.prices.get(order["symbol"], Decimal(100))
            )
        filled = Decimal(str(quantity)) if quantity is not None else Decimal(order["qty"])
        value = filled * price
        sign = 1 if order["side"] == "buy" else -1
        self.cash -= sign * value
        self.positions[order["symbol"]] = self.positions.get(order["symbol"], Decimal(0)) + sign * filled
        order.update(
            status="filled" if filled == Decimal(order["qty"]) else "partially_filled",
            filled_qty=str(filled),
            filled_avg_price=str(price),
            filled_at=_rfc3339(datetime.now(UTC)),
            updated_at=_rfc3339(datetime.now(UTC)),
        )

    def _trading(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if path == "/v2/account" and method == "GET":
            return 200, {
                "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.key)),
                "account_number": "PA0000000001",
                "status": "ACTIVE",
                "currency": "USD",
                "cash": str(self.cash),
                "buying_power": str(self.cash),
                "equity": str(self.cash),
            }
        if path == "/v2/positions" and method == "GET":
            return 200, [
                {"symbol": symbol, "qty": str(qty), "side": "long", "asset_class": "us_equity"}
                for symbol, qty in sorted(self.positions.items())
                if qty
            ]
        if path == "/v2/orders" and method == "POST":
            return self._new_order(body)
        if path == "/v2/orders:by_client_order_id" and method == "GET":
            found = self._by_client_id(query.get("client_order_id", ""))
            return (200, self._read(found)) if found else (404, {"code": 40410000, "message": "order not found"})
        if len(parts) == 3 and parts[:2] == ["v2", "orders"]:
            order = self.orders.get(parts[2])
            if order is None:
                return 404, {"code": 40410000, "message": "order not found"}
            if method == "GET":
                return 200, self._read(order)
            if method == "DELETE":
                if order["status"] in ("filled", "canceled", "expired", "rejected"):
                    return 422, {"code": 42210000, "message": f'order is already in "{order["status"]}" state'}
                order.update(status="canceled", canceled_at=_rfc3339(datetime.now(UTC)))
                return 204, None
        return 404, {"code": 40410000, "message": "endpoint not found"}

    def _read(self, order: dict[str, Any]) -> dict[str, Any]:
        """The order as a read shows it: in "fill" mode, an accepted order fills at its first read."""
        if self.order_mode == "fill" and order["status"] == "accepted":
            self._fill(order, None)
        return dict(order)

    def _new_order(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("symbol") or body.get("side") not in ("buy", "sell"):
            return 422, {"code": 42210000, "message": "invalid order request"}
        client_order_id = body.get("client_order_id") or str(uuid.uuid4())
        if self._by_client_id(client_order_id) is not None:
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        if self.order_mode == "reject":
            return 403, {"code": 40310000, "message": "insufficient buying power"}
        now = _rfc3339(datetime.now(UTC))
        order = {
            "id": str(uuid.uuid4()),
            "client_order_id": client_order_id,
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "filled_at": None,
            "canceled_at": None,
            "symbol": str(body["symbol"]).upper(),
            "asset_class": "us_equity",
            "qty": str(body.get("qty")),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_type": body.get("type"),
            "type": body.get("type"),
            "side": body["side"],
            "time_in_force": body.get("time_in_force"),
            "limit_price": None if body.get("limit_price") is None else str(body["limit_price"]),
            "status": "accepted",
            "extended_hours": False,
        }
        self.orders[order["id"]] = order
        return 200, dict(order)

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

            def _handle(self, method: str) -> None:
                split = urlsplit(self.path)
                api, _, rest = split.path.lstrip("/").partition("/")
                path = "/" + rest
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = Recorded(api, method, path, query, dict(self.headers.items()))
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
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                if api not in ("data", "trading"):
                    status, answer = 404, {"code": 40410000, "message": "endpoint not found"}
                else:
                    status, answer = fake._route(api, method, path, query, body)
                record.status = status
                if status == 204:
                    self.send_response(204)
                    self.end_headers()
                    return
                self._send(status, json.dumps(answer).encode())

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self._handle("POST")

            def do_DELETE(self) -> None:  # noqa: N802 (http.server's name)
                self._handle("DELETE")

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
