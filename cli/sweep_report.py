"""A standalone HTML report for one research sweep: its result body (the camelCase ``ResearchResultOut`` JSON,
``optimizationResult`` included) and every trial of the trial listing.

`render_sweep_report` is pure, as `cli.report.render_report` is: one self-contained HTML document with inline CSS
and inline SVG charts only (no scripts, fonts or network). Every string taken from the input goes through
`html.escape`: the strategy's name is user-controlled, and parameter names, symbols and reasons are treated alike.
"""

from __future__ import annotations

import html
import math
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from cli.report import (
    BOTTOM,
    CSS,
    LEFT,
    MISSING,
    RIGHT,
    TOP,
    WIDTH,
    downsample,
    format_metric,
    is_number,
    metric_label,
    svg,
)

# Beyond this many dots a chart adds no visible detail, only bytes.
MAX_DOTS = 2000
# Heatmap columns (rows) per parameter; a parameter with more distinct values is binned into this many ranges.
MAX_CELLS = 24
HISTORY_HEIGHT = 300
SCATTER_HEIGHT = 360
BAR_HEIGHT, BAR_GAP, BAR_LABELS = 22, 6, 190
HEATMAP_LEGEND = 110
DOT, BEST_DOT = 2.5, 5
# Heatmap colours, worst → middle → best.
COLOUR_STOPS = ((215, 48, 39), (254, 224, 139), (26, 152, 80))

SWEEP_CSS = (
    CSS
    + """
.dot { fill: #2563eb; fill-opacity: 0.55; }
.dot.infeasible { fill: none; stroke: #9aa5b1; stroke-width: 1; }
.dot.best { fill: #c62828; fill-opacity: 1; }
.best-line { fill: none; stroke: #c62828; stroke-width: 1.5; }
.separator, .diagonal { stroke: #9aa5b1; stroke-width: 1; stroke-dasharray: 4 3; }
.bar { fill: #2563eb; }
.cell { stroke: #fff; stroke-width: 1; }
.note { color: #52606d; font-size: 0.85rem; margin: 0.3rem 0 0; }
dl.figures dt { font-weight: 600; margin-top: 0.8rem; }
dl.figures dd { margin: 0.2rem 0 0 0; }
"""
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _value(value: Any) -> str:
    """A parameter value or a bin edge: whole numbers without a fraction, others to four significant digits."""
    if not is_number(value):
        return MISSING if value is None else str(value)
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def _parameters(parameters: dict[str, Any] | None) -> str:
    return ", ".join(f"{name}={_value(value)}" for name, value in (parameters or {}).items()) or "no parameters"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


# --- geometry ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Axis:
    """Maps values ``low``..``high`` onto pixels ``start``..``stop`` (a y axis runs from the bottom up, so its
    stop is above its start); a flat range is widened to avoid dividing by 0."""

    low: float
    high: float
    start: float
    stop: float

    @classmethod
    def over(cls, values: Sequence[float], start: float, stop: float, margin: float = 0.0) -> _Axis:
        """An axis over the values' range, widened by ``margin`` (a share of the range) at both ends so that
        dots on the extremes are not cut by the plot's edge."""
        low, high = min(values), max(values)
        if high <= low:
            pad = abs(high) * 0.01 or 1.0
            low, high = low - pad, high + pad
        pad = (high - low) * margin
        return cls(low - pad, high + pad, start, stop)

    def __call__(self, value: float) -> float:
        return self.start + (self.stop - self.start) * (value - self.low) / (self.high - self.low)


def _frame(height: int, x_labels: tuple[str, str], y_labels: tuple[str, str], titles: tuple[str, str]) -> list[str]:
    """Axis lines, the extreme values of both axes and the axes' titles (the y title turned upright)."""
    bottom, middle = height - BOTTOM, (TOP + height - BOTTOM) / 2
    return [
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{_e(y_labels[1])}</text>',
        f'<text x="{LEFT - 6}" y="{bottom}" text-anchor="end">{_e(y_labels[0])}</text>',
        f'<text x="{LEFT}" y="{height - 8}">{_e(x_labels[0])}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{height - 8}" text-anchor="end">{_e(x_labels[1])}</text>',
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{height - 8}" text-anchor="middle">{_e(titles[0])}</text>',
        f'<text x="14" y="{middle}" text-anchor="middle" transform="rotate(-90 14 {middle})">{_e(titles[1])}</text>',
    ]


def _dot(x: float, y: float, css: str, tip: str, radius: float = DOT) -> str:
    return f'<circle class="{css}" cx="{x:.1f}" cy="{y:.1f}" r="{radius}"><title>{_e(tip)}</title></circle>'


def _better(maximize: bool) -> Callable[[float, float | None], bool]:
    return lambda score, than: than is None or (score > than if maximize else score < than)


def _scored(trial: dict[str, Any]) -> bool:
    return is_number(trial.get("score"))


# --- charts --------------------------------------------------------------------------------------------------


def history_chart(trials: list[dict[str, Any]], metric: str, maximize: bool) -> str:
    """Every trial's score as a dot (hollow when it breaks a constraint) in the order they ran, window by
    window, and each window's best feasible score so far as a line."""
    ordered = sorted(trials, key=lambda t: (t.get("window", 0), t.get("number", 0)))
    scored = [(position, trial) for position, trial in enumerate(ordered) if _scored(trial)]
    if not scored:
        return _empty("No trial has a score yet.")
    height, bottom = HISTORY_HEIGHT, HISTORY_HEIGHT - BOTTOM
    x = _Axis.over([0, max(len(ordered) - 1, 1)], LEFT, WIDTH - RIGHT, margin=0.01)
    y = _Axis.over([float(trial["score"]) for _, trial in scored], bottom, TOP, margin=0.03)
    body = _frame(
        height,
        ("trial 1", f"trial {len(ordered)}"),
        (format_metric(metric, y.low), format_metric(metric, y.high)),
        ("trials in the order they ran", metric_label(metric)),
    )
    windows = [(window, list(group)) for window, group in groupby(enumerate(ordered), lambda p: p[1].get("window"))]
    for window, group in windows[1:]:
        left = x(group[0][0] - 0.5)
        body.append(f'<line class="separator" x1="{left:.1f}" y1="{TOP}" x2="{left:.1f}" y2="{bottom}"/>')
        body.append(f'<text x="{left + 4:.1f}" y="{bottom - 4}">window {_e(window)}</text>')
    for kept, score in downsample([float(trial["score"]) for _, trial in scored], MAX_DOTS):
        position, trial = scored[kept]
        css = "dot" if trial.get("feasible") else "dot infeasible"
        tip = f"{trial.get('trialId', '')}: {format_metric(metric, score)} ({_parameters(trial.get('parameters'))})"
        body.append(_dot(x(position), y(score), css, tip))
    better = _better(maximize)
    for _, group in windows:
        best: float | None = None
        line: list[tuple[int, float]] = []
        for position, trial in group:
            if trial.get("feasible") and _scored(trial) and better(float(trial["score"]), best):
                best = float(trial["score"])
            if best is not None:
                line.append((position, best))
        if line:
            kept_points = [line[k] for k, _ in downsample([v for _, v in line], MAX_DOTS)]
            points = " ".join(f"{x(p):.1f},{y(v):.1f}" for p, v in kept_points)
            body.append(f'<polyline class="best-line" points="{points}"/>')
    return svg(height, "Optimization history", body)


def importances_chart(importances: dict[str, Any]) -> str:
    """One horizontal bar per searched parameter, longest first."""
    ranked = sorted(((str(n), float(v)) for n, v in importances.items() if is_number(v)), key=lambda p: -p[1])
    if not ranked:
        return _empty("No importances: they need two searched parameters and four scored trials.")
    top = max(value for _, value in ranked) or 1.0
    span = WIDTH - BAR_LABELS - 80
    height = TOP + len(ranked) * (BAR_HEIGHT + BAR_GAP)
    body = []
    for row, (name, value) in enumerate(ranked):
        y = TOP + row * (BAR_HEIGHT + BAR_GAP)
        width = span * max(value, 0.0) / top
        shown = f"{value * 100:.1f}%"
        body += [
            f'<text x="{BAR_LABELS - 8}" y="{y + BAR_HEIGHT * 0.7:.1f}" text-anchor="end">{_e(name)}</text>',
            f'<rect class="bar" x="{BAR_LABELS}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}">'
            f"<title>{_e(name)}: {shown}</title></rect>",
            f'<text x="{BAR_LABELS + width + 6:.1f}" y="{y + BAR_HEIGHT * 0.7:.1f}">{shown}</text>',
        ]
    return svg(height, "Parameter importances", body)


def heatmap_parameters(importances: dict[str, Any], trials: list[dict[str, Any]]) -> list[str]:
    """The parameters whose values vary across the trials, the most important first (then by name)."""
    values: dict[str, set[float]] = {}
    for trial in trials:
        for name, value in (trial.get("parameters") or {}).items():
            if is_number(value):
                values.setdefault(name, set()).add(float(value))
    varying = [name for name, seen in values.items() if len(seen) > 1]
    weight = {name: float(v) for name, v in importances.items() if is_number(v)}
    return sorted(varying, key=lambda name: (-weight.get(name, -1.0), name))


def _bins(values: list[float]) -> tuple[list[str], Callable[[float], int]]:
    """Each distinct value its own cell, or at most ``MAX_CELLS`` equal ranges when there are more (ranges of
    whole numbers for whole-number values)."""
    distinct = sorted(set(values))
    if len(distinct) <= MAX_CELLS:
        index = {value: i for i, value in enumerate(distinct)}
        return [_value(v) for v in distinct], index.__getitem__
    low, high = distinct[0], distinct[-1]
    if all(float(v).is_integer() for v in distinct):
        width = float(math.ceil((high - low + 1) / MAX_CELLS))
        count = math.ceil((high - low + 1) / width)
        edges = [(low + i * width, min(low + (i + 1) * width - 1, high)) for i in range(count)]
    else:
        width, count = (high - low) / MAX_CELLS, MAX_CELLS
        edges = [(low + i * width, low + (i + 1) * width) for i in range(count)]
    labels = [_value(a) if a == b else f"{_value(a)}\u2013{_value(b)}" for a, b in edges]
    return labels, lambda v: min(int((v - low) // width), count - 1)


def _colour(goodness: float) -> str:
    t = min(max(goodness, 0.0), 1.0) * 2
    segment = 0 if t < 1 else 1
    start, stop = COLOUR_STOPS[segment], COLOUR_STOPS[segment + 1]
    rgb = [round(a + (b - a) * (t - segment)) for a, b in zip(start, stop, strict=True)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def heatmap_chart(trials: list[dict[str, Any]], importances: dict[str, Any], metric: str, maximize: bool) -> str:
    """The mean score of the trials in each cell of the grid of the two most important parameters' values."""
    names = heatmap_parameters(importances, trials)
    if len(names) < 2:
        return _empty("Fewer than two parameters vary across the trials: no heatmap.")
    x_name, y_name = names[0], names[1]
    points = [
        (float(t["parameters"][x_name]), float(t["parameters"][y_name]), float(t["score"]))
        for t in trials
        if _scored(t) and is_number(t["parameters"].get(x_name)) and is_number(t["parameters"].get(y_name))
    ]
    if not points:
        return _empty("No scored trial: no heatmap.")
    x_labels, x_bin = _bins([p[0] for p in points])
    y_labels, y_bin = _bins([p[1] for p in points])
    cells: dict[tuple[int, int], list[float]] = {}
    for x_value, y_value, score in points:
        cells.setdefault((x_bin(x_value), y_bin(y_value)), []).append(score)
    means = {cell: sum(scores) / len(scores) for cell, scores in cells.items()}
    low, high = min(means.values()), max(means.values())

    def goodness(mean: float) -> float:
        if high <= low:
            return 0.5
        return (mean - low) / (high - low) if maximize else (high - mean) / (high - low)

    right = WIDTH - RIGHT - HEATMAP_LEGEND
    cell_w = (right - LEFT) / len(x_labels)
    cell_h = min(max(320 / len(y_labels), 14.0), 40.0)
    plot_bottom = TOP + cell_h * len(y_labels)
    height = round(plot_bottom + 44)
    body = []
    for (ix, iy), mean in sorted(means.items()):
        count = len(cells[(ix, iy)])
        tip = (
            f"{x_name}={x_labels[ix]}, {y_name}={y_labels[iy]}: mean {format_metric(metric, mean)} "
            f"over {count} trial{'s' if count != 1 else ''}"
        )
        body.append(
            f'<rect class="cell" x="{LEFT + ix * cell_w:.1f}" y="{plot_bottom - (iy + 1) * cell_h:.1f}" '
            f'width="{cell_w:.1f}" height="{cell_h:.1f}" fill="{_colour(goodness(mean))}">'
            f"<title>{_e(tip)}</title></rect>"
        )
    # Labels at most every column, as far apart as the longest needs (about 6.5 px a character).
    every = math.ceil(len(x_labels) * (max(len(label) for label in x_labels) * 6.5 + 8) / (right - LEFT))
    for ix, label in enumerate(x_labels):
        if ix % every == 0:
            centre = LEFT + (ix + 0.5) * cell_w
            body.append(f'<text x="{centre:.1f}" y="{plot_bottom + 14:.1f}" text-anchor="middle">{_e(label)}</text>')
    for iy, label in enumerate(y_labels):
        middle = plot_bottom - (iy + 0.5) * cell_h + 4
        body.append(f'<text x="{LEFT - 6}" y="{middle:.1f}" text-anchor="end">{_e(label)}</text>')
    centre_y = (TOP + plot_bottom) / 2
    body += [
        f'<text x="{(LEFT + right) / 2:.1f}" y="{plot_bottom + 34:.1f}" text-anchor="middle">{_e(x_name)}</text>',
        f'<text x="14" y="{centre_y:.1f}" text-anchor="middle" transform="rotate(-90 14 {centre_y:.1f})">'
        f"{_e(y_name)}</text>",
    ]
    body += _legend(right + 16, plot_bottom, metric, (low, high) if maximize else (high, low))
    return svg(height, f"Mean {metric_label(metric)} over {x_name} and {y_name}", body)


def _legend(left: float, bottom: float, metric: str, worst_best: tuple[float, float]) -> list[str]:
    """The colour scale, worst at the bottom and best at the top, with their values."""
    steps, top = 20, TOP
    step = (bottom - top) / steps
    body = [
        f'<rect x="{left:.1f}" y="{bottom - (i + 1) * step:.1f}" width="16" height="{step + 0.5:.1f}" '
        f'fill="{_colour(i / (steps - 1))}"/>'
        for i in range(steps)
    ]
    worst, best = worst_best
    body.append(f'<text x="{left + 22:.1f}" y="{top + 10:.1f}">best {_e(format_metric(metric, best))}</text>')
    body.append(f'<text x="{left + 22:.1f}" y="{bottom:.1f}">worst {_e(format_metric(metric, worst))}</text>')
    return body


def out_of_sample_chart(trials: list[dict[str, Any]], metric: str, best_id: str | None, mode: str | None) -> str:
    """Each trial's score (its metric over the training period) against the same metric over its test period."""
    points = [
        (float(t["score"]), float(t["testMetrics"][metric]), t)
        for t in trials
        if _scored(t) and isinstance(t.get("testMetrics"), dict) and is_number(t["testMetrics"].get(metric))
    ]
    if not points:
        if mode == "none":
            return _empty("Validation none: no test period, so no out-of-sample values.")
        return _empty("No trial has an out-of-sample value.")
    stride = math.ceil(len(points) / MAX_DOTS)
    # The best candidate last, so that it is drawn over the others.
    shown = [p for p in points[::stride] if p[2].get("trialId") != best_id]
    shown += [p for p in points if p[2].get("trialId") == best_id]
    height, bottom = SCATTER_HEIGHT, SCATTER_HEIGHT - BOTTOM
    x = _Axis.over([p[0] for p in points], LEFT, WIDTH - RIGHT, margin=0.03)
    y = _Axis.over([p[1] for p in points], bottom, TOP, margin=0.03)
    label = metric_label(metric)
    body = _frame(
        height,
        (format_metric(metric, x.low), format_metric(metric, x.high)),
        (format_metric(metric, y.low), format_metric(metric, y.high)),
        (f"{label} in sample", f"{label} out of sample"),
    )
    low, high = max(x.low, y.low), min(x.high, y.high)
    if low < high:
        body.append(
            f'<line class="diagonal" x1="{x(low):.1f}" y1="{y(low):.1f}" x2="{x(high):.1f}" y2="{y(high):.1f}"/>'
        )
    for in_sample, out_sample, trial in shown:
        best = trial.get("trialId") == best_id
        tip = (
            f"{trial.get('trialId', '')}: {format_metric(metric, in_sample)} in sample, "
            f"{format_metric(metric, out_sample)} out of sample ({_parameters(trial.get('parameters'))})"
        )
        body.append(_dot(x(in_sample), y(out_sample), "dot best" if best else "dot", tip, BEST_DOT if best else DOT))
    return svg(height, "In sample against out of sample", body)


# --- tables and text -----------------------------------------------------------------------------------------


def best_table(best: dict[str, Any] | None, metric: str) -> str:
    """The best candidate's parameters and its metrics in and out of sample, side by side."""
    if not best:
        return _empty("No feasible trial with a score: no best candidate.")
    in_sample, out_sample = best.get("metrics") or {}, best.get("testMetrics") or {}
    keys = list(in_sample) + [key for key in out_sample if key not in in_sample]
    rows = [
        f'<tr><th scope="row">{_e(metric_label(key))}</th>'
        f'<td class="num">{_e(format_metric(key, in_sample.get(key)))}</td>'
        f'<td class="num">{_e(format_metric(key, out_sample.get(key)) if out_sample else MISSING)}</td></tr>'
        for key in keys
    ]
    head = '<tr><th>Metric</th><th class="num">In sample</th><th class="num">Out of sample</th></tr>'
    return (
        f'<p class="meta">Trial <b>{_e(best.get("trialId", ""))}</b> \u00b7 {_e(_parameters(best.get("parameters")))}'
        f" \u00b7 {_e(metric_label(metric))} {_e(format_metric(metric, best.get('score')))}</p>\n"
        f'<table class="metrics">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>"
    )


def _figure(value: Any) -> str:
    return f"{value:.3f}" if is_number(value) else MISSING


def overfitting_section(overfitting: dict[str, Any]) -> str:
    deflated = overfitting.get("deflatedSharpe")
    pbo = overfitting.get("probabilityOfBacktestOverfitting")
    parts = ['<dl class="figures">']
    parts.append(f"<dt>Deflated Sharpe ratio: {_figure((deflated or {}).get('deflatedSharpeRatio'))}</dt>")
    parts.append(
        "<dd>The probability that the best trial's Sharpe ratio is skill rather than the luck of picking the best "
        "of many trials: below 0.95 its edge is not established.</dd>"
    )
    if deflated:
        parts.append(
            f'<dd class="meta">Sharpe ratio {_figure(deflated.get("sharpeRatio"))} per bar against '
            f"{_figure(deflated.get('expectedMaximumSharpe'))}, the best expected of "
            f"{_e(deflated.get('trials'))} trials without skill; {_e(deflated.get('observations'))} bars.</dd>"
        )
    else:
        parts.append('<dd class="empty">Not computed: it needs two trials with a Sharpe ratio.</dd>')
    parts.append(f"<dt>Probability of backtest overfitting: {_figure((pbo or {}).get('probability'))}</dt>")
    parts.append(
        "<dd>The share of combinatorially symmetric cross-validation splits in which the trial best in sample ranks "
        "in the lower half out of sample: above 0.5 the choice is more likely overfit than not.</dd>"
    )
    if pbo:
        parts.append(
            f'<dd class="meta">{_e(pbo.get("combinations"))} combinations of {_e(pbo.get("blocks"))} blocks; '
            f"performance degradation {_figure(pbo.get('performanceDegradation'))}; "
            f"probability of loss {_figure(pbo.get('probabilityOfLoss'))}.</dd>"
        )
    else:
        parts.append('<dd class="empty">Not computed: it needs two completed trials.</dd>')
    parts.append("</dl>")
    return "\n".join(parts)


def windows_table(windows: list[dict[str, Any]], metric: str) -> str:
    if not windows:
        return ""
    label = metric_label(metric)
    head = (
        f"<tr><th>Window</th><th>Train</th><th>Test</th><th>Best trial</th><th>Parameters</th>"
        f'<th class="num">{_e(label)} in</th><th class="num">{_e(label)} out</th></tr>'
    )
    rows = []
    for window in windows:
        test = f"{window.get('testStart')} \u2192 {window.get('testEnd')}" if window.get("testStart") else MISSING
        rows.append(
            "<tr>"
            f"<td>{_e(window.get('index', ''))}</td>"
            f"<td>{_e(window.get('trainStart', ''))} \u2192 {_e(window.get('trainEnd', ''))}</td>"
            f"<td>{_e(test)}</td>"
            f"<td>{_e(window.get('bestTrialId') or MISSING)}</td>"
            f"<td>{_e(_parameters(window.get('bestParameters')))}</td>"
            f'<td class="num">{_e(format_metric(metric, (window.get("inSample") or {}).get(metric)))}</td>'
            f'<td class="num">{_e(format_metric(metric, (window.get("outOfSample") or {}).get(metric)))}</td>'
            "</tr>"
        )
    return f'<table class="windows">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>"


def header(result: dict[str, Any], strategy_name: str | None) -> str:
    found = result.get("optimizationResult") or {}
    metadata = found.get("metadata") or {}
    echo = metadata.get("inputEcho") or {}
    config = echo.get("config") or {}
    objective = found.get("objective") or {}
    convergence = found.get("convergence") or {}
    progress = result.get("progress") or {}
    metric = objective.get("metric")
    stop = convergence.get("earlyStopReason")
    lines = [
        f"<h1>Sweep of {_e(strategy_name or result.get('strategyId') or 'a strategy')}</h1>",
        f'<p class="meta">Strategy {_e(result.get("strategyId", ""))} \u00b7 template '
        f"<b>{_e(metadata.get('template') or MISSING)}</b></p>",
        f'<p class="meta">{_e(metadata.get("symbol") or MISSING)} \u00b7 {_e(metadata.get("timeframe") or MISSING)}'
        f" \u00b7 {_e(config.get('startDate', MISSING))} \u2192 {_e(config.get('endDate', MISSING))}</p>",
        f'<p class="meta">Method <b>{_e(found.get("method") or result.get("method", ""))}</b> \u00b7 objective '
        f"{_e(objective.get('direction') or MISSING)} <b>{_e(metric_label(metric) if metric else MISSING)}</b>"
        f" \u00b7 seed {_e(metadata.get('seed', MISSING))}</p>",
        f'<p class="meta">Task {_e(result.get("taskId", ""))} \u00b7 {_e(result.get("status", ""))} \u00b7 '
        f"{_e(progress.get('trialsDone', MISSING))} of {_e(progress.get('trialsPlanned', MISSING))} trials"
        f" \u00b7 stopped: {_e(str(stop).replace('_', ' ') if stop else MISSING)}</p>",
    ]
    constraints = echo.get("constraints") or {}
    if constraints:
        lines.append(f'<p class="meta">Constraints: {_e(_parameters(constraints))}</p>')
    validation = found.get("validation") or {}
    if validation:
        lines.append(f'<p class="meta">Validation: {_e(validation.get("mode", MISSING))}</p>')
        lines.append(windows_table(validation.get("windows") or [], metric or "score"))
    return "\n".join(line for line in lines if line)


# --- document ------------------------------------------------------------------------------------------------


def render_sweep_report(
    result: dict[str, Any], trials: list[dict[str, Any]], *, strategy_name: str | None = None
) -> str:
    """The whole report as one HTML document. ``trials`` are every trial of the listing (all windows)."""
    found = result.get("optimizationResult") or {}
    objective = found.get("objective") or {}
    metric: str = objective.get("metric") or next((str(t["metric"]) for t in trials if t.get("metric")), "score")
    maximize = objective.get("direction", "maximize") != "minimize"
    best = found.get("bestCandidate")
    importances = found.get("importances") or {}
    validation = found.get("validation") or {}
    last_window = max((t.get("window", 0) for t in trials), default=0)
    last = [t for t in trials if t.get("window", 0) == last_window]
    sections = [header(result, strategy_name)]
    if not found:
        sections.append(
            _empty(f"The sweep has no result yet ({result.get('status', 'unknown')}): the charts show its trials.")
        )
    sections += [
        "<h2>Optimization history</h2>",
        history_chart(trials, metric, maximize),
        _note("Dots: each trial's score (hollow: breaks a constraint). Line: the best feasible score so far."),
        "<h2>Parameter importances</h2>",
        importances_chart(importances),
        "<h2>Score over the two most important parameters</h2>",
        heatmap_chart(last, importances, metric, maximize),
        _note(
            "Each cell: the mean score of the trials with those values" + (" (last window)." if last_window else ".")
        ),
        "<h2>In sample against out of sample</h2>",
        out_of_sample_chart(trials, metric, (best or {}).get("trialId"), validation.get("mode")),
        _note(
            "Each trial's score over its training period against the same metric over its test period; the "
            "dashed line is equal performance."
        ),
        "<h2>Best candidate</h2>",
        best_table(best, metric),
        "<h2>Overfitting</h2>",
        overfitting_section(found.get("overfitting") or {}),
    ]
    suggestions = found.get("suggestions") or []
    if suggestions:
        items = "\n".join(f"<li>{_e(s.get('message', ''))}</li>" for s in suggestions)
        sections += ["<h2>Suggestions</h2>", f"<ul>\n{items}\n</ul>"]
    title = strategy_name or result.get("strategyId") or "Sweep"
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)} \u2014 sweep report</title>\n"
        f"<style>{SWEEP_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def write_sweep_report(
    result: dict[str, Any], trials: list[dict[str, Any]], path: pathlib.Path, *, strategy_name: str | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_sweep_report(result, trials, strategy_name=strategy_name), encoding="utf-8")
