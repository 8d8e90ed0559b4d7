"""`quantpoly demo`: on a running stack, a demo account with one strategy per template and their backtests."""

from __future__ import annotations

import asyncio
import secrets

import click

from cli import context
from cli.backtests import _comparison_row
from cli.output import command_runner, render_table
from db.models import Strategy, User
from domain import strategies as rules
from domain.passwords import is_strong_password
from services import accounts, backtests, strategies, users
from services.platform import CLI_CLIENT, Platform

DEMO_EMAIL = "demo@example.com"
DEMO_CONFIG = {"symbol": "AAPL", "startDate": "2021-01-04", "endDate": "2024-12-31", "commissionRate": 0.0005}
POLL_SECONDS = 0.5


def demo_password() -> str:
    """A random password the policy accepts (about one draw in fifteen lacks a digit or a letter case)."""
    while not is_strong_password(password := secrets.token_urlsafe(12)):
        pass
    return password


async def _demo_user(platform: Platform, email: str) -> tuple[User, str | None]:
    """The demo account, and its password when this run created it (an existing one keeps its own)."""
    async with platform.db.session() as session:
        user = await accounts.find_by_email(session, email)
    if user is not None:
        return user, None
    password = demo_password()
    changes = users.UserChanges(email=email, display_name="Demo")
    return await users.create_user(platform, password, changes, CLI_CLIENT), password


async def _demo_strategy(platform: Platform, user: User, template: str) -> Strategy:
    name = f"Demo {template}"
    found, _ = await strategies.list_strategies(platform, user, status=None, search=name, page=1, page_size=50)
    strategy = next((s for s in found if s.name == name), None)
    if strategy is None:
        strategy = await strategies.create(platform, user, name, template, {})
    if strategy.status != rules.ACTIVE:
        strategy = await strategies.transition(platform, user, strategy.id, rules.ACTIVE)
    return strategy


async def _wait_all(platform: Platform, user: User, backtest_ids: list[str]) -> None:
    shown = -1
    while True:
        states = [backtests.view(*await backtests.get(platform, user, i)).status for i in backtest_ids]
        done = sum(s not in backtests.ACTIVE for s in states)
        if done != shown:
            click.echo(f"\r{done}/{len(states)} backtests finished", nl=False, err=True)
            shown = done
        if done == len(states):
            click.echo(err=True)
            return
        await asyncio.sleep(POLL_SECONDS)


@click.command("demo")
@click.option("--email", default=DEMO_EMAIL, show_default=True, help="The demo account's address.")
@command_runner
async def demo(email: str) -> None:
    """Create a demo account, a strategy of each template and their backtests on the default data, wait for
    them, and print the results and where to look at them. Needs the running stack (`make up`)."""
    async with context.platform() as platform:
        user, password = await _demo_user(platform, email)
        started = []
        for template in rules.TEMPLATES:
            strategy = await _demo_strategy(platform, user, template)
            backtest, _, _ = await backtests.create(
                platform, user, strategy.id, DEMO_CONFIG, display_name=f"Demo {template} on AAPL", run_now=True
            )
            started.append(backtest.id)
        await _wait_all(platform, user, started)
        compared = await backtests.compare(platform, user, started)
    settings = platform.settings
    click.echo(render_table([_comparison_row(task) for task in compared.tasks]))
    api = f"http://{settings.api_host}:{settings.api_port}"
    ui = f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows"
    account = f"{email} / {password}" if password else f"{email} (existing account, password unchanged)"
    click.echo(
        f"\nSign in:        POST {api}/auth/login   {account}\n"
        f"Results:        GET {api}/backtests/<id>/result   (Bearer token from the login)\n"
        f"Workflows:      {ui}/backtest-{started[0]}   (one per backtest)\n"
        f"HTML report:    quantpoly backtest report {started[0]} --user {email} --out report.html",
        err=True,
    )


def register(cli: click.Group) -> None:
    cli.add_command(demo)
