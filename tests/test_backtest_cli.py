"""`quantpoly strategies|backtest ...` and `quantpoly demo` against the real stack."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from cli.demo import demo_password
from domain.passwords import is_strong_password
from tests.conftest import data

PASSWORD = "BacktestCli1Password"


def out(result) -> dict | list:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_backtest_from_the_command_line(stack, tmp_path):
    email, _, headers = await stack.new_account(PASSWORD)
    strategy = out(await stack.cli("strategies", "create", "--user", email, "--name", "cross", "--template", "macd"))
    inactive = await stack.cli("backtest", "run", strategy["id"], "--user", email, "--symbol", "AAPL")
    assert inactive.exit_code == 1 and "BACKTEST_STRATEGY_INACTIVE" in inactive.stderr
    out(await stack.cli("strategies", "activate", strategy["id"], "--user", email))

    run = await stack.cli(
        "backtest", "run", strategy["id"], "--user", email, "--symbol", "AAPL",
        "--start", "2022-01-01", "--end", "2023-12-31", "--commission", "0.001", "--wait",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    labels = [line.split("  ")[0] for line in run.stdout.splitlines()]
    assert {"Return", "Sharpe ratio", "Max drawdown", "Trades", "Win rate"} <= set(labels), run.stdout

    listed = out(await stack.cli("backtest", "list", "--user", email))
    assert listed["total"] == 1 and listed["items"][0]["status"] == "completed"
    backtest_id = listed["items"][0]["id"]
    api_result = data(await stack.http.get(f"/backtests/{backtest_id}/result", headers=headers))
    cli_result = out(await stack.cli("backtest", "result", backtest_id, "--user", email))
    assert cli_result["metrics"]["return_rate"] == api_result["metrics"]["returnRate"]
    assert "equity_curve" not in cli_result and len(cli_result["trades"]) == len(api_result["trades"])

    second = out(
        await stack.cli(
            "backtest", "run", strategy["id"], "--user", email, "--symbol", "MSFT",
            "--start", "2022-01-01", "--end", "2023-12-31",
        )
    )  # fmt: skip
    assert second["status"] in ("pending", "running", "completed")
    compared = await stack.cli("--table", "backtest", "compare", backtest_id, second["id"], "--user", email)
    assert compared.exit_code == 0 and backtest_id in compared.stdout

    report_path = tmp_path / "report.html"
    out(await stack.cli("backtest", "report", backtest_id, "--user", email, "--out", str(report_path)))
    page = report_path.read_text()
    HTMLParser().feed(page)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<script" not in page

    stranger = (await stack.new_account(PASSWORD))[0]
    denied = await stack.cli("backtest", "show", backtest_id, "--user", stranger)
    assert denied.exit_code == 1 and "BACKTEST_ACCESS_DENIED" in denied.stderr


async def test_demo_backtests_every_template(stack):
    demo = await stack.cli("demo", "--email", "demo-test@example.com")
    assert demo.exit_code == 0, demo.output
    rows = demo.stdout.splitlines()[1:]
    assert len(rows) == 6 and all(" completed " in row for row in rows), demo.stdout
    assert "/backtests/<id>/result" in demo.stderr and "workflows/backtest-" in demo.stderr
    again = await stack.cli("demo", "--email", "demo-test@example.com")
    assert again.exit_code == 0 and "existing account" in again.stderr


def test_the_demo_password_always_meets_the_policy():
    assert all(is_strong_password(demo_password()) for _ in range(2000))
