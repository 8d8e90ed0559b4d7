"""`quantpoly portfolios ...`: the same portfolio services the /portfolios routes use."""

from __future__ import annotations

import click

from cli import context
from cli.jobs import find_user, follow, user_option, wait_option
from cli.output import command_runner, emit
from domain import portfolios as rules
from services import jobs, portfolios
from services.schemas.portfolios import ConstraintsPatch, EvaluationTaskOut, RebalanceTaskOut


def _weights(pairs: tuple[str, ...], option: str) -> list[tuple[str, float]]:
    """STRATEGY_ID=WEIGHT pairs, in the order given."""
    parsed = []
    for pair in pairs:
        strategy_id, sep, weight = pair.rpartition("=")
        try:
            if not sep or not strategy_id:
                raise ValueError(pair)
            parsed.append((strategy_id, float(weight)))
        except ValueError:
            raise click.BadParameter(f"expected STRATEGY_ID=WEIGHT, got {pair!r}", param_hint=option) from None
    return parsed


@click.group("portfolios")
def portfolios_group() -> None:
    """Portfolios of strategies at weights: read model, evaluation and rebalancing jobs."""


@portfolios_group.command("list")
@user_option
@click.option("--status", type=click.Choice(rules.STATUSES), default=None)
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--page-size", default=20, show_default=True, type=click.IntRange(1, 200))
@command_runner
async def list_(user_email, status, page, page_size) -> None:
    """The account's portfolios, newest first."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        rows, total = await portfolios.list_portfolios(platform, user, status=status, page=page, page_size=page_size)
    emit({"items": rows, "total": total, "page": page, "page_size": page_size})


@portfolios_group.command("create")
@user_option
@click.option("--name", required=True)
@click.option("--max-total-weight", default=1.0, show_default=True, type=float)
@click.option("--max-single-weight", default=1.0, show_default=True, type=float)
@click.option("--member", "members", multiple=True, metavar="STRATEGY_ID=WEIGHT", help="Repeat for each member.")
@command_runner
async def create(user_email, name, max_total_weight, max_single_weight, members) -> None:
    """Create a draft portfolio, with members if given."""
    weights = _weights(members, "--member")
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        constraints = rules.Constraints(max_total_weight, max_single_weight)
        emit(await portfolios.create(platform, user, name, constraints, weights))


@portfolios_group.command("show")
@user_option
@click.argument("portfolio_id")
@command_runner
async def show(user_email, portfolio_id) -> None:
    """One portfolio with its members."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(await portfolios.get(platform, user, portfolio_id))


@portfolios_group.command("update")
@user_option
@click.argument("portfolio_id")
@click.option("--name", default=None)
@click.option("--status", type=click.Choice(rules.STATUSES), default=None, help="draft <-> active, -> archived.")
@click.option("--max-total-weight", default=None, type=float)
@click.option("--max-single-weight", default=None, type=float)
@command_runner
async def update(user_email, portfolio_id, name, status, max_total_weight, max_single_weight) -> None:
    """Rename, change the status or the constraints (the members' weights must still respect them)."""
    constraints = None
    if max_total_weight is not None or max_single_weight is not None:
        constraints = ConstraintsPatch(max_total_weight=max_total_weight, max_single_weight=max_single_weight)
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(await portfolios.update(platform, user, portfolio_id, name=name, status=status, constraints=constraints))


@portfolios_group.command("delete")
@user_option
@click.argument("portfolio_id")
@command_runner
async def delete(user_email, portfolio_id) -> None:
    """Delete a portfolio (its strategies stay)."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        await portfolios.delete(platform, user, portfolio_id)
    emit({"portfolio_id": portfolio_id, "deleted": True})


@portfolios_group.command("add-member")
@user_option
@click.argument("portfolio_id")
@click.argument("strategy_id")
@click.option("--weight", required=True, type=float)
@command_runner
async def add_member(user_email, portfolio_id, strategy_id, weight) -> None:
    """Add a strategy at a weight, or change a member's weight."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(await portfolios.put_member(platform, user, portfolio_id, strategy_id, weight))


@portfolios_group.command("remove-member")
@user_option
@click.argument("portfolio_id")
@click.argument("strategy_id")
@command_runner
async def remove_member(user_email, portfolio_id, strategy_id) -> None:
    """Remove a member."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(await portfolios.remove_member(platform, user, portfolio_id, strategy_id))


@portfolios_group.command("read-model")
@user_option
@click.argument("portfolio_id")
@click.option("--curve", is_flag=True, help="Include the combined equity curve.")
@command_runner
async def read_model(user_email, portfolio_id, curve) -> None:
    """The portfolio combined from its members' latest completed backtests."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        model = await portfolios.read_model(platform, user, portfolio_id)
    emit(model.model_dump(mode="json", exclude=None if curve else {"combined": {"equity_curve"}}))


@portfolios_group.command("evaluate")
@user_option
@wait_option
@click.argument("portfolio_id")
@click.option("--idempotency-key", default=None, help="Repeat-safe key; the same key and request give the same job.")
@command_runner
async def evaluate(user_email, wait, portfolio_id, idempotency_key) -> None:
    """Start a portfolio_evaluate job; with --wait, follow it and print its result."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        job, _ = await portfolios.evaluate(platform, user, portfolio_id, idempotency_key)
        if wait:
            await follow(platform, user, job.id)
            job = await jobs.get(platform, user, job.id)
    emit(EvaluationTaskOut.of(job))


@portfolios_group.command("rebalance")
@user_option
@wait_option
@click.argument("portfolio_id")
@click.option(
    "--method", type=click.Choice(rules.METHODS), default=None, help="Default: target with --target, else score."
)
@click.option("--target", "targets", multiple=True, metavar="STRATEGY_ID=WEIGHT", help="Explicit target weight.")
@click.option("--apply", is_flag=True, help="Also write the target weights (one new version).")
@click.option("--idempotency-key", default=None, help="Repeat-safe key; the same key and request give the same job.")
@command_runner
async def rebalance(user_email, wait, portfolio_id, method, targets, apply, idempotency_key) -> None:
    """Start a portfolio_rebalance job; with --wait, follow it and print the proposal."""
    target_weights = dict(_weights(targets, "--target")) if targets else None
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        job, _ = await portfolios.rebalance(
            platform,
            user,
            portfolio_id,
            target_weights=target_weights,
            method=method,
            apply=apply,
            idempotency_key=idempotency_key,
        )
        if wait:
            await follow(platform, user, job.id)
            job = await jobs.get(platform, user, job.id)
    emit(RebalanceTaskOut.of(job))


def register(cli: click.Group) -> None:
    cli.add_command(portfolios_group)
