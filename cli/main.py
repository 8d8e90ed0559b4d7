"""`quantpoly`: the command line of the platform. JSON output by default, a table with --table."""

from __future__ import annotations

import os

import click

from cli import accounts, backtests, demo, indicators, jobs, market, stack, strategies
from cli import portfolios as portfolio_commands
from cli import research as research_commands
from cli import trading as trading_commands
from core.logging import configure_logging
from core.settings import get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--table", is_flag=True, help="Print a readable table instead of JSON.")
@click.version_option("0.1.0", prog_name="quantpoly")
def cli(table: bool) -> None:
    """QuantPoly: strategies, backtests, research and paper trading on Temporal."""
    configure_logging(get_settings().log_level if os.environ.get("QUANTPOLY_LOG_LEVEL") else "WARNING")


@cli.command()
def up() -> None:
    """Migrate, then run the Temporal dev server, a worker and the API until Ctrl-C; a crashed one is restarted
    with backoff while the others keep running."""
    configure_logging(get_settings().log_level)
    stack.run_stack()


@cli.command()
def api() -> None:
    """Serve the HTTP API (host and port from QUANTPOLY_API_HOST / QUANTPOLY_API_PORT)."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


@cli.command()
def worker() -> None:
    """Run one worker on the configured task queue (the same as `python worker.py`)."""
    import worker as worker_module

    worker_module.main()


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from db.migrate import upgrade

    url = get_settings().db_url
    upgrade(url, revision)
    click.echo(f"database at {revision}")


@cli.group()
def temporal() -> None:
    """The local Temporal server."""


@temporal.command("dev")
def temporal_dev() -> None:
    """Run the Temporal dev server as temporal-dev.yaml describes (Web UI included)."""
    command = stack.dev_server_command()
    os.execv(command[0], command)


accounts.register(cli)
jobs.register(cli)
market.register(cli)
indicators.register(cli)
strategies.register(cli)
backtests.register(cli)
portfolio_commands.register(cli)
research_commands.register(cli)
trading_commands.register(cli)
demo.register(cli)


def main() -> None:
    cli(prog_name="quantpoly")


if __name__ == "__main__":
    main()
