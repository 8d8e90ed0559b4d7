"""A sweep's result: the reference's ``v3`` body (trials, best candidate, budget usage, convergence,
suggestions, metadata) and what we add to it: each window's in- and out-of-sample figures, parameter
importances, and the overfitting figures of the best trial (deflated Sharpe ratio, probability of backtest
overfitting by CSCV).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from domain import backtest as backtests
from domain import metrics as measures
from domain import overfitting, trials
from domain.backtest import BacktestConfig, InsufficientData
from domain.research import Plan

VERSION = "v3"
# The result carries at most this many trials, the best first; the trial listing pages through all of them.
RESULT_TRIALS = 200
# Figures above these mark the best trial as likely overfit (suggestions).
PBO_WARNING = 0.5
DSR_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Scored:
    number: int
    score: float | None
    feasible: bool


def best_of(candidates: list[Any], maximize: bool) -> Any | None:
    """The feasible trial with the best score; the lowest number among equals (the first one found)."""
    best = None
    for trial in candidates:
        if not trial.feasible or trial.score is None:
            continue
        if (
            best is None
            or (trial.score > best.score if maximize else trial.score < best.score)
            or (trial.score == best.score and trial.number < best.number)
        ):
            best = trial
    return best


def period_config(plan: Plan, start: date, end: date) -> BacktestConfig:
    """The backtest config of one period of the sweep: the sweep's, over those dates. A trial's backtest is
    a backtest with this config."""
    return BacktestConfig.model_validate({**plan.config, "startDate": start.isoformat(), "endDate": end.isoformat()})


# --- what is computed after a window's sweep (in the process pool) -----------------------------------------


@dataclass(frozen=True)
class WindowRequest:
    plan: Plan
    index: int
    rows: list[dict[str, Any]]  # the window's recorded trials
    train: trials.Period
    test: trials.Period | None


@dataclass(frozen=True)
class WindowFigures:
    index: int
    best: dict[str, Any] | None  # the best trial's row
    importances: dict[str, float]
    deflated_sharpe: dict[str, Any] | None
    pbo: dict[str, Any] | None
    test_returns: list[float]  # the best parameters' per-bar returns over the test period
    test_metrics: dict[str, Any] | None


def window_tasks(request: WindowRequest) -> list[tuple[Callable[[Any], Any], Any]]:
    """What a window's figures take, as independent calls for the process pool (each given only what it
    reads): the importances, the probability of backtest overfitting, and the best trial's runs."""
    plan, rows = request.plan, request.rows
    history = [trials.Recorded(row["point"], _value(row), [], {}) for row in rows]
    blocked = [
        (row["blocks"]["sums"], row["blocks"]["squares"]) for row in rows if _value(row) is not None and row["blocks"]
    ]
    observations = next((row["metrics"]["barCount"] for row in rows if row["metrics"]), 0)
    best = best_of([_RowView(row) for row in rows], plan.maximize)
    sharpes = [
        row["metrics"]["sharpeRatio"]
        for row in rows
        if _value(row) is not None and row["metrics"].get("sharpeRatio") is not None
    ]
    return [
        (_importances, (plan, history)),
        (_pbo, (observations, blocked)),
        (_best_runs, (request.plan, best.row if best else None, sharpes, request.train, request.test)),
    ]


def window_figures(index: int, importances: dict[str, float], pbo: dict | None, runs: tuple) -> WindowFigures:
    best, deflated, test_returns, test_metrics = runs
    return WindowFigures(index, best, importances, deflated, pbo, test_returns, test_metrics)


def _value(row: dict[str, Any]) -> float | None:
    return row["score"] if row["state"] == "complete" else None


def _importances(arguments: tuple[Plan, list[trials.Recorded]]) -> dict[str, float]:
    plan, history = arguments
    return trials.importances(plan.search_space(), history, plan.maximize)


def _best_runs(arguments: tuple) -> tuple:
    """The best trial's row, its deflated Sharpe ratio, and its returns and metrics over the test period."""
    plan, best, sharpes, train, test = arguments
    if best is None:
        return None, None, [], None
    deflated = _deflated_sharpe(plan, train, best, sharpes)
    test_returns, test_metrics = _test_run(test, plan.template, best["parameters"]) if test is not None else ([], None)
    return best, deflated, test_returns, test_metrics


@dataclass(frozen=True)
class _RowView:
    row: dict[str, Any]

    @property
    def number(self) -> int:
        return self.row["number"]

    @property
    def score(self) -> float | None:
        return self.row["score"]

    @property
    def feasible(self) -> bool:
        return self.row["feasible"]


def _deflated_sharpe(
    plan: Plan, train: trials.Period, best: dict[str, Any], sharpes: list[float]
) -> dict[str, Any] | None:
    """The best trial's Sharpe ratio deflated by the number of trials and the spread of their Sharpe ratios."""
    periods = train.config.periods_per_year or 1
    per_period = [sharpe / math.sqrt(periods) for sharpe in sharpes]
    if len(per_period) < 2:
        return None
    ran = backtests.evaluate(train.bars, plan.template, best["parameters"], train.config)
    figures = overfitting.deflated_sharpe_ratio(
        measures.returns_of(ran.outcome.equity),
        trials=len(per_period),
        sharpe_variance=float(np.var(per_period, ddof=1)),
    )
    if figures is None:
        return None
    return {
        "deflatedSharpeRatio": figures.deflated_sharpe,
        "sharpeRatio": figures.sharpe,
        "expectedMaximumSharpe": figures.benchmark_sharpe,
        "trials": figures.trials,
        "observations": figures.observations,
        "skewness": figures.skewness,
        "kurtosis": figures.kurtosis,
        "perPeriod": True,
    }


def _pbo(arguments: tuple[int, list[tuple[list[float], list[float]]]]) -> dict[str, Any] | None:
    observations, blocked = arguments
    if len(blocked) < 2:
        return None
    counts = overfitting.block_counts(observations, trials.CSCV_BLOCKS)
    stats = overfitting.BlockStats.stack(counts, [sums for sums, _ in blocked], [squares for _, squares in blocked])
    found = overfitting.probability_of_backtest_overfitting(stats)
    if found is None:
        return None
    return {
        "probability": found.pbo,
        "combinations": found.combinations,
        "blocks": found.blocks,
        "trials": found.trials,
        "medianLogit": found.median_logit,
        "performanceDegradation": found.performance_degradation,
        "probabilityOfLoss": found.probability_of_loss,
    }


def _test_run(test: trials.Period, template: str, parameters: dict[str, Any]) -> tuple[list[float], dict | None]:
    try:
        ran = backtests.evaluate(test.bars, template, parameters, test.config)
    except InsufficientData:
        return [], None
    return measures.returns_of(ran.outcome.equity).tolist(), ran.metrics


# --- the body -----------------------------------------------------------------------------------------------


def body(
    plan: Plan, rows: list[dict[str, Any]], windows: list[WindowFigures], stop_reason: str, used_duration_ms: int
) -> dict[str, Any]:
    """The ``v3`` result of a sweep from its recorded trials and each window's figures. The best candidate is
    the last window's best: the parameters to trade next (with one window, the sweep's best)."""
    last = windows[-1] if windows else None
    best = last.best if last is not None else None
    direction = "maximize" if plan.maximize else "minimize"
    shown = sorted(rows, key=lambda row: _rank(row, plan.maximize))[:RESULT_TRIALS]
    return {
        "version": VERSION,
        "method": plan.method,
        "objective": {"metric": plan.metric, "direction": direction},
        "trials": [_trial(row, plan) for row in sorted(shown, key=lambda row: (row["window"], row["number"]))],
        "trialCount": len(rows),
        "bestCandidate": _candidate(best, plan, last) if best is not None and last is not None else None,
        "metrics": best["metrics"] if best is not None else None,
        "score": best["score"] if best is not None else None,
        "budgetUsage": _budget(plan, rows, used_duration_ms),
        "convergence": _convergence(stop_reason, best, rows, plan),
        "validation": _validation(plan, windows),
        "importances": last.importances if last is not None else {},
        "overfitting": {
            "deflatedSharpe": last.deflated_sharpe if last is not None else None,
            "probabilityOfBacktestOverfitting": last.pbo if last is not None else None,
        },
        "suggestions": _suggestions(plan, best, last),
        "metadata": {
            "taskLatencyMs": used_duration_ms,
            "constraintsKeys": sorted(plan.constraints),
            "seed": plan.seed,
            "template": plan.template,
            "symbol": plan.config.get("symbol"),
            "timeframe": plan.config.get("timeframe"),
            "inputEcho": {
                "method": plan.method,
                "objective": {"metric": plan.metric, "direction": direction},
                "parameterSpace": {n: r.model_dump(exclude_none=True) for n, r in plan.space.items()},
                "constraints": plan.constraints,
                "budget": plan.budget.model_dump(by_alias=True),
                "validation": plan.validation.model_dump(by_alias=True),
                "config": plan.config,
            },
        },
    }


def _rank(row: dict[str, Any], maximize: bool) -> tuple:
    """Best first: feasible scored trials by score, then the rest, by number."""
    scored = row["feasible"] and row["score"] is not None
    score = row["score"] if scored else 0.0
    return (not scored, -score if maximize else score, row["window"], row["number"])


def trial_id(window: int, number: int) -> str:
    return f"w{window}-t{number}"


def _trial(row: dict[str, Any], plan: Plan) -> dict[str, Any]:
    return {
        "trialId": trial_id(row["window"], row["number"]),
        "number": row["number"],
        "window": row["window"],
        "method": plan.method,
        "parameters": row["parameters"],
        "metric": plan.metric,
        "score": row["score"],
        "feasible": row["feasible"],
        "violations": row["violations"] if row["state"] == "complete" else [row["error"] or "failed"],
        "state": row["state"],
        "metrics": row["metrics"],
        "testMetrics": row["test_metrics"],
    }


def _candidate(best: dict[str, Any], plan: Plan, window: WindowFigures) -> dict[str, Any]:
    return {**_trial(best, plan), "testMetrics": window.test_metrics or best["test_metrics"]}


def _budget(plan: Plan, rows: list[dict[str, Any]], used_duration_ms: int) -> dict[str, Any]:
    planned = sum(plan.planned(i) for i in range(len(plan.windows)))
    return {
        "usedTrials": len(rows),
        "remainingTrials": max(0, planned - len(rows)),
        "usedDurationMs": used_duration_ms,
        "maxTrials": plan.budget.max_trials,
        "maxDurationSeconds": plan.budget.max_duration_seconds,
        "totalCandidates": plan.candidates,
    }


def _convergence(stop_reason: str, best: dict[str, Any] | None, rows: list[dict[str, Any]], plan: Plan) -> dict:
    status = {
        "parameter_space_exhausted": "converged",
        "early_stop_score_reached": "converged",
        "cancelled": "cancelled",
    }.get(stop_reason, "budget_exhausted")
    history, best_so_far = [], None
    for row in rows:  # the best score after each trial of the last window, for the optimization history
        if row["window"] != len(plan.windows) - 1:
            continue
        if row["feasible"] and row["score"] is not None and plan.objective().better(row["score"], best_so_far):
            best_so_far = row["score"]
        history.append(best_so_far)
    return {
        "status": status,
        "earlyStopReason": stop_reason,
        "bestScore": best["score"] if best is not None else None,
        "bestSoFar": history,
    }


def _validation(plan: Plan, windows: list[WindowFigures]) -> dict[str, Any]:
    described = []
    for figures in windows:
        best = figures.best
        described.append(
            {
                **plan.windows[figures.index],
                "bestTrialId": trial_id(best["window"], best["number"]) if best else None,
                "bestParameters": best["parameters"] if best else None,
                "inSample": best["metrics"] if best else None,
                "outOfSample": figures.test_metrics,
            }
        )
    stitched = [r for figures in windows for r in figures.test_returns]
    out_of_sample = None
    if stitched:
        periods = int(plan.config.get("periodsPerYear") or measures.TRADING_DAYS)
        equity = np.concatenate(([1.0], np.cumprod(1.0 + np.asarray(stitched))))
        out_of_sample = {
            key: _finite(value)
            for key, value in measures.summary(equity, [], np.zeros(0), periods).items()
            if key not in ("tradeCount", "winRate", "profitFactor", "expectancy", "sqn", "exposure")
        }
        out_of_sample["barCount"] = len(stitched)
    return {
        "mode": plan.validation.mode,
        "windows": described,
        # Holdout: the best trial over the test period; walk-forward: each window's choice over its test period,
        # stitched in time order.
        "outOfSample": out_of_sample,
        "inSample": windows[-1].best["metrics"] if windows and windows[-1].best else None,
    }


def _suggestions(plan: Plan, best: dict[str, Any] | None, last: WindowFigures | None) -> list[dict[str, Any]]:
    direction = "maximize" if plan.maximize else "minimize"
    if best is None:
        return [
            {
                "code": "NO_FEASIBLE_TRIAL",
                "message": "no trial met the constraints with a defined score: widen the space or relax them",
                "metric": plan.metric,
                "direction": direction,
            }
        ]
    found = [
        {
            "code": "APPLY_BEST_PARAMETERS",
            "message": f"the best {plan.metric} ({best['score']:.6g}) came from these parameters",
            "metric": plan.metric,
            "direction": direction,
            "parameters": best["parameters"],
        }
    ]
    pbo = last.pbo if last is not None else None
    deflated = last.deflated_sharpe if last is not None else None
    if (pbo and pbo["probability"] > PBO_WARNING) or (deflated and deflated["deflatedSharpeRatio"] < DSR_CONFIDENCE):
        found.append(
            {
                "code": "OVERFIT_RISK",
                "message": "the best trial may owe its score to selection among many trials: check it out of sample",
                "metric": plan.metric,
                "direction": direction,
            }
        )
    return found


def summary_line(result: dict[str, Any]) -> str:
    best = result["bestCandidate"]
    described = f"best {best['trialId']} {result['objective']['metric']}={best['score']:.6g}" if best else "no best"
    return f"sweep of {result['trialCount']} trials ({result['convergence']['earlyStopReason']}): {described}"


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
