"""`quantpoly backtest ...`: the same backtest services the /backtests routes use."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import click

from cli import context
from cli.jobs import find_user, follow, user_option, wait_option
from cli.market import date_type, snake
from cli.output import command_runner, emit
from cli.report import format_metric, metric_label, write_report
from services import backtests
from services.schemas.backtests import ComparedTaskOut

STATUSES = click.Choice(backtests.STATUSES)


def _view(backtest, job) -> dict:
    return backtests.view(backtest, job).model_dump(mode="json")


def metrics_table(metrics: dict[str, Any] | None) -> str:
    """Metric label and value, one per line, formatted as the HTML report formats them."""
    if not metrics:
        return "no metrics"
    rows = [(metric_label(name), format_metric(name, value)) for name, value in metrics.items()]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {shown}" for label, shown in rows)


@click.group("backtest")
def backtest_group() -> None:
    """Backtests of strategies, each a durable backtest-<id> workflow."""


@backtest_group.command("run")
@user_option
@wait_option
@click.argument("strategy_id")
@click.option("--symbol", required=True)
@click.option("--start", "start_date", type=date_type, default=None, help="First day (default: a year before --end).")
@click.option("--end", "end_date", type=date_type, default=None, help="Last day (default: yesterday).")
@click.option("--timeframe", default="1Day", show_default=True)
@click.option("--initial-capital", default=100_000.0, show_default=True, type=float)
@click.option("--commission", "commission_rate", default=0.0, show_default=True, type=float, help="Per side.")
@click.option("--slippage-bps", default=0.0, show_default=True, type=float)
@click.option("--position-fraction", default=1.0, show_default=True, type=float, help="Of equity, per entry.")
@click.option("--whole-units", is_flag=True, help="Buy whole units only.")
@click.option("--name", "display_name", default=None)
@click.option("--idempotency-key", default=None, help="Repeat-safe key; the same key and request give the same run.")
@command_runner
async def run(
    user_email,
    wait,
    strategy_id,
    symbol,
    start_date,
    end_date,
    timeframe,
    initial_capital,
    commission_rate,
    slippage_bps,
    position_fraction,
    whole_units,
    display_name,
    idempotency_key,
) -> None:
    """Backtest an active strategy; with --wait, follow it and print its metrics."""
    config = {
        "symbol": symbol,
        "timeframe": timeframe,
        "initialCapital": initial_capital,
        "commissionRate": commission_rate,
        "slippageBps": slippage_bps,
        "positionFraction": position_fraction,
        "fractional": not whole_units,
    }
    if start_date:
        config["startDate"] = start_date.date().isoformat()
    if end_date:
        config["endDate"] = end_date.date().isoformat()
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        backtest, job, _ = await backtests.create(
            platform,
            user,
            strategy_id,
            config,
            idempotency_key=idempotency_key or f"cli-{uuid.uuid4()}",
            display_name=display_name,
            run_now=True,
        )
        if not wait:
            emit(_view(backtest, job))
            return
        await follow(platform, user, job.id)
        backtest, job = await backtests.get(platform, user, backtest.id)
    click.echo(f"backtest {backtest.id} completed", err=True)
    click.echo(metrics_table(backtest.metrics))


@backtest_group.command("show")
@user_option
@click.argument("backtest_id")
@command_runner
async def show(user_email, backtest_id) -> None:
    """One backtest: its status, progress, configuration and metrics."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(_view(*await backtests.get(platform, user, backtest_id)))


@backtest_group.command("result")
@user_option
@click.argument("backtest_id")
@click.option("--full", is_flag=True, help="Include the equity curve and per-bar returns.")
@command_runner
async def result(user_email, backtest_id, full) -> None:
    """A completed backtest's result: metrics and trades (and, with --full, every bar)."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        body = await backtests.result(platform, user, backtest_id)
    if click.get_current_context().find_root().params.get("table"):
        click.echo(metrics_table(body.metrics))
        return
    # Metric names are snake_case too, as in every CLI answer.
    emit(snake(body.model_dump(mode="json", exclude=None if full else {"equity_curve", "daily_returns"})))


@backtest_group.command("list")
@user_option
@click.option("--strategy", "strategy_id", default=None)
@click.option("--status", type=STATUSES, default=None)
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--page-size", default=20, show_default=True, type=click.IntRange(1, 200))
@command_runner
async def list_(user_email, strategy_id, status, page, page_size) -> None:
    """The account's backtests, newest first."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        rows, total = await backtests.list_backtests(
            platform, user, strategy_id=strategy_id, status=status, page=page, page_size=page_size
        )
    emit({"items": [r.model_dump(mode="json") for r in rows], "total": total, "page": page, "page_size": page_size})


@backtest_group.command("compare")
@user_option
@click.argument("backtest_ids", nargs=-1, required=True)
@command_runner
async def compare(user_email, backtest_ids) -> None:
    """Metrics of several backtests side by side, with the best and worst return."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        compared = await backtests.compare(platform, user, list(backtest_ids))
    if click.get_current_context().find_root().params.get("table"):
        emit([_comparison_row(t) for t in compared.tasks])
        return
    emit(snake(compared.model_dump(mode="json")))


def _comparison_row(task: ComparedTaskOut) -> dict[str, Any]:
    metrics = task.metrics or {}
    shown = {key: format_metric(key, metrics.get(key)) for key in ("returnRate", "maxDrawdown", "sharpeRatio")}
    return {
        "backtest": task.task_id,
        "template": task.template,
        "status": task.status,
        "return": shown["returnRate"],
        "max_drawdown": shown["maxDrawdown"],
        "sharpe": shown["sharpeRatio"],
        "trades": metrics.get("tradeCount"),
    }


@backtest_group.command("statistics")
@user_option
@click.option("--strategy", "strategy_id", default=None)
@command_runner
async def statistics(user_email, strategy_id) -> None:
    """Counts by status and average metrics of the completed backtests."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(await backtests.statistics(platform, user, strategy_id))


@backtest_group.command("rename")
@user_option
@click.argument("backtest_id")
@click.argument("display_name")
@command_runner
async def rename(user_email, backtest_id, display_name) -> None:
    """Give a backtest a display name."""
    if not 1 <= len(display_name) <= 120:
        raise click.BadParameter("must be 1 to 120 characters", param_hint="DISPLAY_NAME")
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit((await backtests.rename(platform, user, backtest_id, display_name)).model_dump(mode="json"))


@backtest_group.command("cancel")
@user_option
@click.argument("backtest_id")
@command_runner
async def cancel(user_email, backtest_id) -> None:
    """Cancel a pending or running backtest (its workflow is cancelled)."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        emit((await backtests.cancel(platform, user, backtest_id)).model_dump(mode="json"))


@backtest_group.command("retry")
@user_option
@click.argument("backtest_id")
@command_runner
async def retry(user_email, backtest_id) -> None:
    """Run a failed or cancelled backtest again."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        emit((await backtests.retry(platform, user, backtest_id)).model_dump(mode="json"))


@backtest_group.command("delete")
@user_option
@click.argument("backtest_id")
@command_runner
async def delete(user_email, backtest_id) -> None:
    """Delete a completed, failed or cancelled backtest."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        await backtests.delete(platform, user, backtest_id)
    emit({"backtest_id": backtest_id, "deleted": True})


@backtest_group.command("report")
@user_option
@click.argument("backtest_id")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@command_runner
async def report(user_email, backtest_id, out_path: Path) -> None:
    """Write a self-contained HTML report: equity curve, drawdown, trade markers, metrics and trades."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        body = await backtests.result(platform, user, backtest_id)
    write_report(body.model_dump(mode="json", by_alias=True), out_path)
    emit({"backtest_id": backtest_id, "report": str(out_path)})


def register(cli: click.Group) -> None:
    cli.add_command(backtest_group)
