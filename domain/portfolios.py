"""Portfolios (reference §2.3): strategies at weights under constraints, the portfolio's read model built from
its members' backtests, and rebalancing proposals. Pure: no I/O.

Definitions (the reference names the outputs; where it faked them, these are the real computations):

- Weights are fractions of capital. ``maxTotalWeight`` bounds their sum, ``maxSingleWeight`` each one; both are
  in (0, MAX_WEIGHT] with single ≤ total, and every weight is > 0.
- A member's run is its strategy's latest completed backtest. Its per-bar returns are put on calendar dates
  (UTC) of its equity curve's timestamps, compounded within a date, so daily and intraday runs align.
- ``averagePnl`` of the reference is a member's ``returnRate`` (the backtest's total return, a fraction),
  not its ``expectancy`` (a currency amount per trade, which does not compare across capitals).
- ``performanceSummary``: ``weightedAveragePnl`` = Σ wᵢ·returnRateᵢ / Σ wᵢ and ``weightedMaxDrawdown`` =
  Σ wᵢ·|maxDrawdownᵢ| / Σ wᵢ over the members that have a run; ``totalWeight`` is all members' weight.
- ``combined``: the portfolio held at constant weights (rebalanced every date) over the dates all members'
  runs share, r_t = Σ wᵢ·rᵢ,t, the rest of the capital (1 − the weight of members with a run) in cash at 0;
  its metrics are domain/metrics.py's over those returns, equity starting at 1.
- ``correlationSummary``: ``averageCorrelation`` is the mean of the pairwise Pearson correlations of the
  members' daily returns over the shared dates (a pair with a flat member has none, and is left out);
  ``dispersion`` is the weighted standard deviation of the members' returnRate around their weighted mean,
  sqrt(Σ wᵢ (xᵢ − x̄)² / Σ wᵢ) with x̄ = Σ wᵢ xᵢ / Σ wᵢ.
- Evaluation adds ``riskSummary{riskScore = weightedMaxDrawdown, status ok (≤ 0.3) | warn}``.
- Rebalancing methods: ``score`` (the reference's max(0.0001, 1 + returnRate − 2.5·|maxDrawdown|)),
  ``equal``, ``inverse_volatility`` (1 / annualized volatility over the shared dates), ``risk_parity`` (equal
  risk contributions wᵢ(Σw)ᵢ from the covariance of the daily returns over the shared dates) and ``target``
  (explicit weights; members not named keep theirs). Raw scores fill ``maxTotalWeight``; explicit weights
  keep their sum (at most ``maxTotalWeight``). Either way the result is projected into the constraints:
  each at most ``maxSingleWeight``, the excess of a capped member given to the uncapped ones in proportion
  to their weights. A member a method cannot rank (no run; no volatility) keeps its weight, and the others
  share what remains of ``maxTotalWeight``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from domain import metrics

DRAFT, ACTIVE, ARCHIVED = "draft", "active", "archived"
STATUSES = (DRAFT, ACTIVE, ARCHIVED)
TRANSITIONS: dict[str, frozenset[str]] = {
    DRAFT: frozenset({ACTIVE, ARCHIVED}),
    ACTIVE: frozenset({DRAFT, ARCHIVED}),
    ARCHIVED: frozenset(),
}
MAX_WEIGHT = 10.0  # a constraint above 1000% of capital is a typing error, not a portfolio
MAX_MEMBERS = 50
TOLERANCE = 1e-9  # sums of weights are compared with this slack (floating-point addition)
DIGITS = 12  # proposed weights are rounded to this many decimals
MIN_SCORE = 0.0001
DRAWDOWN_PENALTY = 2.5
RISK_WARN_ABOVE = 0.3
DEFAULT_PERIODS = metrics.TRADING_DAYS

RebalanceMethod = Literal["score", "equal", "inverse_volatility", "risk_parity", "target"]
METHODS: tuple[str, ...] = ("score", "equal", "inverse_volatility", "risk_parity", "target")
# Why a method left a member at its weight.
NO_RUN, NO_VOLATILITY = "no_completed_backtest", "no_volatility"


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


class PortfolioRuleError(ValueError):
    code = "PORTFOLIO_INVALID"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class InvalidConstraints(PortfolioRuleError):
    code = "PORTFOLIO_INVALID_CONSTRAINTS"


class InvalidWeights(PortfolioRuleError):
    code = "PORTFOLIO_INVALID_WEIGHTS"


@dataclass(frozen=True)
class Constraints:
    max_total_weight: float = 1.0
    max_single_weight: float = 1.0

    def check(self) -> Constraints:
        """Itself, or InvalidConstraints naming each problem."""
        problems = []
        for name, value in (("maxTotalWeight", self.max_total_weight), ("maxSingleWeight", self.max_single_weight)):
            if not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be greater than 0")
            elif value > MAX_WEIGHT:
                problems.append(f"{name} must be at most {MAX_WEIGHT:g}")
        if not problems and self.max_single_weight > self.max_total_weight:
            problems.append("maxSingleWeight must not exceed maxTotalWeight")
        if problems:
            raise InvalidConstraints(problems)
        return self


def check_weights(weights: Mapping[str, float], constraints: Constraints) -> None:
    """InvalidWeights unless every weight is > 0 and within maxSingleWeight, and their sum within
    maxTotalWeight."""
    problems = []
    for strategy_id, weight in weights.items():
        if not math.isfinite(weight) or weight <= 0:
            problems.append(f"the weight of {strategy_id} must be greater than 0")
        elif weight > constraints.max_single_weight + TOLERANCE:
            problems.append(f"the weight of {strategy_id} exceeds maxSingleWeight {constraints.max_single_weight:g}")
    if not problems:  # each is now at most maxSingleWeight: the sum is finite
        total = math.fsum(weights.values())
        if total > constraints.max_total_weight + TOLERANCE:
            problems.append(f"the weights sum to {total:g}, above maxTotalWeight {constraints.max_total_weight:g}")
    if problems:
        raise InvalidWeights(problems)


def total_weight(weights: Sequence[float]) -> float:
    return round(math.fsum(weights), DIGITS)


def project(weights: Mapping[str, float], constraints: Constraints, *, fill: bool) -> dict[str, float]:
    """Weights within the constraints, in the same order: scaled to ``maxTotalWeight`` (``fill``) or to their
    own sum if that is below it, then each capped at ``maxSingleWeight`` with the excess shared by the uncapped
    ones in proportion to their weights, until none is above it. When every member is capped, the sum is
    members × maxSingleWeight and the rest stays in cash. Negative inputs count as 0; with ``fill``, all zeros
    become equal weights."""
    raw = {key: max(0.0, float(value)) for key, value in weights.items()}
    if not raw:
        return {}
    total = math.fsum(raw.values())
    if total <= 0:
        if not fill:
            return dict.fromkeys(raw, 0.0)
        raw, total = dict.fromkeys(raw, 1.0), float(len(raw))
    single = constraints.max_single_weight
    remaining = constraints.max_total_weight if fill else min(total, constraints.max_total_weight)
    result: dict[str, float] = {}
    free = {key: value for key, value in raw.items() if value > 0}
    while free:
        scale = remaining / math.fsum(free.values())
        over = [key for key, value in free.items() if value * scale > single]
        if not over:
            result.update({key: value * scale for key, value in free.items()})
            break
        for key in over:
            result[key] = single
            del free[key]
        remaining = max(0.0, remaining - single * len(over))
    return {key: result.get(key, 0.0) for key in raw}


def herfindahl(weights: Sequence[float]) -> float | None:
    """Σ sᵢ² of the shares sᵢ = wᵢ / Σ w: 1/n for n equal weights, 1 for one member; None without weight."""
    total = math.fsum(weights)
    return None if total <= 0 else math.fsum((w / total) ** 2 for w in weights)


# --- job payloads ----------------------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)


class EvaluatePayload(_Payload):
    """``portfolio_evaluate``: the portfolio's read model with its risk summary, as the job's result."""

    portfolio_id: str = Field(min_length=1, max_length=100)


class RebalancePayload(_Payload):
    """``portfolio_rebalance``: a proposal of target weights; ``apply`` also writes them (one new version)."""

    portfolio_id: str = Field(min_length=1, max_length=100)
    method: RebalanceMethod = "score"
    target_weights: dict[str, float] | None = Field(default=None, max_length=MAX_MEMBERS)
    apply: bool = False

    @model_validator(mode="after")
    def _target_weights_go_with_target(self) -> RebalancePayload:
        if (self.method == "target") != (self.target_weights is not None):
            raise ValueError("targetWeights is given with method 'target' (or no method), and only then")
        return self


# --- the members' runs and the portfolio's read model ------------------------------------------------------


@dataclass(frozen=True)
class MemberRun:
    """What a member's latest completed backtest contributes."""

    backtest_id: str
    metrics: dict[str, Any]
    daily: pd.Series  # returns by UTC date (compounded within a date), in date order
    periods_per_date: float  # periods per year of the daily series (252 for daily bars of equities)

    @classmethod
    def of(cls, backtest_id: str, body: Mapping[str, Any]) -> MemberRun:
        """From a result body: ``equityCurve`` [{timestamp, ...}] and ``dailyReturns`` (the same length, the
        return ending at each point; an undefined one counts as 0) and ``metrics``."""
        curve = body["equityCurve"]
        returns = [0.0 if r is None else float(r) for r in body["dailyReturns"]]
        dates = [str(point["timestamp"])[:10] for point in curve]
        count = min(len(dates), len(returns))
        series = pd.Series(returns[:count], index=pd.Index(dates[:count], name="date"), dtype=float)
        daily = (1.0 + series).groupby(level=0, sort=True).prod() - 1.0
        run_metrics = dict(body.get("metrics") or {})
        periods = run_metrics.get("periodsPerYear") or DEFAULT_PERIODS
        bars_per_date = count / len(daily) if len(daily) else 1.0
        return cls(backtest_id, run_metrics, daily, float(periods) / bars_per_date)


@dataclass(frozen=True)
class Holding:
    strategy_id: str
    weight: float


@dataclass(frozen=True)
class PortfolioState:
    id: str
    name: str
    status: str
    version: int
    constraints: Constraints
    holdings: tuple[Holding, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, portfolio: Any, members: Sequence[Any]) -> PortfolioState:
        """From a portfolio's row and its members' rows (anything with their attributes)."""
        return cls(
            id=portfolio.id,
            name=portfolio.name,
            status=portfolio.status,
            version=portfolio.version,
            constraints=Constraints(portfolio.max_total_weight, portfolio.max_single_weight),
            holdings=tuple(Holding(m.strategy_id, m.weight) for m in members),
        )

    def weights(self) -> dict[str, float]:
        return {h.strategy_id: h.weight for h in self.holdings}


HEADLINE = ("returnRate", "cagr", "annualVolatility", "sharpeRatio", "sortinoRatio", "maxDrawdown", "winRate")


def _number(value: Any) -> float | None:
    """A finite float, or None: JSON has no NaN."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _weighted_mean(pairs: list[tuple[float, float]]) -> float | None:
    """Σ wᵢxᵢ / Σ wᵢ over (weight, value) pairs; None without weight."""
    weight = math.fsum(w for w, _ in pairs)
    return None if weight <= 0 else math.fsum(w * x for w, x in pairs) / weight


def aligned_returns(runs: Mapping[str, MemberRun]) -> pd.DataFrame:
    """One column of daily returns per member (in the given order), over the dates every one of them has."""
    if not runs:
        return pd.DataFrame()
    return pd.concat({key: run.daily for key, run in runs.items()}, axis=1, join="inner").sort_index()


def correlation_summary(
    frame: pd.DataFrame, weights: Mapping[str, float], runs: Mapping[str, MemberRun]
) -> dict[str, Any]:
    pairs: list[tuple[str, str, float | None]] = []
    if frame.shape[1] >= 2 and len(frame) >= 2:
        matrix = frame.corr(method="pearson")
        columns = [str(c) for c in frame.columns]
        for i, first in enumerate(columns):
            for second in columns[i + 1 :]:
                pairs.append((first, second, _number(matrix.loc[first, second])))
    defined = [c for _, _, c in pairs if c is not None]
    rates = [(weights[key], _number(run.metrics.get("returnRate"))) for key, run in runs.items()]
    known = [(w, x) for w, x in rates if x is not None]
    centre = _weighted_mean(known)
    dispersion = None
    if centre is not None:
        dispersion = math.sqrt(max(0.0, _weighted_mean([(w, (x - centre) ** 2) for w, x in known]) or 0.0))
    return {
        "averageCorrelation": math.fsum(defined) / len(defined) if defined else None,
        "dispersion": dispersion,
        "pairs": [{"strategyIds": [a, b], "correlation": c} for a, b, c in pairs],
        "sharedDates": len(frame),
    }


def combined(frame: pd.DataFrame, weights: Mapping[str, float], runs: Mapping[str, MemberRun]) -> dict[str, Any] | None:
    """The portfolio at constant weights over the shared dates, cash for what its members' runs do not hold."""
    if frame.empty or len(frame) == 0:
        return None
    w = np.array([weights[key] for key in frame.columns], dtype=float)
    returns = frame.to_numpy(dtype=float) @ w
    equity = np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    periods = max(1, round(median(run.periods_per_date for run in runs.values())))
    drawdown = metrics.max_drawdown(equity)
    values = {
        "returnRate": metrics.total_return(returns),
        "cagr": metrics.cagr(returns, periods),
        "annualVolatility": metrics.annual_volatility(returns, periods),
        "sharpeRatio": metrics.sharpe_ratio(returns, periods),
        "sortinoRatio": metrics.sortino_ratio(returns, periods),
        "maxDrawdown": drawdown,
        "calmarRatio": metrics.calmar_ratio(returns, drawdown, periods),
    }
    return {
        "sharedDates": len(frame),
        "startDate": str(frame.index[0]),
        "endDate": str(frame.index[-1]),
        "cashWeight": round(1.0 - math.fsum(w), DIGITS),
        "periodsPerYear": periods,
        "equityCurve": [
            {"date": str(date), "equity": float(value)} for date, value in zip(frame.index, equity[1:], strict=True)
        ],
        "metrics": {key: _number(value) for key, value in values.items()},
    }


def read_model(state: PortfolioState, runs: Mapping[str, MemberRun]) -> dict[str, Any]:
    """The portfolio's read model (camelCase, JSON-ready) from its members' runs (strategy id → run)."""
    weights = state.weights()
    present = {h.strategy_id: runs[h.strategy_id] for h in state.holdings if h.strategy_id in runs}
    members = []
    for holding in state.holdings:
        run = present.get(holding.strategy_id)
        if run is None:
            continue
        members.append(
            {
                "strategyId": holding.strategy_id,
                "weight": holding.weight,
                "backtestId": run.backtest_id,
                **{name: _number(run.metrics.get(name)) for name in HEADLINE},
                "tradeCount": _count(run.metrics.get("tradeCount")),
            }
        )
    pnl = [(weights[key], _number(run.metrics.get("returnRate"))) for key, run in present.items()]
    drawdown = [(weights[key], _number(run.metrics.get("maxDrawdown"))) for key, run in present.items()]
    frame = aligned_returns(present)
    return {
        "portfolioId": state.id,
        "name": state.name,
        "status": state.status,
        "version": state.version,
        "constraints": {
            "maxTotalWeight": state.constraints.max_total_weight,
            "maxSingleWeight": state.constraints.max_single_weight,
        },
        "totalWeight": total_weight(list(weights.values())),
        "members": members,
        "missing": [h.strategy_id for h in state.holdings if h.strategy_id not in present],
        "performanceSummary": {
            "weightedAveragePnl": _weighted_mean([(w, x) for w, x in pnl if x is not None]),
            "weightedMaxDrawdown": _weighted_mean([(w, abs(x)) for w, x in drawdown if x is not None]),
            "totalWeight": total_weight(list(weights.values())),
            "evaluatedWeight": total_weight([weights[key] for key in present]),
            "evaluatedCount": len(present),
        },
        "combined": combined(frame, weights, present),
        "correlationSummary": correlation_summary(frame, weights, present),
    }


def evaluation(state: PortfolioState, runs: Mapping[str, MemberRun]) -> dict[str, Any]:
    """The read model with its risk summary: what ``portfolio_evaluate`` stores."""
    model = read_model(state, runs)
    score = model["performanceSummary"]["weightedMaxDrawdown"]
    status = "unknown" if score is None else "ok" if score <= RISK_WARN_ABOVE else "warn"
    return {**model, "riskSummary": {"riskScore": score, "status": status}}


# --- rebalancing -------------------------------------------------------------------------------------------


def risk_parity_weights(covariance: np.ndarray, *, iterations: int = 1000, tolerance: float = 1e-12) -> np.ndarray:
    """Weights (summing to 1) with equal risk contributions wᵢ(Σw)ᵢ, by cyclical coordinate descent on
    ½ yᵀΣy − (1/n) Σ ln yᵢ (Griveau-Billion, Richard and Roncalli, 2013), whose minimum y* gives w = y*/Σy*.
    Each step solves its coordinate exactly: Σᵢᵢ yᵢ² + cᵢ yᵢ − 1/n = 0 with cᵢ = Σ_{j≠i} Σᵢⱼ yⱼ. Needs
    Σᵢᵢ > 0 for every i; the minimum is unique, so the iteration converges from inverse volatilities."""
    cov = np.asarray(covariance, dtype=float)
    n = len(cov)
    budget = 1.0 / n
    diagonal = np.diag(cov).copy()
    y = 1.0 / np.sqrt(diagonal * n)
    for _ in range(iterations):
        before = y.copy()
        for i in range(n):
            cross = float(cov[i] @ y - diagonal[i] * y[i])
            y[i] = (-cross + math.sqrt(cross * cross + 4.0 * diagonal[i] * budget)) / (2.0 * diagonal[i])
        if np.max(np.abs(y - before) / before) < tolerance:
            break
    return y / y.sum()


def check_targets(current: Mapping[str, float], given: Mapping[str, float]) -> dict[str, float]:
    """Explicit target weights, or InvalidWeights: each names a member and is in (0, MAX_WEIGHT] (a weight
    above maxSingleWeight is then capped by the projection)."""
    problems = [f"{key} is not a member of the portfolio" for key in given if key not in current]
    problems += [
        f"the weight of {key} must be greater than 0 and at most {MAX_WEIGHT:g}"
        for key, w in given.items()
        if not (math.isfinite(w) and 0 < w <= MAX_WEIGHT)
    ]
    if problems:
        raise InvalidWeights(problems)
    return dict(given)


def _scores(
    method: str, present: Mapping[str, MemberRun], frame: pd.DataFrame
) -> tuple[dict[str, float], dict[str, str]]:
    """Raw scores of the members a data method can rank, and why the others are left at their weight."""
    skipped: dict[str, str] = {}
    if method == "score":
        scores = {}
        for key, run in present.items():
            rate = _number(run.metrics.get("returnRate")) or 0.0
            drawdown = abs(_number(run.metrics.get("maxDrawdown")) or 0.0)
            scores[key] = max(MIN_SCORE, 1.0 + rate - DRAWDOWN_PENALTY * drawdown)
        return scores, skipped
    periods = max(1, round(median(run.periods_per_date for run in present.values()))) if present else 1
    volatility = {
        key: metrics.annual_volatility(frame[key].to_numpy(dtype=float), periods) if len(frame) >= 2 else None
        for key in present
    }
    usable = [key for key in present if volatility[key]]
    skipped.update({key: NO_VOLATILITY for key in present if key not in usable})
    if method == "inverse_volatility":
        return {key: 1.0 / float(volatility[key] or 1.0) for key in usable}, skipped
    if not usable:
        return {}, skipped
    covariance = frame[usable].cov().to_numpy(dtype=float)
    weights = risk_parity_weights(covariance)
    return dict(zip(usable, (float(w) for w in weights), strict=True)), skipped


def rebalance(
    state: PortfolioState,
    runs: Mapping[str, MemberRun],
    method: str,
    target_weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A proposal (camelCase, JSON-ready): target weights within the constraints, each member's adjustment,
    the members a method could not rank, and the concentration of the result. InvalidWeights when explicit
    target weights name a strategy that is not a member or are not all > 0."""
    current = state.weights()
    constraints = state.constraints
    skipped: dict[str, str] = {}
    if method == "target":
        given = check_targets(current, target_weights or {})
        targets = project({**current, **given}, constraints, fill=False)
    elif method == "equal":
        targets = project(dict.fromkeys(current, 1.0), constraints, fill=True)
    else:
        present = {key: runs[key] for key in current if key in runs}
        skipped.update({key: NO_RUN for key in current if key not in present})
        scores, unranked = _scores(method, present, aligned_returns(present))
        skipped.update(unranked)
        kept = {key: current[key] for key in current if key not in scores}
        budget = constraints.max_total_weight - math.fsum(kept.values())
        shared: dict[str, float] = {}
        if scores and budget > TOLERANCE:
            room = Constraints(budget, min(constraints.max_single_weight, budget))
            shared = project(scores, room, fill=True)
        else:  # nothing left to share: every member keeps its weight
            kept = dict(current)
        targets = {key: shared.get(key, kept.get(key, 0.0)) for key in current}
    targets = {key: round(value, DIGITS) for key, value in targets.items()}
    return {
        "portfolioId": state.id,
        "version": state.version,
        "method": method,
        "targetWeights": targets,
        "adjustments": [
            {
                "strategyId": key,
                "fromWeight": current[key],
                "toWeight": targets[key],
                "delta": round(targets[key] - current[key], DIGITS),
            }
            for key in current
        ],
        "skipped": [{"strategyId": key, "reason": reason} for key, reason in skipped.items()],
        "riskSummary": {
            "concentration": herfindahl(list(targets.values())),
            "totalTargetWeight": total_weight(list(targets.values())),
            "maxAllowedWeight": constraints.max_total_weight,
            "maxSingleWeight": constraints.max_single_weight,
        },
        "applied": False,
        "appliedVersion": None,
    }
