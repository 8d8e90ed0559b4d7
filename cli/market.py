"""Market-data commands (`quantpoly market ...`): the same services the /market routes use."""

from __future__ import annotations

import uuid

import click

from cli import context
from cli.jobs import find_user, follow, job_view, user_option, wait_option
from cli.output import command_runner, emit
from services import jobs


@click.group("market")
def market_group() -> None:
    """Market data."""


@market_group.command("sync")
@user_option
@wait_option
@click.argument("symbols", nargs=-1, required=True)
@click.option("--start", "start_date", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day, YYYY-MM-DD.")
@click.option("--end", "end_date", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day, YYYY-MM-DD.")
@click.option("--timeframe", default="1Day", show_default=True)
@click.option("--idempotency-key", default=None, help="Repeat-safe key; the same key and request give the same job.")
@command_runner
async def market_sync(user_email, wait, symbols, start_date, end_date, timeframe, idempotency_key) -> None:
    """Fetch the missing bars of SYMBOLS into the bar store, as a market_data_sync job."""
    payload = {
        "symbols": list(symbols),
        "startDate": start_date.date().isoformat(),
        "endDate": end_date.date().isoformat(),
        "timeframe": timeframe,
    }
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        key = idempotency_key or f"market-sync-{uuid.uuid4()}"
        job, _ = await jobs.submit(platform, user, "market_data_sync", payload, key)
        emit(await follow(platform, user, job.id) if wait else job_view(job))


def register(cli: click.Group) -> None:
    cli.add_command(market_group)
