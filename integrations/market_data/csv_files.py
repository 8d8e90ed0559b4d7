"""Bars from the user's own files: ``<dir>/<timeframe>/<SYMBOL>.csv`` or ``.parquet``.

Columns: ``timestamp`` (ISO 8601; a time without a zone is UTC), ``open``, ``high``, ``low``, ``close``,
``volume``, and optionally ``vwap`` and ``trade_count``. An optional ``<dir>/assets.csv`` with ``symbol``,
``name``, ``exchange`` names the catalog; without it every symbol that has files is listed. File names are
matched without regard to case; where both exist, the parquet file is used.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.errors import InvalidInput, UpstreamError
from integrations.market_data import BAR_COLUMNS, Asset, ProviderHealth, Quote

REQUIRED = ["timestamp", "open", "high", "low", "close", "volume"]
NUMERIC = ["open", "high", "low", "close", "volume", "vwap"]
SUFFIXES = (".parquet", ".csv")  # in order of preference
SAFE_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,31}$")
TIMEFRAME_LENGTH = {"1Min": 1, "5Min": 5, "15Min": 15, "1Hour": 60, "1Day": 1440}


def _bad_file(path: Path, problem: str) -> InvalidInput:
    return InvalidInput(f"{path.name}: {problem}", code="INVALID_MARKET_DATA_FILE")


class CsvProvider:
    source = "csv"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _index(self) -> dict[tuple[str, str], Path]:
        """(timeframe, SYMBOL) → file, for the files directly under each timeframe folder."""
        found: dict[tuple[str, str], Path] = {}
        if not self.directory.is_dir():
            return found
        for suffix in reversed(SUFFIXES):  # later suffixes win: parquet over csv
            for path in self.directory.glob(f"*/*{suffix}"):
                symbol = path.stem.upper()
                if path.parent.name in TIMEFRAME_LENGTH and SAFE_SYMBOL.match(symbol):
                    found[(path.parent.name, symbol)] = path
        return found

    def _read(self, path: Path) -> pd.DataFrame:
        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except Exception as error:
            raise _bad_file(path, f"cannot be read ({type(error).__name__})") from None
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise _bad_file(path, f"lacks columns {', '.join(missing)}")
        try:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
            for column in NUMERIC:
                if column in frame.columns:
                    frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
        except (ValueError, TypeError) as error:
            raise _bad_file(path, f"has a value that is not a number or time ({error})") from None
        frame["vwap"] = frame["vwap"] if "vwap" in frame.columns else float("nan")
        if "trade_count" in frame.columns:
            # Integers or NULL: a blank cell must not become a float NaN in an integer column.
            trades = pd.to_numeric(frame["trade_count"], errors="coerce")
            frame["trade_count"] = pd.Series([None if pd.isna(v) else int(v) for v in trades], dtype=object)
        else:
            frame["trade_count"] = None
        frame = frame[BAR_COLUMNS].sort_values("timestamp").reset_index(drop=True)
        frame["vwap"] = frame["vwap"].astype(object).where(frame["vwap"].notna(), None)
        return frame

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        path = self._index().get((timeframe, symbol.upper()))
        if path is None:
            self.asset(symbol)  # unknown symbol → ASSET_NOT_FOUND; known but no such timeframe → empty
            return pd.DataFrame(columns=BAR_COLUMNS)
        frame = self._read(path)
        frame = frame[(frame["timestamp"] >= start) & (frame["timestamp"] <= end)].reset_index(drop=True)
        frame["timestamp"] = [t.to_pydatetime() for t in frame["timestamp"]]
        return frame

    def assets(self) -> list[Asset]:
        names = self._names()
        symbols = sorted({symbol for _, symbol in self._index()})
        return [
            Asset(symbol=s, name=names.get(s, (s, "CSV"))[0], exchange=names.get(s, (s, "CSV"))[1]) for s in symbols
        ]

    def _names(self) -> dict[str, tuple[str, str]]:
        listing = self.directory / "assets.csv"
        if not listing.is_file():
            return {}
        try:
            frame = pd.read_csv(listing, dtype=str).fillna("")
        except Exception as error:
            raise _bad_file(listing, f"cannot be read ({type(error).__name__})") from None
        if "symbol" not in frame.columns:
            raise _bad_file(listing, "lacks the symbol column")
        names = frame["name"] if "name" in frame.columns else frame["symbol"]
        exchanges = frame["exchange"] if "exchange" in frame.columns else pd.Series(["CSV"] * len(frame))
        return {
            symbol.strip().upper(): (name or symbol, exchange or "CSV")
            for symbol, name, exchange in zip(frame["symbol"], names, exchanges, strict=True)
        }

    def asset(self, symbol: str) -> Asset:
        for asset in self.assets():
            if asset.symbol == symbol.upper():
                return asset
        raise UpstreamError("ASSET_NOT_FOUND", f"no files for {symbol.upper()} in {self.directory}")

    def quote(self, symbol: str) -> Quote:
        """The newest bar across the symbol's files (the finest timeframe when they tie)."""
        symbol = symbol.upper()
        paths = sorted(
            ((tf, p) for (tf, s), p in self._index().items() if s == symbol), key=lambda item: TIMEFRAME_LENGTH[item[0]]
        )
        if not paths:
            raise UpstreamError("ASSET_NOT_FOUND", f"no files for {symbol} in {self.directory}")
        frames = [(tf, self._read(p)) for tf, p in paths]
        frames = [(tf, f) for tf, f in frames if len(f)]
        if not frames:
            raise UpstreamError("ASSET_NOT_FOUND", f"the files of {symbol} hold no bars")
        # The newest bar wins; between bars of the same time, the finer timeframe.
        _, frame = max(frames, key=lambda item: (item[1]["timestamp"].iloc[-1], -TIMEFRAME_LENGTH[item[0]]))
        last = frame.iloc[-1]
        previous = frame.iloc[-2] if len(frame) > 1 else last
        return Quote(
            symbol=symbol,
            price=float(last["close"]),
            previous_close=float(previous["close"]),
            open_price=float(last["open"]),
            high_price=float(last["high"]),
            low_price=float(last["low"]),
            volume=float(last["volume"]),
            bid_price=None,
            ask_price=None,
            timestamp=last["timestamp"].to_pydatetime(),
        )

    def health(self) -> ProviderHealth:
        started = time.perf_counter()
        healthy = self.directory.is_dir()
        return ProviderHealth(
            provider="csv",
            transport="files",
            healthy=healthy,
            status="ok" if healthy else "degraded",
            message=f"{len({s for _, s in self._index()})} symbols"
            if healthy
            else f"{self.directory} is not a directory",
            base_url=str(self.directory),
            last_latency_ms=round((time.perf_counter() - started) * 1000, 3),
            last_failure_code=None if healthy else "UPSTREAM_UNAVAILABLE",
        )
