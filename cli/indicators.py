"""`quantpoly indicators calculate`: an indicator job, followed to its end with --wait."""

from __future__ import annotations

import uuid

import click

from cli import context
from cli.jobs import find_user, follow, job_view, user_option, wait_option
from cli.output import command_runner, emit
from services import market

SPEC_HELP = "NAME[:key=value,...], e.g. sma:period=50, macd:fast=12,slow=26,signal=9, bollinger:stdDev=2.5"


def parse_spec(text: str) -> dict:
    name, _, options = text.partition(":")
    spec: dict = {"name": name.strip()}
    for pair in filter(None, (p.strip() for p in options.split(","))):
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--indicator")
        spec[key.strip()] = float(value) if "." in value else int(value)
    return spec


@click.group("indicators")
def indicators_group() -> None:
    """Technical indicators over stored bars."""


@indicators_group.command("calculate")
@user_option
@wait_option
@click.argument("symbol")
@click.option("--start", "start_date", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day, YYYY-MM-DD.")
@click.option("--end", "end_date", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day, YYYY-MM-DD.")
@click.option("--timeframe", default="1Day", show_default=True)
@click.option("--indicator", "specs", multiple=True, required=True, help=SPEC_HELP)
@command_runner
async def calculate(user_email, wait, symbol, start_date, end_date, timeframe, specs) -> None:
    """Compute indicators for SYMBOL as a market_indicators_calculate job (bars synced when missing)."""
    payload = {
        "symbol": symbol,
        "startDate": start_date.date().isoformat(),
        "endDate": end_date.date().isoformat(),
        "timeframe": timeframe,
        "indicators": [parse_spec(s) for s in specs],
    }
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        key = f"indicators-{uuid.uuid4()}"
        job, _ = await market.submit_task(platform, user, "market_indicators_calculate", payload, key)
        emit(await follow(platform, user, job.id) if wait else job_view(job))


def register(cli: click.Group) -> None:
    cli.add_command(indicators_group)
