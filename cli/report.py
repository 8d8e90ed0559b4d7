"""A standalone HTML report for one backtest result body (the camelCase JSON the API returns).

`render_report` is pure: it turns the result into one self-contained HTML document, with inline CSS and inline
SVG charts only (no scripts, fonts or network), so the file can be archived, mailed or opened offline.
Every string taken from the result goes through `html.escape`, because display names and trade reasons are
user-controlled.
"""

from __future__ import annotations

import html
import math
import pathlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeGuard

# Beyond this many points a polyline stops adding visual detail and only bloats the file.
MAX_POINTS = 2000

PERCENT_METRICS = {"returnRate", "cagr", "maxDrawdown", "winRate", "exposure", "annualVolatility"}
MONEY_METRICS = {"finalEquity", "initialCapital", "expectancy"}
INTEGER_METRICS = {"tradeCount", "periodsPerYear", "barCount"}
METRIC_LABELS = {
    "returnRate": "Return",
    "cagr": "CAGR",
    "annualVolatility": "Annual volatility",
    "sharpeRatio": "Sharpe ratio",
    "sortinoRatio": "Sortino ratio",
    "maxDrawdown": "Max drawdown",
    "calmarRatio": "Calmar ratio",
    "tradeCount": "Trades",
    "winRate": "Win rate",
    "profitFactor": "Profit factor",
    "expectancy": "Expectancy",
    "sqn": "SQN",
    "exposure": "Exposure",
    "finalEquity": "Final equity",
    "periodsPerYear": "Periods per year",
}
MISSING = "\u2014"

# Chart geometry, in SVG user units; the left margin leaves room for the y-axis labels.
WIDTH = 960
LEFT, RIGHT, TOP, BOTTOM = 90, 20, 16, 28
EQUITY_HEIGHT = 320
DRAWDOWN_HEIGHT = 170
MARKER_SIZE = 5

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1000px;
       color: #1f2933; background: #fff; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.25rem; }
h2 { font-size: 1.1rem; margin-top: 2rem; }
.meta { color: #52606d; margin: 0.15rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #e4e7eb; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.pos { color: #1a7f37; } .neg { color: #c62828; }
svg { width: 100%; height: auto; display: block; }
svg text { font-size: 11px; fill: #52606d; }
.axis { stroke: #cbd2d9; stroke-width: 1; }
.equity { fill: none; stroke: #2563eb; stroke-width: 1.5; }
.drawdown { fill: #fca5a5; stroke: #c62828; stroke-width: 1; }
.marker.buy { fill: #1a7f37; } .marker.sell { fill: #c62828; }
.empty { color: #7b8794; font-style: italic; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- formatting ----------------------------------------------------------------------------------------------


def metric_label(key: str) -> str:
    """The human label of a metric key; unknown keys are split at their camelCase humps."""
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in key).strip()
    return words[:1].upper() + words[1:]


def format_metric(key: str, value: Any) -> str:
    if value is None:
        return MISSING
    if not is_number(value):
        return str(value)
    if not math.isfinite(value):
        return "\u221e" if value > 0 else ("-\u221e" if value < 0 else MISSING)
    if key in PERCENT_METRICS:
        return f"{value * 100:.2f}%"
    if key in INTEGER_METRICS:
        return f"{int(value):,}"
    if key in MONEY_METRICS:
        return f"{value:,.2f}"
    return f"{value:.3f}"


def _money(value: Any) -> str:
    return f"{value:,.2f}" if is_number(value) else MISSING


def _price(value: Any) -> str:
    if not is_number(value):
        return MISSING
    # Sub-dollar assets would read as 0.00 with fixed cents.
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"


def _quantity(value: Any) -> str:
    if not is_number(value):
        return MISSING
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _time(value: Any) -> str:
    """A timestamp as a date when it falls on midnight (daily bars), else date and minutes."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M")


# --- series --------------------------------------------------------------------------------------------------


def downsample(values: Sequence[float], max_points: int = MAX_POINTS) -> list[tuple[int, float]]:
    """(position, value) pairs, at most `max_points`; each bucket keeps its min and max so dips stay visible."""
    if len(values) <= max_points:
        return list(enumerate(values))
    buckets = max(1, max_points // 2)
    size = len(values) / buckets
    points: list[tuple[int, float]] = []
    for b in range(buckets):
        start, stop = int(b * size), min(len(values), int((b + 1) * size))
        if start >= stop:
            continue
        low = min(range(start, stop), key=values.__getitem__)
        high = max(range(start, stop), key=values.__getitem__)
        points.extend((i, values[i]) for i in sorted({low, high}))
    return points


def drawdowns(equity: Sequence[float], initial_capital: float | None) -> list[float]:
    """1 - equity / running peak, where the starting capital counts as the first peak."""
    peak = initial_capital if is_number(initial_capital) else (equity[0] if equity else 0.0)
    result = []
    for value in equity:
        peak = max(peak, value)
        result.append(1.0 - value / peak if peak > 0 else 0.0)
    return result


class _Frame:
    """Maps bar positions and values onto a chart's plot area; a flat range is widened to avoid dividing by 0."""

    def __init__(self, count: int, low: float, high: float, height: int) -> None:
        if high <= low:
            pad = abs(high) * 0.01 or 1.0
            low, high = low - pad, high + pad
        self.count, self.low, self.high, self.height = count, low, high, height

    def x(self, position: float) -> float:
        span = WIDTH - LEFT - RIGHT
        return LEFT + (span * position / (self.count - 1) if self.count > 1 else span / 2)

    def y(self, value: float) -> float:
        span = self.height - TOP - BOTTOM
        return TOP + span * (self.high - value) / (self.high - self.low)


def _coords(frame: _Frame, points: list[tuple[int, float]]) -> list[str]:
    return [f"{frame.x(i):.1f},{frame.y(v):.1f}" for i, v in points]


# --- charts --------------------------------------------------------------------------------------------------


def _axes(frame: _Frame, top_label: str, bottom_label: str, first: str, last: str) -> list[str]:
    bottom = frame.height - BOTTOM
    return [
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>',
        f'<text class="y-max" x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{_e(top_label)}</text>',
        f'<text class="y-min" x="{LEFT - 6}" y="{bottom}" text-anchor="end">{_e(bottom_label)}</text>',
        f'<text class="x-first" x="{LEFT}" y="{frame.height - 8}">{_e(first)}</text>',
        f'<text class="x-last" x="{WIDTH - RIGHT}" y="{frame.height - 8}" text-anchor="end">{_e(last)}</text>',
    ]


def svg(height: int, label: str, body: list[str]) -> str:
    # No xmlns: inline SVG in HTML does not need it, and the document must carry no external URL.
    inner = "\n".join(body)
    return f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_e(label)}">\n{inner}\n</svg>'


def _bar_positions(curve: list[dict[str, Any]]) -> tuple[dict[Any, int], dict[Any, int]]:
    """Lookups from a trade's bar index, or failing that its timestamp, to a position on the curve."""
    by_index = {point.get("index"): pos for pos, point in enumerate(curve)}
    by_time = {point.get("timestamp"): pos for pos, point in enumerate(curve)}
    return by_index, by_time


def _marker(trade: dict[str, Any], x: float, y: float) -> str:
    s = MARKER_SIZE
    if trade.get("side") == "BUY":
        side, points = "buy", f"{x:.1f},{y - s:.1f} {x - s:.1f},{y + s:.1f} {x + s:.1f},{y + s:.1f}"
    else:
        side, points = "sell", f"{x:.1f},{y + s:.1f} {x - s:.1f},{y - s:.1f} {x + s:.1f},{y - s:.1f}"
    tip = f"{trade.get('side', '')} {_quantity(trade.get('quantity'))} @ {_price(trade.get('price'))}"
    tip += f" \u2014 {_time(trade.get('timestamp'))} {trade.get('reason') or ''}".rstrip()
    return f'<polygon class="marker {side}" points="{points}"><title>{_e(tip)}</title></polygon>'


def _markers(
    frame: _Frame, curve: list[dict[str, Any]], equity: list[float], trades: list[dict[str, Any]]
) -> list[str]:
    by_index, by_time = _bar_positions(curve)
    out = []
    for trade in trades:
        pos = by_index.get(trade.get("index"), by_time.get(trade.get("timestamp")))
        if pos is None:  # a trade off the curve has no bar to sit on
            continue
        out.append(_marker(trade, frame.x(pos), frame.y(equity[pos])))
    return out


def equity_chart(curve: list[dict[str, Any]], trades: list[dict[str, Any]]) -> str:
    equity = [float(point["equity"]) for point in curve]
    if not equity:
        return '<p class="empty">No equity data.</p>'
    frame = _Frame(len(equity), min(equity), max(equity), EQUITY_HEIGHT)
    first, last = _time(curve[0].get("timestamp")), _time(curve[-1].get("timestamp"))
    body = _axes(frame, _money(max(equity)), _money(min(equity)), first, last)
    body.append(f'<polyline class="equity" points="{" ".join(_coords(frame, downsample(equity)))}"/>')
    body += _markers(frame, curve, equity, trades)
    return svg(EQUITY_HEIGHT, "Equity curve", body)


def drawdown_chart(curve: list[dict[str, Any]], initial_capital: float | None) -> str:
    depth = drawdowns([float(point["equity"]) for point in curve], initial_capital)
    if not depth:
        return '<p class="empty">No equity data.</p>'
    worst = max(depth)
    # Drawn downwards from a 0% line at the top, so the frame runs from -worst to 0.
    frame = _Frame(len(depth), -worst, 0.0, DRAWDOWN_HEIGHT)
    first, last = _time(curve[0].get("timestamp")), _time(curve[-1].get("timestamp"))
    body = _axes(frame, "0%", f"-{worst * 100:.2f}%", first, last)
    points = downsample(depth)
    line = " L ".join(f"{frame.x(i):.1f},{frame.y(-d):.1f}" for i, d in points)
    base = frame.y(0.0)
    path = f"M {frame.x(points[0][0]):.1f},{base:.1f} L {line} L {frame.x(points[-1][0]):.1f},{base:.1f} Z"
    body.append(f'<path class="drawdown" d="{path}"/>')
    return svg(DRAWDOWN_HEIGHT, "Drawdown", body)


# --- tables and header ---------------------------------------------------------------------------------------


def metrics_table(metrics: dict[str, Any]) -> str:
    if not metrics:
        return '<p class="empty">No metrics.</p>'
    rows = [
        f'<tr><th scope="row">{_e(metric_label(key))}</th><td class="num">{_e(format_metric(key, value))}</td></tr>'
        for key, value in metrics.items()
    ]
    return '<table class="metrics">\n' + "\n".join(rows) + "\n</table>"


def _trade_row(trade: dict[str, Any]) -> str:
    pnl = trade.get("pnl")
    tone = "" if not is_number(pnl) or pnl == 0 else (" pos" if pnl > 0 else " neg")
    cells = [
        f"<td>{_e(_time(trade.get('timestamp')))}</td>",
        f"<td>{_e(trade.get('side', ''))}</td>",
        f'<td class="num">{_e(_price(trade.get("price")))}</td>',
        f'<td class="num">{_e(_quantity(trade.get("quantity")))}</td>',
        f"<td>{_e(trade.get('reason') or '')}</td>",
        f'<td class="num{tone}">{_e(_money(pnl))}</td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def trades_table(trades: list[dict[str, Any]]) -> str:
    if not trades:
        return '<p class="empty">No trades.</p>'
    head = (
        '<tr><th>Time</th><th>Side</th><th class="num">Price</th><th class="num">Quantity</th>'
        '<th>Reason</th><th class="num">PnL</th></tr>'
    )
    rows = "\n".join(_trade_row(trade) for trade in trades)
    return f'<table class="trades">\n<thead>{head}</thead>\n<tbody>\n{rows}\n</tbody>\n</table>'


def _parameters(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in parameters.items()) or "no parameters"


def header(result: dict[str, Any]) -> str:
    title = result.get("displayName") or result.get("taskId") or "Backtest"
    config = result.get("config") or {}
    lines = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Strategy <b>{_e(result.get("template", ""))}</b> '
        f"({_e(_parameters(result.get('parameters') or {}))})</p>",
        f'<p class="meta">{_e(result.get("symbol", ""))} \u00b7 {_e(result.get("timeframe", ""))} \u00b7 '
        f"{_e(result.get('startDate', ''))} \u2192 {_e(result.get('endDate', ''))}</p>",
    ]
    if config:
        lines.append(
            f'<p class="meta">Initial capital {_e(_money(config.get("initialCapital")))} \u00b7 '
            f"commission {_e(config.get('commissionRate', MISSING))} \u00b7 "
            f"slippage {_e(config.get('slippageBps', MISSING))} bps</p>"
        )
    return "\n".join(lines)


# --- document ------------------------------------------------------------------------------------------------


def render_report(result: dict[str, Any]) -> str:
    """The whole report as one HTML document."""
    curve = result.get("equityCurve") or []
    trades = result.get("trades") or []
    initial = (result.get("config") or {}).get("initialCapital")
    title = result.get("displayName") or result.get("taskId") or "Backtest"
    sections = [
        header(result),
        "<h2>Metrics</h2>",
        metrics_table(result.get("metrics") or {}),
        "<h2>Equity</h2>",
        equity_chart(curve, trades),
        "<h2>Drawdown</h2>",
        drawdown_chart(curve, initial),
        "<h2>Trades</h2>",
        trades_table(trades),
    ]
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)} \u2014 backtest report</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def write_report(result: dict[str, Any], path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result), encoding="utf-8")
