"""The paper ledger under concurrent orders, against the floor of our HTTP and database path.

    .venv/bin/python benchmarks/trading.py [--clients 20] [--orders 2000] [--accounts 20] [--rounds 3]
                                           [--database-url URL]

The API runs in this process, driven through httpx's ASGI transport (every request goes through the app's
middleware, auth and routes, not a socket), on PostgreSQL (a fresh schema of the given database, dropped
afterwards; default postgresql+psycopg://postgres@127.0.0.1:5432/test) or SQLite (``sqlite``). No worker or
Temporal server is needed: a fill is one request and one transaction.

Each round, for one account and then for --accounts accounts (one user each): --clients clients send
--orders orders in all, each client alternating a buy and a sell of 1 share at 100 on its account (client i
on account i mod the accounts), as fast as answers come. The floor: the same clients sending as many
GET /trading/accounts/{id} (a route that only reads the account, behind the same auth), on the same accounts.

Printed: orders per second and the p50/p95 latency of an order, beside the floor's; the ratios (medians over
the rounds). Checked after each run, in the database: every account's cash (the balance after its last cash
flow) equals the sum of its flows, every position the sum of its trades, and every order answered 200.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.app import create_app  # noqa: E402
from benchmarks.backtests_e2e import data, database, require, sign_in  # noqa: E402
from core.settings import Settings  # noqa: E402
from db.engine import Database  # noqa: E402
from db.models import TradingCashFlow, TradingPosition, TradingTrade  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CAPITAL = 10_000_000  # no buy is refused: the ledger's checks run, its refusals are not what is measured
ORDER = {"symbol": "BENCH", "quantity": 1, "price": 100}


async def clients(
    http: httpx.AsyncClient, requests: list[tuple[str, str, dict | None, dict[str, str]]], concurrency: int
) -> tuple[float, list[float]]:
    """The requests sent by ``concurrency`` clients, each taking the next as soon as its last is answered:
    (seconds for all, each request's latency)."""
    latencies: list[float] = []
    queue = iter(requests)

    async def client() -> None:
        for method, url, body, headers in queue:
            started = time.perf_counter()
            answer = await http.request(method, url, json=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            require(answer.status_code == 200, f"{method} {url}: {answer.status_code} {answer.text[:200]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def balanced(db: Database, account_ids: list[str]) -> None:
    """Every account's cash is the sum of its flows and every position the sum of its trades."""
    async with db.reading() as session:
        flows = defaultdict(list)
        for account_id, amount, balance, sequence in await session.execute(
            select(
                TradingCashFlow.account_id,
                TradingCashFlow.amount,
                TradingCashFlow.balance_after,
                TradingCashFlow.sequence,
            ).where(TradingCashFlow.account_id.in_(account_ids))
        ):
            flows[account_id].append((sequence, amount, balance))
        held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for account_id, symbol, side, quantity in await session.execute(
            select(TradingTrade.account_id, TradingTrade.symbol, TradingTrade.side, TradingTrade.quantity).where(
                TradingTrade.account_id.in_(account_ids)
            )
        ):
            held[account_id, symbol] += quantity if side == "BUY" else -quantity
        positions = {
            (account_id, symbol): quantity
            for account_id, symbol, quantity in await session.execute(
                select(TradingPosition.account_id, TradingPosition.symbol, TradingPosition.quantity).where(
                    TradingPosition.account_id.in_(account_ids)
                )
            )
        }
    for account_id in account_ids:
        ordered = sorted(flows[account_id])
        require([s for s, _, _ in ordered] == list(range(1, len(ordered) + 1)), f"{account_id}: a flow missing")
        total = sum((amount for _, amount, _ in ordered), Decimal(0))
        require(ordered[-1][2] == total, f"{account_id}: cash {ordered[-1][2]} but its flows sum to {total}")
    require(positions == dict(held), "a position differs from the sum of its trades")


async def run(args: argparse.Namespace, url: str, tmp: Path) -> dict[str, list[dict[str, float]]]:
    settings = Settings(database_url=url, var_dir=tmp / "var", argon2_time_cost=1, argon2_memory_cost=1024)
    app = create_app(settings)
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as http:
            headers = await sign_in(http, app.state.platform, args.accounts)
            accounts = []
            for user in headers:
                body = {"accountName": "bench", "initialCapital": CAPITAL}
                account_id = data(await http.post("/trading/accounts", json=body, headers=user), 201)["id"]
                # A holding first, so that a sell answered before the buy beside it still has shares to sell.
                holding = {**ORDER, "quantity": args.orders}
                data(await http.post(f"/trading/accounts/{account_id}/buy", json=holding, headers=user))
                accounts.append((account_id, user))
            for label, used in (("one account", accounts[:1]), (f"{args.accounts} accounts", accounts)):
                for _ in range(args.rounds):
                    results[label].append(await measured(http, used, args, app.state.platform.db))
    return results


async def measured(http: httpx.AsyncClient, accounts: list, args: argparse.Namespace, db: Database) -> dict:
    """One run: the orders, the ledger checked, then the floor's reads."""
    orders, reads = [], []
    for i in range(args.orders):
        account_id, user = accounts[i % len(accounts)]
        side = "buy" if (i // len(accounts)) % 2 == 0 else "sell"
        orders.append(("POST", f"/trading/accounts/{account_id}/{side}", ORDER, user))
        reads.append(("GET", f"/trading/accounts/{account_id}", None, user))
    order_time, order_latency = await clients(http, orders, args.clients)
    await balanced(db, [account_id for account_id, _ in accounts])
    read_time, read_latency = await clients(http, reads, args.clients)
    return {
        "orders_per_second": args.orders / order_time,
        "order_p50": percentile(order_latency, 0.5),
        "order_p95": percentile(order_latency, 0.95),
        "reads_per_second": args.orders / read_time,
        "read_p50": percentile(read_latency, 0.5),
        "read_p95": percentile(read_latency, 0.95),
    }


def report(results: dict[str, list[dict[str, float]]], label: str, args: argparse.Namespace) -> None:
    print(f"\nPaper ledger on {label}; {args.clients} clients, {args.orders} orders a run; medians of {args.rounds}")
    for scenario, rounds in results.items():
        m = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        print(f"  {scenario}:")
        print(
            f"    orders: {m['orders_per_second']:8.1f}/s  p50 {m['order_p50'] * 1000:6.1f} ms"
            f"  p95 {m['order_p95'] * 1000:6.1f} ms"
        )
        print(
            f"    floor (GET the account): {m['reads_per_second']:8.1f}/s  p50 {m['read_p50'] * 1000:6.1f} ms"
            f"  p95 {m['read_p95'] * 1000:6.1f} ms"
        )
        print(
            f"    orders / floor: throughput {m['orders_per_second'] / m['reads_per_second']:.2f}, "
            f"p50 latency ×{m['order_p50'] / m['read_p50']:.2f}"
        )
    print("checked: every account's cash equals the sum of its flows, every position the sum of its trades")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--orders", type=int, default=2000, help="orders per run, and as many reads (default 2000)")
    parser.add_argument("--accounts", type=int, default=20, help="accounts of the many-accounts runs (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported (default 3)")
    parser.add_argument("--database-url", default=POSTGRES, help="PostgreSQL URL, or 'sqlite' for a temporary file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quantpoly-trading-") as tmp:
        wanted = None if args.database_url == "sqlite" else args.database_url
        with database(wanted, Path(tmp)) as (url, label):
            results = asyncio.run(run(args, url, Path(tmp)))
    report(results, label, args)


if __name__ == "__main__":
    main()
