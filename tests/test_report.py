"""The HTML backtest report: self-contained, escaped, complete, and bounded in size for long series."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from cli import report

MALICIOUS = 'Cross <script>alert("x")</script> & co'
VOID = {"meta", "br", "hr", "img", "input", "link", "line", "polyline", "path"}


def curve_of(equity: list[float]) -> list[dict]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        {"index": i, "timestamp": (start + timedelta(days=i)).isoformat(), "equity": value}
        for i, value in enumerate(equity)
    ]


def make_result(equity: list[float], trades: list[dict] | None = None, name: str | None = MALICIOUS) -> dict:
    curve = curve_of(equity)
    return {
        "taskId": "bt-123",
        "displayName": name,
        "strategyId": "s-1",
        "template": "sma_crossover",
        "parameters": {"fast": 3, "slow": 5},
        "symbol": "AAPL",
        "timeframe": "1Day",
        "startDate": "2024-01-01",
        "endDate": curve[-1]["timestamp"][:10] if curve else "2024-01-01",
        "config": {
            "initialCapital": 1000.0,
            "commissionRate": 0.001,
            "slippageBps": 5.0,
            "positionFraction": 1.0,
            "fractional": True,
            "periodsPerYear": 252,
        },
        "equityCurve": curve,
        "dailyReturns": [0.0] * len(curve),
        "trades": trades if trades is not None else [],
        "metrics": {
            "returnRate": 0.05,
            "cagr": 0.4,
            "annualVolatility": 0.2,
            "sharpeRatio": 1.2345,
            "sortinoRatio": None,
            "maxDrawdown": 0.04,
            "calmarRatio": 10.0,
            "tradeCount": 1,
            "winRate": 1.0,
            "profitFactor": None,
            "expectancy": 50.0,
            "sqn": None,
            "exposure": 0.5,
            "finalEquity": 1050.0,
        },
    }


def round_trip(curve: list[dict]) -> list[dict]:
    def trade(bar: int, side: str, price: float, pnl: float | None, reason: str) -> dict:
        return {
            "index": bar,
            "timestamp": curve[bar]["timestamp"],
            "symbol": "AAPL",
            "side": side,
            "price": price,
            "quantity": 10.0,
            "reason": reason,
            "triggered_indicator": "sma",
            "pnl": pnl,
            "metadata": {},
        }

    return [trade(1, "BUY", 100.0, None, "fast crossed above slow"), trade(4, "SELL", 105.0, 50.0, "<exit>")]


class TagChecker(HTMLParser):
    """Tracks open elements so an unbalanced document shows up as leftovers or mismatches."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.mismatches: list[tuple[str, str | None]] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.seen.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        top = self.stack.pop() if self.stack else None
        if top != tag:
            self.mismatches.append((tag, top))


def parse(document: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(document)
    checker.close()
    return checker


def polyline_points(document: str) -> list[str]:
    match = re.search(r'<polyline class="equity" points="([^"]*)"', document)
    assert match, "no equity polyline"
    return match.group(1).split()


@pytest.fixture
def result() -> dict:
    body = make_result([1000.0, 990.0, 1020.0, 980.0, 1050.0, 1050.0])
    body["trades"] = round_trip(body["equityCurve"])
    return body


def test_full_self_contained_document(result):
    document = report.render_report(result)
    assert document.startswith("<!DOCTYPE html>")
    assert "<html" in document and "</html>" in document
    assert "<head>" in document and "<body>" in document
    assert "<script" not in document.lower()
    assert "http://" not in document and "https://" not in document
    assert "<link" not in document.lower()


def test_strings_are_escaped(result):
    document = report.render_report(result)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in document
    assert "&lt;exit&gt;" in document


def test_header_describes_the_backtest(result):
    document = report.render_report(result)
    for text in ("sma_crossover", "fast=3", "slow=5", "AAPL", "1Day", "2024-01-01", "2024-01-06"):
        assert text in document


def test_title_falls_back_to_task_id(result):
    result["displayName"] = None
    assert "<h1>bt-123</h1>" in report.render_report(result)


def test_every_metric_is_labelled_and_formatted(result):
    document = report.render_report(result)
    labels = [
        "Return",
        "CAGR",
        "Annual volatility",
        "Sharpe ratio",
        "Sortino ratio",
        "Max drawdown",
        "Calmar ratio",
        "Trades",
        "Win rate",
        "Profit factor",
        "Expectancy",
        "SQN",
        "Exposure",
        "Final equity",
    ]
    for label in labels:
        assert f'<th scope="row">{label}</th>' in document, label
    assert ">5.00%<" in document and ">40.00%<" in document
    assert ">1.234<" in document or ">1.235<" in document
    assert ">100.00%<" in document  # winRate
    assert document.count(f">{report.MISSING}<") >= 3  # sortino, profitFactor, sqn


def test_unknown_metric_keys_still_appear(result):
    result["metrics"]["periodsPerYear"] = 252
    result["metrics"]["ulcerIndex"] = 0.5
    document = report.render_report(result)
    assert "Periods per year" in document and "Ulcer index" in document


def test_trade_markers_and_table(result):
    document = report.render_report(result)
    assert len(re.findall(r'<polygon class="marker buy"', document)) == 1
    assert len(re.findall(r'<polygon class="marker sell"', document)) == 1
    rows = re.search(r'<table class="trades">(.*?)</table>', document, re.S).group(1)
    assert rows.count("<tr>") == 3  # header and two trades
    assert "fast crossed above slow" in rows and "50.00" in rows


def test_buy_marker_sits_on_entry_bar_equity(result):
    frame = report._Frame(6, 980.0, 1050.0, report.EQUITY_HEIGHT)
    document = report.render_report(result)
    apex = re.search(r'<polygon class="marker buy" points="([\d.]+),([\d.]+)', document)
    assert float(apex.group(1)) == pytest.approx(frame.x(1), abs=0.1)
    assert float(apex.group(2)) == pytest.approx(frame.y(990.0) - report.MARKER_SIZE, abs=0.1)


def test_drawdown_path_and_axis_labels(result):
    document = report.render_report(result)
    assert re.search(r'<path class="drawdown" d="M [^"]+ Z"', document)
    # worst drawdown: 980 against the 1020 peak
    assert f"-{(1 - 980 / 1020) * 100:.2f}%" in document
    assert "1,050.00" in document and "980.00" in document


def test_drawdowns_count_initial_capital_as_a_peak():
    assert report.drawdowns([900.0, 1000.0, 1100.0, 990.0], 1000.0) == pytest.approx([0.1, 0.0, 0.0, 0.1])
    assert report.drawdowns([900.0], None) == [0.0]


def test_document_parses_with_balanced_tags(result):
    checker = parse(report.render_report(result))
    assert not checker.mismatches
    assert not checker.stack
    assert {"html", "svg", "polyline", "path", "polygon", "table"} <= set(checker.seen)


def test_flat_curve_and_no_trades_render():
    document = report.render_report(make_result([1000.0] * 5, name="flat"))
    coordinates = [float(c) for p in polyline_points(document) for c in p.split(",")]
    assert all(0 <= c <= report.WIDTH for c in coordinates)  # finite, on the canvas
    assert "No trades." in document
    assert 'class="marker' not in document
    assert len(polyline_points(document)) == 5
    checker = parse(document)
    assert not checker.mismatches and not checker.stack


def test_single_bar_and_empty_curve_render():
    assert len(polyline_points(report.render_report(make_result([1000.0])))) == 1
    document = report.render_report(make_result([]))
    assert "No equity data." in document
    assert not parse(document).mismatches


def test_long_series_is_downsampled_but_keeps_extremes():
    equity = [1000.0 + (i % 500) for i in range(10_000)]
    equity[7_321] = 1.0  # a one-bar crash must survive downsampling
    body = make_result(equity, name="long")
    document = report.render_report(body)
    points = polyline_points(document)
    assert 100 < len(points) <= report.MAX_POINTS
    drawdown = re.search(r'<path class="drawdown" d="([^"]*)"', document).group(1)
    assert drawdown.count(",") <= report.MAX_POINTS + 2
    frame = report._Frame(len(equity), 1.0, max(equity), report.EQUITY_HEIGHT)
    lowest = max(float(p.split(",")[1]) for p in points)
    assert lowest == pytest.approx(frame.y(1.0), abs=0.1)
    assert len(document) < 200_000


def test_write_report(tmp_path, result):
    target = tmp_path / "out" / "report.html"
    report.write_report(result, target)
    assert target.read_text(encoding="utf-8") == report.render_report(result)
