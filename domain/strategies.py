"""Strategy templates and their parameters, and the strategy lifecycle (reference §2.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DRAFT, ACTIVE, INACTIVE, ARCHIVED = "draft", "active", "inactive", "archived"
TRANSITIONS = {
    DRAFT: frozenset({ACTIVE, INACTIVE, ARCHIVED}),
    ACTIVE: frozenset({INACTIVE, ARCHIVED}),
    INACTIVE: frozenset({ACTIVE, ARCHIVED}),
    ARCHIVED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: type  # int or float
    minimum: float
    maximum: float
    default: float
    description: str


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    description: str
    parameters: tuple[Parameter, ...]
    # (smaller, larger): the first parameter must be strictly below the second.
    ordering: tuple[tuple[str, str], ...] = ()


TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in (
        Template(
            "moving_average",
            "双均线 (dual moving average)",
            "Long when the short SMA crosses above the long SMA; flat when it crosses below.",
            (
                Parameter("shortWindow", int, 2, 200, 5, "bars of the fast moving average"),
                Parameter("longWindow", int, 3, 400, 20, "bars of the slow moving average"),
            ),
            (("shortWindow", "longWindow"),),
        ),
        Template(
            "bollinger_bands",
            "布林带 (Bollinger bands)",
            "Long when the close falls below the lower band; flat when it rises above the middle band.",
            (
                Parameter("period", int, 5, 200, 20, "bars of the middle band"),
                Parameter("stdDev", float, 0.1, 5, 2.0, "band width in standard deviations"),
            ),
        ),
        Template(
            "rsi",
            "RSI 反转 (RSI reversal)",
            "Long when RSI crosses up through the oversold level; flat when it reaches the overbought level.",
            (
                Parameter("period", int, 2, 200, 14, "bars of Wilder's RSI"),
                Parameter("oversold", float, 0, 100, 30, "entry level"),
                Parameter("overbought", float, 0, 100, 70, "exit level"),
            ),
            (("oversold", "overbought"),),
        ),
        Template(
            "macd",
            "MACD 趋势 (MACD trend)",
            "Long when the MACD line crosses above its signal line; flat when it crosses below.",
            (
                Parameter("fast", int, 1, 100, 12, "bars of the fast EMA"),
                Parameter("slow", int, 2, 200, 26, "bars of the slow EMA"),
                Parameter("signal", int, 1, 100, 9, "bars of the signal EMA"),
            ),
            (("fast", "slow"),),
        ),
        Template(
            "mean_reversion",
            "均值回归 (mean reversion)",
            "Long when the close's z-score against its rolling mean falls to -entryZ; flat when it rises to "
            "-exitZ or above.",
            (
                Parameter("window", int, 2, 300, 20, "bars of the rolling mean and deviation"),
                Parameter("entryZ", float, 0.1, 5, 1.5, "z-score distance that opens a position"),
                Parameter("exitZ", float, 0, 5, 0.5, "z-score distance that closes it"),
            ),
            (("exitZ", "entryZ"),),
        ),
        Template(
            "momentum",
            "动量突破 (momentum breakout)",
            "Long when the close is more than threshold above its value lookback bars ago; flat when the "
            "lookback return turns negative.",
            (
                Parameter("lookback", int, 2, 252, 20, "bars of the momentum window"),
                Parameter("threshold", float, 0, 1, 0.05, "return over the window that opens a position"),
            ),
        ),
    )
}


class ParameterError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def validate_parameters(template_id: str, given: dict[str, Any], *, fill_defaults: bool = True) -> dict[str, Any]:
    """The template's parameters from ``given``: known names only, right types (bools refused), within
    bounds and in the template's order; missing ones take their defaults unless ``fill_defaults`` is off."""
    template = TEMPLATES.get(template_id)
    if template is None:
        raise ParameterError([f"unknown template {template_id!r}"])
    known = {p.name: p for p in template.parameters}
    problems = [f"unknown parameter {name!r}" for name in given if name not in known]
    values: dict[str, Any] = {}
    for parameter in template.parameters:
        if parameter.name not in given:
            if fill_defaults:
                values[parameter.name] = parameter.kind(parameter.default)
            else:
                problems.append(f"{parameter.name} is required")
            continue
        value, problem = _checked(parameter, given[parameter.name])
        if problem:
            problems.append(problem)
        else:
            values[parameter.name] = value
    for smaller, larger in template.ordering:
        if smaller in values and larger in values and not values[smaller] < values[larger]:
            problems.append(f"{smaller} must be less than {larger}")
    if problems:
        raise ParameterError(problems)
    return values


def _checked(parameter: Parameter, value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"{parameter.name} must be a number"
    if parameter.kind is int and not float(value).is_integer():
        return None, f"{parameter.name} must be a whole number"
    value = parameter.kind(value)
    if not parameter.minimum <= value <= parameter.maximum:
        return None, f"{parameter.name} must be between {parameter.minimum:g} and {parameter.maximum:g}"
    return value, None
