"""Strategy health (reference §2.11): how a strategy's return holds up when its parameters move and when it
meets prices it was not fitted on.

A report is a research sweep whose trials are chosen points (``Plan.points``, ``purpose="health"``): the
strategy's own parameters first, then each parameter moved by -50%, -20%, -10%, +10%, +20% and +50% with the
others kept. Every trial is a backtest over the first 70% of the range (in sample, ``metrics``) and over the
rest (out of sample, ``testMetrics``). A perturbation that cannot run (the same value once rounded, out of the
parameter's bounds, or breaking a rule of the template such as shortWindow < longWindow) is skipped and named
in the warnings; it never fails the report (the reference failed the whole report on it).

The report is computed from the sweep's result (``report_of``), so it is always that of the trials recorded:

- baseline: the trial of the strategy's own parameters; ``inSampleReturn`` and ``outSampleReturn`` are its
  ``returnRate`` in and out of sample, ``tradeCount``, ``maxDrawdown`` and ``sharpeRatio`` its in-sample ones;
- ``returnRatio`` = outSampleReturn / inSampleReturn when inSampleReturn > 0, bounded to ±100 (a finite
  number however small the denominator); 0 when inSampleReturn ≤ 0: a strategy that earned nothing in
  sample has no edge that the test period could confirm;
- a parameter is rated HIGH when a variation's return deviates from the baseline's by more than 30% of
  |baseline| (0.01 when the baseline return is 0), else LOW; ``changePercent`` is the deviation in percent of
  |baseline| (in percentage points when the baseline is 0);
- score = 100·(0.4·sensitivity + 0.4·clip(returnRatio, 0, 1) + 0.2·min(tradeCount / 30, 1)), sensitivity the
  share of LOW among the parameters that had a variation to run (0 when none had); ``overallScore`` is
  rounded to one decimal and ``overfitRisk`` banded from it: ≥ 80 LOW, ≥ 60 MEDIUM, ≥ 40 HIGH, else CRITICAL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from domain import research
from domain import strategies as rules

# (label, fraction of the value), in the order the variations are listed.
PERTURBATIONS = (("-50%", -0.5), ("-20%", -0.2), ("-10%", -0.1), ("+10%", 0.1), ("+20%", 0.2), ("+50%", 0.5))
TEST_FRACTION = 0.3  # the reference's 70/30 split
METRIC = "returnRate"
SENSITIVE_SHARE = 0.3  # of |baseline return|: a larger deviation rates a parameter HIGH
ZERO_BASELINE_DEVIATION = 0.01  # the deviation that rates a parameter HIGH when the baseline return is 0
RATIO_BOUND = 100.0
FULL_TRADES = 30  # trades that earn the whole trade component of the score
FEW_TRADES = 10  # fewer add a warning
LOW_RATIO = 0.5  # out of sample keeping less than this share of the in-sample return adds a warning
WEIGHTS = {"sensitivity": 0.4, "returnRatio": 0.4, "trades": 0.2}
BANDS = ((80.0, "LOW"), (60.0, "MEDIUM"), (40.0, "HIGH"))
CRITICAL = "CRITICAL"
# Job error codes that mean the bars were missing or too few (answered NO_MARKET_DATA).
NO_DATA_CODES = frozenset({"BACKTEST_HISTORY_UNAVAILABLE", "BACKTEST_INSUFFICIENT_DATA"})


class HealthPayload(BaseModel):
    """A health report's job: the request as it was sent, and the strategy it is for when it names one (also a
    search attribute); the report's rows hold it resolved."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    strategy_id: str | None = Field(default=None, min_length=1, max_length=80)
    request: dict[str, Any]


class ReportUnavailable(ValueError):
    """A finished sweep from which no report can be made (the baseline could not run in one of the periods)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Perturbation:
    parameter: str
    label: str  # "-50%" … "+50%"
    value: int | float  # the perturbed value, rounded for an int parameter
    skipped: str | None = None  # why it does not run (a warning); None when it runs

    def stored(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "perturbation": self.label, "value": self.value, "skipped": self.skipped}


def _rounded(parameter: rules.Parameter, value: float) -> int | float:
    if parameter.kind is int:
        return int(math.floor(value + 0.5))  # half up (the values are positive), not to the even neighbour
    return round(value, 10)  # 2.2, not 2.2000000000000006


def perturbations(template_id: str, original: dict[str, Any]) -> list[Perturbation]:
    """Every perturbation of every parameter of the template, in its order, each runnable or skipped saying
    why. ``original`` is a validated parameter set of the template."""
    template = rules.TEMPLATES[template_id]
    found = []
    for parameter in template.parameters:
        name, value = parameter.name, original[parameter.name]
        for label, fraction in PERTURBATIONS:
            moved = _rounded(parameter, value * (1 + fraction))
            found.append(Perturbation(name, label, moved, _skipped(template, parameter, original, label, moved)))
    return found


def _skipped(
    template: rules.Template, parameter: rules.Parameter, original: dict[str, Any], label: str, moved: int | float
) -> str | None:
    name, value = parameter.name, original[parameter.name]
    if value == 0:
        return f"参数 {name} 的取值为 0，按比例扰动不改变它，未做扰动"
    if moved == value:
        return f"参数 {name} 扰动 {label} 后取值仍为 {_shown(moved)}，已跳过"
    if not parameter.minimum <= moved <= parameter.maximum:
        return (
            f"参数 {name} 扰动 {label} 后取值 {_shown(moved)} 超出允许范围 "
            f"[{_shown(parameter.minimum)}, {_shown(parameter.maximum)}]，已跳过"
        )
    changed = {**original, name: moved}
    for smaller, larger in template.ordering:
        if name in (smaller, larger) and not changed[smaller] < changed[larger]:
            return (
                f"参数 {name} 扰动 {label} 后取值 {_shown(moved)} 违反约束 {smaller} < {larger}"
                f"（{smaller}={_shown(changed[smaller])}, {larger}={_shown(changed[larger])}），已跳过"
            )
    try:
        rules.validate_parameters(template.id, changed, fill_defaults=False)
    except rules.ParameterError as error:  # a rule of the template not known here
        return f"参数 {name} 扰动 {label} 后取值 {_shown(moved)} 无效（{error}），已跳过"
    return None


def _shown(value: float) -> str:
    return f"{value:g}"


def _key(parameters: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """A parameter set's identity, ints and floats alike (5 and 5.0 are one value)."""
    return tuple(sorted((name, float(value)) for name, value in parameters.items()))


def points_of(original: dict[str, Any], layout: list[Perturbation]) -> list[dict[str, Any]]:
    """The trials' parameter sets: the original first, then each runnable perturbation's, each set once."""
    points, seen = [dict(original)], {_key(original)}
    for perturbation in layout:
        if perturbation.skipped is None:
            point = {**original, perturbation.parameter: perturbation.value}
            if _key(point) not in seen:
                seen.add(_key(point))
                points.append(point)
    return points


def plan_of(
    template_id: str, original: dict[str, Any], config: dict[str, Any]
) -> tuple[research.Plan, list[Perturbation]]:
    """The sweep of a report on a validated parameter set and a resolved backtest config (``config.stored()``),
    and its perturbations; ``research.InvalidSweep`` when the range cannot hold out a test period."""
    layout = perturbations(template_id, original)
    points = points_of(original, layout)
    validation = research.ValidationIn(mode="holdout", test_fraction=TEST_FRACTION)
    periods = research.windows(
        date.fromisoformat(config["startDate"]), date.fromisoformat(config["endDate"]), validation
    )
    space = {name: research.RangeIn(choices=sorted({float(point[name]) for point in points})) for name in original}
    plan = research.Plan(
        template=template_id,
        parameters=dict(original),
        space=space,
        method=research.GRID,
        metric=METRIC,
        maximize=True,
        constraints={},
        budget=research.BudgetIn(max_trials=len(points)),
        seed=0,
        config=config,
        validation=validation,
        windows=[window.describe() for window in periods],
        candidates=len(points),
        points=points,
        purpose="health",
    )
    return plan, layout


# --- the report ---------------------------------------------------------------------------------------------


def report_of(result: dict[str, Any], original: dict[str, Any], layout: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's fields (camelCase, as the front end reads them) from a finished sweep's
    ``optimizationResult``, the original parameters and the stored perturbations (``Perturbation.stored``);
    ``ReportUnavailable`` when the baseline could not run in sample or out of sample."""
    trials = {_key(trial["parameters"]): trial for trial in result.get("trials") or []}
    baseline = trials.get(_key(original))
    in_sample = _metrics(baseline, "metrics")
    if baseline is None or in_sample is None:
        reason = _failure(baseline, "metrics")
        raise ReportUnavailable("BACKTEST_INSUFFICIENT_DATA", f"样本内期间无法回测原始参数：{reason}")
    out_of_sample = _metrics(baseline, "testMetrics")
    if out_of_sample is None:
        reason = _failure(baseline, "testMetrics")
        raise ReportUnavailable("BACKTEST_INSUFFICIENT_DATA", f"样本外期间无法回测原始参数：{reason}")
    warnings = [p["skipped"] for p in layout if p["skipped"]]
    base = float(in_sample[METRIC])
    sensitivity, tested = {}, 0
    for name, value in original.items():
        variations = []
        for perturbation in (p for p in layout if p["parameter"] == name and not p["skipped"]):
            trial = trials.get(_key({**original, name: perturbation["value"]}))
            ran = _metrics(trial, "metrics")
            if ran is None:
                warnings.append(
                    f"参数 {name} 扰动 {perturbation['perturbation']} 后（取值 {_shown(perturbation['value'])}）"
                    f"无法回测：{_failure(trial, 'metrics')}，已跳过"
                )
                continue
            rate = float(ran[METRIC])
            variations.append(
                {
                    "perturbation": perturbation["perturbation"],
                    "value": perturbation["value"],
                    "returnRate": rate,
                    "changePercent": change_percent(rate, base),
                }
            )
        deviation = max((abs(v["returnRate"] - base) for v in variations), default=0.0)
        rating = "HIGH" if deviation > sensitive_deviation(base) else "LOW"
        if variations:
            tested += 1
        else:
            warnings.append(f"参数 {name} 没有可运行的扰动，未计入敏感度评分")
        if rating == "HIGH":
            warnings.append(f"参数 {name} 对扰动高度敏感：收益率最大偏离 {deviation:.2%}")
        sensitivity[name] = {"rating": rating, "originalValue": value, "variations": variations}
    low = sum(1 for name, found in sensitivity.items() if found["rating"] == "LOW" and found["variations"])
    robust_share = low / tested if tested else 0.0
    out = float(out_of_sample[METRIC])
    ratio = return_ratio(base, out)
    if base <= 0:
        warnings.append(f"样本内收益率不为正（{base:.2%}），收益比记为 0")
    elif ratio < LOW_RATIO:
        warnings.append(f"样本外收益率（{out:.2%}）不足样本内（{base:.2%}）的一半，可能过拟合")
    trades = int(in_sample.get("tradeCount") or 0)
    if trades < FEW_TRADES:
        warnings.append(f"交易次数少于{FEW_TRADES}次（{trades}次），结果的统计意义有限")
    sharpe = in_sample.get("sharpeRatio")
    if sharpe is None:
        warnings.append("样本内收益没有波动，夏普比率无法计算，记为 0")
    overall = round(score(robust_share, ratio, trades), 1)
    return {
        "overallScore": overall,
        "overfitRisk": risk_of(overall),
        "inSampleReturn": base,
        "outSampleReturn": out,
        "returnRatio": ratio,
        "paramSensitivity": sensitivity,
        "tradeCount": trades,
        "maxDrawdown": float(in_sample.get("maxDrawdown") or 0.0),
        "sharpeRatio": float(sharpe) if sharpe is not None else 0.0,
        "warnings": list(dict.fromkeys(warnings)),  # a zero parameter's six skips are one warning
    }


def _metrics(trial: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """A trial's metrics of one period, when it ran there and has a return."""
    if trial is None or trial.get("state") != "complete":
        return None
    found = trial.get(key)
    if not found or found.get("error") or found.get(METRIC) is None:
        return None
    return found


def _failure(trial: dict[str, Any] | None, key: str) -> str:
    if trial is None:
        return "没有这组参数的试验"
    if trial.get("state") != "complete":
        return "; ".join(trial.get("violations") or []) or "回测失败"
    return str((trial.get(key) or {}).get("error") or "数据不足")


def sensitive_deviation(base: float) -> float:
    """The deviation from the baseline return above which a parameter is rated HIGH."""
    return SENSITIVE_SHARE * abs(base) if base != 0 else ZERO_BASELINE_DEVIATION


def change_percent(rate: float, base: float) -> float:
    """A variation's return against the baseline's, in percent of |baseline| (percentage points when it is 0)."""
    return (rate - base) / abs(base) * 100 if base != 0 else (rate - base) * 100


def return_ratio(in_sample: float, out_of_sample: float) -> float:
    """Out-of-sample over in-sample return, within ±RATIO_BOUND; 0 when the in-sample return is not positive."""
    if in_sample <= 0:
        return 0.0
    return max(-RATIO_BOUND, min(RATIO_BOUND, out_of_sample / in_sample))


def score(robust_share: float, ratio: float, trades: int) -> float:
    """0..100: the robust share of parameters, the return kept out of sample and enough trades, weighted."""
    return 100 * (
        WEIGHTS["sensitivity"] * robust_share
        + WEIGHTS["returnRatio"] * min(max(ratio, 0.0), 1.0)
        + WEIGHTS["trades"] * min(trades / FULL_TRADES, 1.0)
    )


def risk_of(overall: float) -> str:
    return next((risk for floor, risk in BANDS if overall >= floor), CRITICAL)


# --- status -------------------------------------------------------------------------------------------------

PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
STATUS_OF_JOB = {"queued": PENDING, "running": RUNNING, "succeeded": COMPLETED, "failed": FAILED, "cancelled": FAILED}


def job_error(code: str | None, message: str | None, status: str) -> str:
    """A failed report's ``error``, in the front end's language, with the job's own message."""
    if status == "cancelled":
        lead = "报告已取消"
    elif code in NO_DATA_CODES:
        lead = "行情数据不可用或不足"
    else:
        lead = "分析失败"
    detail = message or code
    return f"{lead}：{detail}" if detail else lead
