"""`quantpoly strategies ...`: the same strategy services the /strategies routes use."""

from __future__ import annotations

import json

import click

from cli import context
from cli.jobs import find_user, user_option
from cli.output import command_runner, emit
from domain import strategies as rules
from services import strategies
from services.schemas.strategies import StrategyOut


def _view(strategy) -> dict:
    return StrategyOut.model_validate(strategy).model_dump(mode="json")


@click.group("strategies")
def strategies_group() -> None:
    """Strategies from templates, and their lifecycle."""


@strategies_group.command("templates")
def templates() -> None:
    """The six templates with their parameters, bounds and defaults."""
    emit(strategies.templates())


@strategies_group.command("create")
@user_option
@click.option("--name", required=True)
@click.option("--template", required=True, type=click.Choice(list(rules.TEMPLATES)))
@click.option("--parameters", "parameters_json", default="{}", show_default=True, help='JSON, e.g. {"longWindow": 50}')
@command_runner
async def create(user_email, name, template, parameters_json) -> None:
    """Create a draft strategy; missing parameters take the template's defaults."""
    parameters = _parameters(parameters_json) or {}
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(_view(await strategies.create(platform, user, name, template, parameters)))


@strategies_group.command("list")
@user_option
@click.option("--status", type=click.Choice(list(rules.TRANSITIONS)), default=None)
@click.option("--search", default=None)
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--page-size", default=20, show_default=True, type=click.IntRange(1, 200))
@command_runner
async def list_(user_email, status, search, page, page_size) -> None:
    """The account's strategies, newest first."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        rows, total = await strategies.list_strategies(
            platform, user, status=status, search=search, page=page, page_size=page_size
        )
    emit({"items": [_view(s) for s in rows], "total": total, "page": page, "page_size": page_size})


@strategies_group.command("show")
@user_option
@click.argument("strategy_id")
@command_runner
async def show(user_email, strategy_id) -> None:
    """One strategy."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(_view(await strategies.get(platform, user, strategy_id)))


def _parameters(parameters_json: str | None) -> dict | None:
    if parameters_json is None:
        return None
    try:
        return json.loads(parameters_json)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--parameters") from None


@strategies_group.command("update")
@user_option
@click.argument("strategy_id")
@click.option("--name", default=None)
@click.option("--parameters", "parameters_json", default=None, help="JSON, checked against the template again.")
@command_runner
async def update(user_email, strategy_id, name, parameters_json) -> None:
    """Rename a strategy or change its parameters."""
    parameters = _parameters(parameters_json)
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        emit(_view(await strategies.update(platform, user, strategy_id, name=name, parameters=parameters)))


@strategies_group.command("validate-execution")
@user_option
@click.argument("strategy_id")
@click.option("--parameters", "parameters_json", default=None, help="JSON to check instead of the stored ones.")
@command_runner
async def validate_execution(user_email, strategy_id, parameters_json) -> None:
    """Whether the strategy (or other parameters for it) would run: the problems, if any."""
    parameters = _parameters(parameters_json)
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        strategy = await strategies.get(platform, user, strategy_id)
    emit(strategies.check_execution(strategy, parameters))


def _transition_command(name: str, target: str, help_text: str) -> None:
    @strategies_group.command(name, help=help_text)
    @user_option
    @click.argument("strategy_id")
    @command_runner
    async def command(user_email, strategy_id) -> None:
        async with context.platform(need_temporal=False) as platform:
            user = await find_user(platform, user_email)
            emit(_view(await strategies.transition(platform, user, strategy_id, target)))


_transition_command("activate", rules.ACTIVE, "Make a strategy active.")
_transition_command("deactivate", rules.INACTIVE, "Make a strategy inactive.")
_transition_command("archive", rules.ARCHIVED, "Archive a strategy (final).")


@strategies_group.command("delete")
@user_option
@click.argument("strategy_id")
@command_runner
async def delete(user_email, strategy_id) -> None:
    """Delete a strategy."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        await strategies.delete(platform, user, strategy_id)
    emit({"strategy_id": strategy_id, "deleted": True})


def register(cli: click.Group) -> None:
    cli.add_command(strategies_group)
