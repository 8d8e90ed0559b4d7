"""Research sweeps: what a sweep asks for (method, objective, parameter space, constraints, budget, validation),
the space it searches resolved against a strategy's template, the periods it optimizes and tests on, and how
a trial's metrics become its score and its violations.

Every trial is a backtest: its metrics are those of ``domain.backtest.evaluate`` over the trial's period with
the trial's parameters, so a trial's score is its backtest's metric. What runs the trials (the sampler, the
process pool) is in ``domain.trials``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from domain import strategies as rules

GRID, RANDOM, BAYESIAN, CMAES = "grid", "random", "bayesian", "cmaes"
METHODS = (GRID, RANDOM, BAYESIAN, CMAES)
Method = Literal["grid", "random", "bayesian", "cmaes"]
HOLDOUT, WALK_FORWARD, NONE = "holdout", "walk_forward", "none"

# Objectives: every metric of a backtest (reference metrics.md), and the reference's default name for the mean
# net PnL per trade. Lower is better for the risks; higher for the rest.
METRICS = (
    "returnRate",
    "cagr",
    "annualVolatility",
    "sharpeRatio",
    "sortinoRatio",
    "maxDrawdown",
    "calmarRatio",
    "tradeCount",
    "winRate",
    "profitFactor",
    "expectancy",
    "sqn",
    "exposure",
    "finalEquity",
)
METRIC_ALIASES = {"averagePnl": "expectancy"}
LOWER_IS_BETTER = frozenset({"annualVolatility", "maxDrawdown"})
# Constraint → (metric, bound): "max" holds while the metric is at most the limit, "min" while at least.
CONSTRAINTS = {
    "maxDrawdown": ("maxDrawdown", "max"),
    "maxVolatility": ("annualVolatility", "max"),
    "minTrades": ("tradeCount", "min"),
    "minWinRate": ("winRate", "min"),
    "minSharpeRatio": ("sharpeRatio", "min"),
    "minReturnRate": ("returnRate", "min"),
    "minProfitFactor": ("profitFactor", "min"),
    "minExposure": ("exposure", "min"),
}

# Bounds that keep a sweep's cost finite: trials per period, points of a grid, values of one parameter.
MAX_TRIALS = 10_000
MAX_GRID_POINTS = 100_000
MAX_VALUES_PER_PARAMETER = 10_000
MAX_CHOICES = 100
DEFAULT_TRIALS = 50
DEFAULT_DURATION_SECONDS = 600


class InvalidSweep(ValueError):
    """A request whose space, objective or constraints cannot be searched (422
    ``RESEARCH_INVALID_PARAMETER_SPACE``)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)


class RangeIn(_Model):
    """A parameter's values: ``min``..``max`` by ``step`` (every step for int parameters when omitted), or
    ``choices``. Checked against the template's parameter when the space is resolved (``search_space``), so
    that every problem of a space is a ``RESEARCH_INVALID_PARAMETER_SPACE``."""

    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: list[float] | None = Field(default=None, max_length=MAX_CHOICES)


class ObjectiveIn(_Model):
    metric: str = "sharpeRatio"
    direction: Literal["maximize", "minimize"] | None = None  # the metric's own sense when omitted


class BudgetIn(_Model):
    max_trials: int = Field(default=DEFAULT_TRIALS, ge=1, le=MAX_TRIALS)
    max_duration_seconds: float = Field(default=DEFAULT_DURATION_SECONDS, gt=0, le=7 * 24 * 3600)
    early_stop_score: float | None = None


class ValidationIn(_Model):
    """Out-of-sample testing: ``holdout`` (train on the first 1 - testFraction of the dates, test on the rest),
    ``walk_forward`` (``windows`` consecutive train/test pairs, rolling or ``anchored`` at the start) or
    ``none`` (optimize over the whole range)."""

    mode: Literal["holdout", "walk_forward", "none"] = "holdout"
    test_fraction: float = Field(default=0.3, ge=0.05, le=0.5)
    windows: int = Field(default=3, ge=2, le=12)
    anchored: bool = False


class OptimizationIn(_Model):
    """``POST /strategies/{id}/research/optimization-task``: every field optional, so that ``{}`` starts a
    useful default sweep."""

    method: Method = "bayesian"
    objective: ObjectiveIn = Field(default_factory=ObjectiveIn)
    parameter_space: dict[str, RangeIn] = Field(default_factory=dict, max_length=16)
    constraints: dict[str, float] = Field(default_factory=dict, max_length=len(CONSTRAINTS))
    budget: BudgetIn = Field(default_factory=BudgetIn)
    config: dict[str, Any] | None = None
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    validation: ValidationIn = Field(default_factory=ValidationIn)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


@dataclass(frozen=True)
class Objective:
    metric: str
    maximize: bool

    def better(self, score: float, than: float | None) -> bool:
        return than is None or (score > than if self.maximize else score < than)


def objective_of(given: ObjectiveIn) -> Objective:
    metric = METRIC_ALIASES.get(given.metric, given.metric)
    if metric not in METRICS:
        raise InvalidSweep([f"unknown objective metric {given.metric!r}; one of {', '.join(METRICS)}"])
    direction = given.direction or ("minimize" if metric in LOWER_IS_BETTER else "maximize")
    return Objective(metric, direction == "maximize")


def checked_constraints(given: dict[str, float]) -> dict[str, float]:
    unknown = [name for name in given if name not in CONSTRAINTS]
    if unknown:
        raise InvalidSweep([f"unknown constraint {name!r}; one of {', '.join(CONSTRAINTS)}" for name in unknown])
    return dict(given)


def violations(metrics: dict[str, Any], constraints: dict[str, float]) -> tuple[list[str], list[float]]:
    """The constraints a trial breaks, as messages, and every constraint's excess (> 0 when broken), the
    values optuna's constrained samplers read. An undefined metric breaks its constraint by 1."""
    messages, excesses = [], []
    for name, limit in constraints.items():
        metric, bound = CONSTRAINTS[name]
        value = metrics.get(metric)
        if value is None:
            excess = 1.0
        else:
            excess = float(value) - limit if bound == "max" else limit - float(value)
        excesses.append(excess)
        if excess > 0:
            shown = "undefined" if value is None else f"{value:.6g}"
            messages.append(f"{name}: {metric} {shown} {'above' if bound == 'max' else 'below'} {limit:g}")
    return messages, excesses


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: a lattice ``low``..``high`` by ``step``, or ``choices``."""

    name: str
    kind: type  # int or float
    values: tuple[float, ...]  # every value the grid visits, ascending
    low: float
    high: float
    step: float | None  # None for choices
    choices: tuple[float, ...] | None = None


@dataclass(frozen=True)
class SearchSpace:
    """A template's parameters: the searched ones and the strategy's own values of the rest. A point is
    feasible when the template accepts it (bounds and relationship rules)."""

    template: str
    dimensions: tuple[Dimension, ...]
    fixed: dict[str, Any]

    def parameters(self, point: dict[str, Any]) -> dict[str, Any]:
        return {**self.fixed, **{d.name: d.kind(point[d.name]) for d in self.dimensions}}

    def feasible(self, point: dict[str, Any]) -> dict[str, Any] | None:
        """The trial's whole parameter set, or None when the template refuses it."""
        try:
            return rules.validate_parameters(self.template, self.parameters(point), fill_defaults=False)
        except rules.ParameterError:
            return None

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every feasible point in lexicographic order of the dimensions' values."""
        names = [d.name for d in self.dimensions]
        for values in itertools.product(*(d.values for d in self.dimensions)):
            parameters = self.feasible(dict(zip(names, values, strict=True)))
            if parameters is not None:
                yield parameters

    @property
    def size(self) -> int:
        return math.prod(len(d.values) for d in self.dimensions)

    def describe(self) -> dict[str, Any]:
        """The space as the result echoes it."""
        return {
            d.name: {"choices": list(d.choices)}
            if d.choices is not None
            else {"min": d.kind(d.low), "max": d.kind(d.high), "step": d.kind(d.step)}
            for d in self.dimensions
        }


def search_space(template_id: str, own: dict[str, Any], given: dict[str, RangeIn]) -> SearchSpace:
    """The space a request searches; an empty request searches every parameter around the strategy's own."""
    template = rules.TEMPLATES.get(template_id)
    if template is None:
        raise InvalidSweep([f"unknown template {template_id!r}"])
    known = {p.name: p for p in template.parameters}
    problems = [f"{name!r} is not a parameter of {template_id}" for name in given if name not in known]
    if problems:
        raise InvalidSweep(problems)
    ranges = given or {p.name: _around(p, own.get(p.name, p.default)) for p in template.parameters}
    dimensions = []
    for name, wanted in ranges.items():
        dimension, problem = _dimension(known[name], wanted)
        if problem:
            problems.append(problem)
        elif dimension is not None:
            dimensions.append(dimension)
    if problems:
        raise InvalidSweep(problems)
    fixed = {name: value for name, value in own.items() if name not in ranges}
    space = SearchSpace(template_id, tuple(dimensions), fixed)
    if space.size > MAX_GRID_POINTS:
        raise InvalidSweep([f"the space has {space.size} points, at most {MAX_GRID_POINTS}"])
    if next(space.grid(), None) is None:
        raise InvalidSweep(["no point of the space satisfies the template's rules"])
    return space


def _around(parameter: rules.Parameter, value: float) -> RangeIn:
    """Half to twice the strategy's value, within the parameter's bounds, in about ten steps."""
    low = max(parameter.minimum, value * 0.5)
    high = min(parameter.maximum, max(value * 2.0, low))
    if parameter.kind is int:
        low, high = math.ceil(low), math.floor(high)
        return RangeIn(min=low, max=high, step=max(1, round((high - low) / 10)))
    return RangeIn(min=low, max=high, step=(high - low) / 10 or 1.0)


def _dimension(parameter: rules.Parameter, wanted: RangeIn) -> tuple[Dimension | None, str | None]:
    name, integer = parameter.name, parameter.kind is int

    def outside(value: float) -> bool:
        return not parameter.minimum <= value <= parameter.maximum

    if wanted.choices is not None and (wanted.min is not None or wanted.max is not None or wanted.step is not None):
        return None, f"{name}: give either choices or min, max and step"
    if wanted.choices is not None:
        if not wanted.choices:
            return None, f"{name}: choices must not be empty"
        choices = tuple(sorted(set(wanted.choices)))
        if any(outside(c) for c in choices) or (integer and not all(float(c).is_integer() for c in choices)):
            return None, f"{name}: choices must be {'whole numbers ' if integer else ''}within the parameter's bounds"
        values = tuple(parameter.kind(c) for c in choices)
        return Dimension(name, parameter.kind, values, values[0], values[-1], None, values), None
    if wanted.min is None or wanted.max is None:
        return None, f"{name}: a range needs min and max (or give choices)"
    if wanted.max < wanted.min:
        return None, f"{name}: max must not be below min"
    if wanted.step is not None and wanted.step <= 0:
        return None, f"{name}: step must be positive"
    step = wanted.step if wanted.step is not None else (1.0 if integer else (wanted.max - wanted.min) / 10 or 1.0)
    if outside(wanted.min) or outside(wanted.max):
        return None, (
            f"{name}: the range must lie within {parameter.minimum:g}..{parameter.maximum:g} "
            f"(got {wanted.min:g}..{wanted.max:g})"
        )
    if integer and not all(float(v).is_integer() for v in (wanted.min, wanted.max, step)):
        return None, f"{name}: min, max and step must be whole numbers"
    count = math.floor((wanted.max - wanted.min) / step + 1e-9) + 1
    if count > MAX_VALUES_PER_PARAMETER:
        return None, f"{name}: {count} values, at most {MAX_VALUES_PER_PARAMETER}"
    # Values on the lattice, rounded so that 0.1 steps give 0.3 and not 0.30000000000000004.
    values = tuple(parameter.kind(round(wanted.min + i * step, 12)) for i in range(count))
    return Dimension(name, parameter.kind, values, values[0], values[-1], parameter.kind(step)), None


@dataclass(frozen=True)
class Window:
    """One optimization period and, unless validation is ``none``, the period its choice is tested on."""

    index: int
    train_start: date
    train_end: date
    test_start: date | None = None
    test_end: date | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "trainStart": self.train_start.isoformat(),
            "trainEnd": self.train_end.isoformat(),
            "testStart": self.test_start.isoformat() if self.test_start else None,
            "testEnd": self.test_end.isoformat() if self.test_end else None,
        }


def windows(start: date, end: date, validation: ValidationIn) -> list[Window]:
    """The sweep's periods, split by calendar date (so that the split needs no prices of the test period)."""
    days = (end - start).days
    if validation.mode == NONE:
        return [Window(0, start, end)]
    if validation.mode == HOLDOUT:
        train_days = round(days * (1 - validation.test_fraction))
        if train_days < 1 or train_days >= days:
            raise InvalidSweep(["the range is too short to hold out a test period"])
        split = start + timedelta(days=train_days)
        return [Window(0, start, split - timedelta(days=1), split, end)]
    # Walk-forward: the range in windows + 1 equal segments; window i trains on segment i (from the start when
    # anchored) and tests on segment i + 1.
    segments = validation.windows + 1
    if days < 2 * segments:
        raise InvalidSweep([f"the range is too short for {validation.windows} walk-forward windows"])
    edges = [start + timedelta(days=round(days * k / segments)) for k in range(segments + 1)]
    edges[-1] = end + timedelta(days=1)
    return [
        Window(
            i,
            start if validation.anchored else edges[i],
            edges[i + 1] - timedelta(days=1),
            edges[i + 1],
            edges[i + 2] - timedelta(days=1),
        )
        for i in range(validation.windows)
    ]


class Plan(_Model):
    """A sweep as resolved when it is requested, stored with it: what every step of its run reads."""

    template: str
    parameters: dict[str, Any]  # the strategy's own: the values of the parameters not searched
    space: dict[str, RangeIn]
    method: Method
    metric: str
    maximize: bool
    constraints: dict[str, float]
    budget: BudgetIn
    seed: int
    config: dict[str, Any]  # the backtest config over the whole range, resolved
    validation: ValidationIn
    windows: list[dict[str, Any]]
    candidates: int  # the grid's feasible points; the lattice's size for the other methods
    # Listed parameter sets run in this order instead of points of the method (a strategy health report's
    # perturbations): a grid of exactly these.
    points: list[dict[str, Any]] | None = None
    purpose: Literal["sweep", "health"] = "sweep"

    def search_space(self) -> SearchSpace:
        return search_space(self.template, self.parameters, self.space)

    def objective(self) -> Objective:
        return Objective(self.metric, self.maximize)

    def window(self, index: int) -> Window:
        given = self.windows[index]

        def day(key: str) -> date | None:
            return date.fromisoformat(given[key]) if given[key] else None

        train_start, train_end = day("trainStart"), day("trainEnd")
        assert train_start is not None and train_end is not None  # every window trains
        return Window(index, train_start, train_end, day("testStart"), day("testEnd"))

    def planned(self, index: int) -> int:
        if self.points is not None:
            return len(self.points)
        return min(self.budget.max_trials, self.candidates) if self.method == GRID else self.budget.max_trials


def plan_of(request: OptimizationIn, template: str, own: dict[str, Any], config: dict[str, Any]) -> Plan:
    """The sweep a request asks for on a strategy and a resolved backtest config; ``InvalidSweep`` says what
    cannot be searched."""
    objective = objective_of(request.objective)
    constraints = checked_constraints(request.constraints)
    space = search_space(template, own, request.parameter_space)
    start, end = date.fromisoformat(config["startDate"]), date.fromisoformat(config["endDate"])
    periods = windows(start, end, request.validation)
    candidates = sum(1 for _ in space.grid()) if request.method == GRID else space.size
    return Plan(
        template=template,
        parameters=own,
        space={name: RangeIn.model_validate(echo) for name, echo in space.describe().items()},
        method=request.method,
        metric=objective.metric,
        maximize=objective.maximize,
        constraints=constraints,
        budget=request.budget,
        seed=request.seed,
        config=config,
        validation=request.validation,
        windows=[w.describe() for w in periods],
        candidates=candidates,
    )
