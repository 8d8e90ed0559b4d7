"""Market-data commands (`quantpoly market ...`): the same services the /market routes use.

Every command prints what the matching route answers, with snake_case keys (the API's are camelCase); a
provider failure exits 1 with the code the route gives (UPSTREAM_RATE_LIMITED, ASSET_NOT_FOUND, ...).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import click
from pydantic.alias_generators import to_snake

from cli import context
from cli.jobs import find_user, follow, job_view, user_option, wait_option
from cli.output import command_runner, emit
from services import market

date_type = click.DateTime(["%Y-%m-%d"])


def snake(value: Any) -> Any:
    """The API's camelCase keys in snake_case, at every depth (values are left alone)."""
    if isinstance(value, dict):
        return {to_snake(k): snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake(v) for v in value]
    return value


def _table_wanted() -> bool:
    return bool(click.get_current_context().find_root().params.get("table"))


@click.group("market")
def market_group() -> None:
    """Market data from the configured provider (QUANTPOLY_MARKET_DATA_PROVIDER)."""


@market_group.command("sync")
@user_option
@wait_option
@click.argument("symbols", nargs=-1, required=True)
@click.option("--start", "start_date", required=True, type=date_type, help="First day, YYYY-MM-DD.")
@click.option("--end", "end_date", required=True, type=date_type, help="Last day, YYYY-MM-DD.")
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
        job, _ = await market.submit_task(platform, user, "market_data_sync", payload, key)
        emit(await follow(platform, user, job.id) if wait else job_view(job))


@market_group.command("search")
@click.argument("keyword")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 50))
@command_runner
async def market_search(keyword, limit) -> None:
    """Assets whose symbol or name contains KEYWORD, exact and prefix matches first."""
    if not 1 <= len(keyword) <= 64:
        raise click.BadParameter("must be 1 to 64 characters", param_hint="KEYWORD")
    async with context.platform(need_temporal=False) as platform:
        emit(snake(await market.search(platform, keyword, limit)))


@market_group.command("catalog")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 200))
@click.option("--market", "market_name", default=None, help="Only this exchange, e.g. NASDAQ.")
@click.option("--asset-class", default=None, help="Only this asset class, e.g. us_equity.")
@command_runner
async def market_catalog(limit, market_name, asset_class) -> None:
    """The tradable catalog of the provider."""
    async with context.platform(need_temporal=False) as platform:
        emit(snake(await market.catalog(platform, limit, market_name, asset_class)))


@market_group.command("catalog-detail")
@click.argument("symbol")
@command_runner
async def market_catalog_detail(symbol) -> None:
    """One asset of the catalog (ASSET_NOT_FOUND if the provider does not know it)."""
    async with context.platform(need_temporal=False) as platform:
        emit(snake(await market.catalog_item(platform, symbol)))


@market_group.command("symbols")
@command_runner
async def market_symbols() -> None:
    """Every symbol of the catalog."""
    async with context.platform(need_temporal=False) as platform:
        found = await market.symbols(platform)
    emit([{"symbol": s} for s in found] if _table_wanted() else found)


@market_group.command("quote")
@user_option
@click.argument("symbol")
@command_runner
async def market_quote(user_email, symbol) -> None:
    """The latest quote of SYMBOL (counted against the account's quote limit)."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        found, hit = await market.quote(platform, user, symbol)
        body = {"quote": market.quote_view(found), "metadata": {"cacheHit": hit, "source": platform.market.source}}
    body = snake(body)
    emit({**body["quote"], **body["metadata"]} if _table_wanted() else body)


@market_group.command("quotes")
@user_option
@click.argument("symbols", nargs=-1, required=True)
@command_runner
async def market_quotes(user_email, symbols) -> None:
    """Latest quotes of up to 50 SYMBOLS; an unknown one is an item with an error code, not a failure."""
    if len(symbols) > 50:
        raise click.BadParameter("at most 50 symbols", param_hint="SYMBOLS")
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        items = [item.model_dump(mode="json") for item in await market.quotes(platform, user, list(symbols))]
    if _table_wanted():
        emit(
            [
                {
                    "symbol": i["symbol"],
                    "status": i["status"],
                    "price": (i["quote"] or {}).get("price"),
                    "bid_price": (i["quote"] or {}).get("bid_price"),
                    "ask_price": (i["quote"] or {}).get("ask_price"),
                    "error_code": i["error_code"],
                    "cache_hit": i["cache_hit"],
                    "source": i["source"],
                }
                for i in items
            ]
        )
    else:
        emit({"items": items, "timestamp": datetime.now(UTC).isoformat()})


@market_group.command("history")
@click.argument("symbol")
@click.option("--start", "start_date", required=True, type=date_type, help="First day, YYYY-MM-DD.")
@click.option("--end", "end_date", required=True, type=date_type, help="Last day, YYYY-MM-DD.")
@click.option("--timeframe", default="1Day", show_default=True)
@click.option("--limit", default=None, type=click.IntRange(1, 50_000), help="Only the last N bars.")
@command_runner
async def market_history(symbol, start_date, end_date, timeframe, limit) -> None:
    """Every bar of SYMBOL in the range, straight from the provider (all pages)."""
    async with context.platform(need_temporal=False) as platform:
        candles = await market.history(platform, symbol, start_date.date(), end_date.date(), timeframe, limit)
        source = platform.market.source
    candles = snake(candles)
    if _table_wanted():
        emit(candles)
    else:
        emit({"symbol": symbol.upper(), "timeframe": timeframe, "source": source, "candles": candles})


@market_group.command("health")
@command_runner
async def market_health() -> None:
    """A live probe of the provider: transport, healthy, status, last latency and failure code."""
    async with context.platform(need_temporal=False) as platform:
        emit(snake(await market.provider_health(platform)))


def register(cli: click.Group) -> None:
    cli.add_command(market_group)
