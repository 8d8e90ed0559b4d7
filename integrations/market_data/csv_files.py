"""Bars from the user's own files: ``<dir>/<timeframe>/<SYMBOL>.csv`` or ``.parquet``.

Columns: ``timestamp`` (ISO 8601; a time without a zone is UTC), ``open``, ``high``, ``low``, ``close``,
``volume``, and optionally ``vwap`` and ``trade_count``. An optional ``<dir>/assets.csv`` with ``symbol``,
``name``, ``exchange`` names the catalog; without it every symbol that has files is listed.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.errors import InvalidInput, UpstreamError
from integrations.market_data import BAR_COLUMNS, Asset, ProviderHealth, Quote

REQUIRED = ["timestamp", "open", "high", "low", "close", "volume"]
SUFFIXES = (".parquet", ".csv")


class CsvProvider:
    source = "csv"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _file(self, symbol: str, timeframe: str) -> Path | None:
        for suffix in SUFFIXES:
            path = self.directory / timeframe / f"{symbol.upper()}{suffix}"
            if path.is_file():
                return path
        return None

    def _read(self, path: Path) -> pd.DataFrame:
        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except Exception as error:
            raise UpstreamError("UPSTREAM_UNAVAILABLE", f"{path.name} cannot be read: {error}") from None
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise InvalidInput(f"{path.name} lacks columns {', '.join(missing)}", code="INVALID_MARKET_DATA_FILE")
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        for optional in ("vwap", "trade_count"):
            if optional not in frame.columns:
                frame[optional] = None
        return frame[BAR_COLUMNS].sort_values("timestamp").reset_index(drop=True)

    def bars(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        path = self._file(symbol, timeframe)
        if path is None:
            self.asset(symbol)  # unknown symbol → ASSET_NOT_FOUND; known but no such timeframe → empty
            return pd.DataFrame(columns=BAR_COLUMNS)
        frame = self._read(path)
        frame = frame[(frame["timestamp"] >= start) & (frame["timestamp"] <= end)].reset_index(drop=True)
        frame["timestamp"] = [t.to_pydatetime() for t in frame["timestamp"]]
        return frame

    def _symbols(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*/*")):
                if path.suffix in SUFFIXES:
                    found.setdefault(path.stem.upper(), path)
        return found

    def assets(self) -> list[Asset]:
        names = self._names()
        return [
            Asset(symbol=s, name=names.get(s, (s, "CSV"))[0], exchange=names.get(s, (s, "CSV"))[1])
            for s in self._symbols()
        ]

    def _names(self) -> dict[str, tuple[str, str]]:
        listing = self.directory / "assets.csv"
        if not listing.is_file():
            return {}
        frame = pd.read_csv(listing)
        return {str(r.symbol).upper(): (str(r.name), str(getattr(r, "exchange", "CSV"))) for r in frame.itertuples()}

    def asset(self, symbol: str) -> Asset:
        for asset in self.assets():
            if asset.symbol == symbol.upper():
                return asset
        raise UpstreamError("ASSET_NOT_FOUND", f"no files for {symbol.upper()} in {self.directory}")

    def quote(self, symbol: str) -> Quote:
        """The last bar of the finest timeframe on file stands in for a quote."""
        path = self._symbols().get(symbol.upper())
        if path is None:
            raise UpstreamError("ASSET_NOT_FOUND", f"no files for {symbol.upper()} in {self.directory}")
        frame = self._read(path)
        last = frame.iloc[-1]
        previous = frame.iloc[-2] if len(frame) > 1 else last
        return Quote(
            symbol=symbol.upper(),
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
            message=f"{len(self._symbols())} symbols" if healthy else f"{self.directory} is not a directory",
            base_url=str(self.directory),
            last_latency_ms=round((time.perf_counter() - started) * 1000, 3),
            last_failure_code=None if healthy else "UPSTREAM_UNAVAILABLE",
        )
