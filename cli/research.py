"""`quantpoly research ...`: parameter sweeps and performance analyses of strategies, through the same research
services the /strategies/{id}/research routes use; a research task is cancelled as every job is."""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from cli import context
from cli.jobs import POLL_SECONDS, find_user, follow, job_view, user_option, wait_option
from cli.market import date_type
from cli.output import command_runner, emit, fail
from cli.report import format_metric, metric_label
from cli.sweep_report import write_sweep_report
from core.errors import AccessDenied, AppError
from domain import jobs as lifecycle
from domain import research as rules
from services import jobs, research
from services.platform import Platform
from services.schemas.research import ResearchResultOut, ResearchResultsOut, TrialOut

PARAM_SYNTAX = "expected NAME=MIN:MAX[:STEP] or NAME=choice:A,B,C"
TRIALS_PAGE = 500  # the report reads the whole trial listing in pages of this size
ENDED = (lifecycle.SUCCEEDED, lifecycle.FAILED, lifecycle.CANCELLED)


def _table_wanted() -> bool:
    return bool(click.get_current_context().find_root().params.get("table"))


# --- option parsing ------------------------------------------------------------------------------------------


def _number(text: str) -> float:
    value = float(text)  # ValueError for anything but a number
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_param(text: str) -> tuple[str, dict[str, Any]]:
    """``name=min:max[:step]`` or ``name=choice:a,b,c`` as a parameter name and its range in the request's
    shape (``{"min", "max", "step"}`` or ``{"choices"}``); ValueError for anything else."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name or not spec.strip():
        raise ValueError(text)
    kind, colon, rest = spec.partition(":")
    if colon and kind.strip() == "choice":
        return name, {"choices": [_number(choice) for choice in rest.split(",")]}
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(text)
    numbers = [_number(part) for part in parts]
    wanted = {"min": numbers[0], "max": numbers[1]}
    if len(numbers) == 3:
        wanted["step"] = numbers[2]
    return name, wanted


def _parameter_space(ctx: click.Context, param: click.Parameter, given: tuple[str, ...]) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for text in given:
        try:
            name, wanted = parse_param(text)
        except ValueError:
            raise click.BadParameter(f"{text!r}: {PARAM_SYNTAX}") from None
        if name in space:
            raise click.BadParameter(f"{name} is given twice")
        space[name] = wanted
    return space


def _constraints(ctx: click.Context, param: click.Parameter, given: tuple[str, ...]) -> dict[str, float]:
    constraints: dict[str, float] = {}
    for text in given:
        name, sep, limit = text.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError(text)
            constraints[name.strip()] = _number(limit)
        except ValueError:
            raise click.BadParameter(f"{text!r}: expected NAME=LIMIT") from None
    return constraints


def _config(symbol: str | None, start_date, end_date, **given: Any) -> dict[str, Any] | None:
    """The backtest config the sweep runs on; None without --symbol (the service then takes the strategy's
    latest backtest's)."""
    chosen = {key: value for key, value in given.items() if value is not None}
    if symbol is None:
        if chosen or start_date or end_date:
            raise click.UsageError(
                "--start, --end, --timeframe, --commission, --slippage-bps and --initial-capital "
                "apply with --symbol only"
            )
        return None
    config: dict[str, Any] = {"symbol": symbol, **chosen}
    if start_date:
        config["startDate"] = start_date.date().isoformat()
    if end_date:
        config["endDate"] = end_date.date().isoformat()
    return config


def _refused(error: AppError) -> NoReturn:
    """An AppError with its details (the problems of a parameter space or a config) in the message."""
    details = error.details if isinstance(error.details, list) else []
    shown = [
        (f"{d['field']}: {d['message']}" if d.get("field") else str(d.get("message")))
        if isinstance(d, dict)
        else str(d)
        for d in details
    ]
    fail(error.code, "; ".join([error.message, *shown]), getattr(error, "retryable", None))


# --- views ---------------------------------------------------------------------------------------------------


def _score(value: float | None) -> str:
    return "\u2014" if value is None else f"{value:.6g}"


def _parameters(parameters: dict[str, Any] | None) -> str:
    return ", ".join(f"{name}={value}" for name, value in (parameters or {}).items())


def result_row(found: ResearchResultOut) -> dict[str, Any]:
    """One sweep as a table row."""
    result = found.optimization_result
    best = result.best_candidate if result else None
    return {
        "task_id": found.task_id,
        "method": found.method,
        "status": found.status,
        "trials": f"{found.progress.trials_done}/{found.progress.trials_planned}",
        "best_score": _score(found.progress.best_score),
        "best_trial": found.progress.best_trial_id,
        "best_parameters": _parameters(best.parameters) if best else None,
        "stop_reason": result.convergence.early_stop_reason if result else None,
        "created_at": found.created_at.isoformat(timespec="seconds"),
    }


def trial_row(trial: TrialOut) -> dict[str, Any]:
    tested = (trial.test_metrics or {}).get(trial.metric)
    return {
        "trial": trial.trial_id,
        "parameters": _parameters(trial.parameters),
        "score": _score(trial.score),
        "test_score": _score(tested) if isinstance(tested, int | float) else "\u2014",
        "feasible": trial.feasible,
        "violations": "; ".join(trial.violations),
    }


def sweep_summary(found: ResearchResultOut) -> dict[str, Any]:
    """What a finished sweep found: its best candidate in and out of sample, and the overfitting figures."""
    result = found.optimization_result
    summary: dict[str, Any] = {"task_id": found.task_id, "status": found.status}
    if result is None:
        return {**summary, "best": None, "overfitting": None}
    best = result.best_candidate
    return {
        **summary,
        "method": result.method,
        "objective": result.objective.model_dump(mode="json"),
        "trial_count": result.trial_count,
        "stop_reason": result.convergence.early_stop_reason,
        "best": None
        if best is None
        else {
            "trial_id": best.trial_id,
            "parameters": best.parameters,
            "score": best.score,
            "in_sample": best.metrics,
            "out_of_sample": best.test_metrics,
        },
        "overfitting": result.overfitting.model_dump(mode="json"),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as lines to read: the best's metrics in and out of sample, then the overfitting figures."""
    lines = [
        f"sweep {summary['task_id']} {summary['status']}: {summary.get('trial_count', 0)} trials "
        f"({summary.get('stop_reason') or 'no result'})"
    ]
    best = summary.get("best")
    if best is None:
        return "\n".join([*lines, "no feasible trial with a score"])
    metric = summary["objective"]["metric"]
    lines.append(
        f"best {best['trial_id']}: {_parameters(best['parameters'])}; "
        f"{metric_label(metric)} {format_metric(metric, best['score'])}"
    )
    in_sample, out_sample = best["in_sample"] or {}, best["out_of_sample"] or {}
    rows = [("Metric", "In sample", "Out of sample")] + [
        (metric_label(key), format_metric(key, in_sample.get(key)), format_metric(key, out_sample.get(key)))
        for key in [*in_sample, *(k for k in out_sample if k not in in_sample)]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += [f"{a.ljust(widths[0])}  {b.rjust(widths[1])}  {c.rjust(widths[2])}" for a, b, c in rows]
    overfitting = summary["overfitting"] or {}
    deflated = overfitting.get("deflated_sharpe") or {}
    pbo = overfitting.get("probability_of_backtest_overfitting") or {}
    lines.append(f"deflated Sharpe ratio: {_score(deflated.get('deflated_sharpe_ratio'))}")
    lines.append(f"probability of backtest overfitting: {_score(pbo.get('probability'))}")
    return "\n".join(lines)


async def _follow_sweep(platform: Platform, user, strategy_id: str, task_id: str) -> ResearchResultOut:
    """A progress bar of trials done against planned, with the best score so far, until the sweep ends; a
    failed or cancelled sweep exits with status 1, as `follow` does."""
    found = await research.result(platform, user, strategy_id, task_id)
    planned = max(found.progress.trials_planned, 1)
    with click.progressbar(length=planned, label="sweep", file=sys.stderr, show_pos=True) as bar:
        shown = 0
        while True:
            done = min(found.progress.trials_done, planned)
            bar.label = f"sweep {found.status}, best {_score(found.progress.best_score)}"
            bar.update(done - shown)
            bar.render_progress()  # a new label shows even when no trial was added
            shown = done
            if found.status in ENDED:
                break
            await asyncio.sleep(POLL_SECONDS)
            found = await research.result(platform, user, strategy_id, task_id)
    if found.status != lifecycle.SUCCEEDED:
        job = await jobs.get(platform, user, task_id)
        emit(job_view(job, await jobs.logs(platform, job.id)))
        fail(job.error_code or "JOB_" + job.status.upper(), job.error_message or f"job {job.status}")
    return found


async def _all_trials(platform: Platform, user, strategy_id: str, task_id: str) -> list[TrialOut]:
    found: list[TrialOut] = []
    page = 1
    while True:
        rows, total = await research.trials(platform, user, strategy_id, task_id, page=page, page_size=TRIALS_PAGE)
        found += rows
        if not rows or len(found) >= total:
            return found
        page += 1


# --- commands ------------------------------------------------------------------------------------------------


@click.group("research")
def research_group() -> None:
    """Parameter sweeps (research-<id> workflows) and performance analyses of strategies."""


@research_group.command("optimize")
@user_option
@wait_option
@click.argument("strategy_id")
@click.option("--method", type=click.Choice(rules.METHODS), default="bayesian", show_default=True)
@click.option("--objective", "metric", default="sharpeRatio", show_default=True, help="The metric to optimize.")
@click.option(
    "--direction",
    type=click.Choice(["maximize", "minimize"]),
    default=None,
    help="Default: the metric's sense (minimize maxDrawdown and annualVolatility).",
)
@click.option(
    "--param",
    "space",
    multiple=True,
    callback=_parameter_space,
    metavar="NAME=MIN:MAX[:STEP]|NAME=choice:A,B,C",
    help="A searched parameter; repeat. Default: each parameter around the strategy's value.",
)
@click.option(
    "--trials",
    "max_trials",
    default=rules.DEFAULT_TRIALS,
    show_default=True,
    type=click.IntRange(1, rules.MAX_TRIALS),
    help="At most this many trials per window.",
)
@click.option(
    "--max-seconds",
    default=float(rules.DEFAULT_DURATION_SECONDS),
    show_default=True,
    type=click.FloatRange(0, 7 * 24 * 3600, min_open=True),
    help="Time budget of the sweep.",
)
@click.option("--early-stop", "early_stop_score", type=float, default=None, help="Stop once the best reaches SCORE.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1))
@click.option(
    "--constraint",
    "constraints",
    multiple=True,
    callback=_constraints,
    metavar="NAME=LIMIT",
    help=f"Repeat; NAME one of {', '.join(rules.CONSTRAINTS)}.",
)
@click.option("--symbol", default=None, help="Without it: the latest backtest's config, else the default symbol.")
@click.option("--start", "start_date", type=date_type, default=None, help="First day (default: a year before --end).")
@click.option("--end", "end_date", type=date_type, default=None, help="Last day (default: yesterday).")
@click.option("--timeframe", default=None, help="Bar timeframe (default: 1Day).")
@click.option("--commission", "commission_rate", type=float, default=None, help="Per side (default: 0).")
@click.option("--slippage-bps", type=float, default=None, help="Default: 0.")
@click.option("--initial-capital", type=float, default=None, help="Default: 100000.")
@click.option(
    "--validation",
    "mode",
    type=click.Choice([rules.HOLDOUT, rules.WALK_FORWARD, rules.NONE]),
    default=rules.HOLDOUT,
    show_default=True,
)
@click.option(
    "--test-fraction",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0.05, 0.5),
    help="Holdout: the share of the range tested.",
)
@click.option("--windows", default=3, show_default=True, type=click.IntRange(2, 12), help="Walk-forward windows.")
@click.option("--anchored", is_flag=True, help="Walk-forward: every window trains from the start.")
@click.option("--idempotency-key", default=None, help="Repeat-safe key; the same key and request give the same sweep.")
@command_runner
async def optimize(
    user_email,
    wait,
    strategy_id,
    method,
    metric,
    direction,
    space,
    max_trials,
    max_seconds,
    early_stop_score,
    seed,
    constraints,
    symbol,
    start_date,
    end_date,
    timeframe,
    commission_rate,
    slippage_bps,
    initial_capital,
    mode,
    test_fraction,
    windows,
    anchored,
    idempotency_key,
) -> None:
    """Sweep a strategy's parameters; with --wait, follow it and print the best candidate and the overfitting
    figures."""
    config = _config(
        symbol,
        start_date,
        end_date,
        timeframe=timeframe,
        commissionRate=commission_rate,
        slippageBps=slippage_bps,
        initialCapital=initial_capital,
    )
    body = {
        "method": method,
        "objective": {"metric": metric, "direction": direction},
        "parameterSpace": space,
        "constraints": constraints,
        "budget": {"maxTrials": max_trials, "maxDurationSeconds": max_seconds, "earlyStopScore": early_stop_score},
        "config": config,
        "seed": seed,
        "validation": {"mode": mode, "testFraction": test_fraction, "windows": windows, "anchored": anchored},
        "idempotencyKey": idempotency_key,
    }
    try:  # the route's request model, so that the command asks exactly what the route would be asked
        request = rules.OptimizationIn.model_validate(body)
    except ValidationError as error:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        fail("VALIDATION_ERROR", "; ".join(problems))
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        try:
            job, _ = await research.optimize(platform, user, strategy_id, request)
        except AppError as error:
            _refused(error)
        if not wait:
            emit(research.task_view(job).model_dump(mode="json"))
            return
        found = await _follow_sweep(platform, user, strategy_id, job.id)
    summary = sweep_summary(found)
    if _table_wanted():
        click.echo(summary_text(summary))
    else:
        emit(summary)


@research_group.command("results")
@user_option
@click.argument("strategy_id")
@click.option("--status", type=click.Choice(lifecycle.STATUSES), default=None)
@click.option("--method", type=click.Choice(rules.METHODS), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, research.MAX_RESULTS))
@command_runner
async def results(user_email, strategy_id, status, method, limit) -> None:
    """The strategy's sweeps, newest first, without their trials."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        items, total = await research.results(platform, user, strategy_id, status=status, method=method, limit=limit)
    if _table_wanted():
        emit([result_row(item) for item in items])
        return
    emit(ResearchResultsOut(items=items, total=total).model_dump(mode="json"))


@research_group.command("show")
@user_option
@click.argument("strategy_id")
@click.argument("task_id")
@command_runner
async def show(user_email, strategy_id, task_id) -> None:
    """One sweep: its progress while it runs, its whole result (with up to 200 best trials) once it has ended."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        found = await research.result(platform, user, strategy_id, task_id)
    emit(result_row(found) if _table_wanted() else found.model_dump(mode="json"))


@research_group.command("trials")
@user_option
@click.argument("strategy_id")
@click.argument("task_id")
@click.option("--window", default=None, type=click.IntRange(0, 100), help="Only this window's trials.")
@click.option("--feasible/--infeasible", default=None, help="Only the trials that meet (or break) the constraints.")
@click.option("--sort", type=click.Choice(sorted(research.TRIAL_SORTS)), default="number", show_default=True)
@click.option("--desc", "descending", is_flag=True, help="Descending order.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, 200))
@command_runner
async def trials(user_email, strategy_id, task_id, window, feasible, sort, descending, page, page_size) -> None:
    """A page of the sweep's trials (those recorded so far while it runs)."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        rows, total = await research.trials(
            platform,
            user,
            strategy_id,
            task_id,
            window=window,
            feasible=feasible,
            sort=sort,
            descending=descending,
            page=page,
            page_size=page_size,
        )
    if _table_wanted():
        emit([trial_row(row) for row in rows])
        return
    emit({"items": [r.model_dump(mode="json") for r in rows], "total": total, "page": page, "page_size": page_size})


@research_group.command("cancel")
@user_option
@click.argument("task_id")
@command_runner
async def cancel(user_email, task_id) -> None:
    """Cancel a queued or running research task through Temporal; a sweep keeps its recorded trials."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        job = await jobs.get(platform, user, task_id)
        if job.task_type not in (research.OPTIMIZE, research.ANALYZE):
            raise AccessDenied("research")
        emit(job_view(await jobs.cancel(platform, user, task_id)))


@research_group.command("analyze")
@user_option
@wait_option
@click.argument("strategy_id")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 365), help="Days up to yesterday.")
@click.option("--idempotency-key", default=None, help="Repeat-safe key; the same key and request give the same task.")
@command_runner
async def analyze(user_email, wait, strategy_id, days, idempotency_key) -> None:
    """Backtest the strategy over its last --days days against buy-and-hold and its own earlier results."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        job, _ = await research.analyze(platform, user, strategy_id, days, idempotency_key)
        if wait:
            await follow(platform, user, job.id)
            job = await jobs.get(platform, user, job.id)
    emit(research.task_view(job).model_dump(mode="json"))


@research_group.command("report")
@user_option
@click.argument("strategy_id")
@click.argument("task_id")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@command_runner
async def report(user_email, strategy_id, task_id, out_path: Path) -> None:
    """Write a self-contained HTML report: history, importances, heatmap, in/out of sample, overfitting."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        found = await research.result(platform, user, strategy_id, task_id)
        strategy = await research.owned_strategy(platform, user, strategy_id)
        rows = await _all_trials(platform, user, strategy_id, task_id)
    write_sweep_report(
        found.model_dump(mode="json", by_alias=True),
        [row.model_dump(mode="json", by_alias=True) for row in rows],
        out_path,
        strategy_name=strategy.name,
    )
    emit({"task_id": task_id, "report": str(out_path)})


def register(cli: click.Group) -> None:
    cli.add_command(research_group)
