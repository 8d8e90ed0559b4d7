"""`quantpoly research ...` against the real stack, and the sweep report on its own: the command line asks the
services what the routes ask and prints what they answer; the report is one self-contained, escaped document."""

from __future__ import annotations

import asyncio
import json
import re

from cli import sweep_report
from tests.conftest import data
from tests.test_report import parse

PASSWORD = "ResearchCli1Password"
HOSTILE = 'Cross <script>alert("x")</script> & co'
RANGE = ("--symbol", "AAPL", "--start", "2021-01-01", "--end", "2023-12-31", "--commission", "0.001")
GRID_3X3 = ("--method", "grid", "--param", "shortWindow=5:15:5", "--param", "longWindow=30:70:20")


def out(result) -> dict | list:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def new_strategy(stack, name: str = HOSTILE) -> tuple[str, str, dict]:
    """An account with an active moving-average strategy: (email, strategy id, auth headers)."""
    email, _, headers = await stack.new_account(PASSWORD)
    parameters = json.dumps({"shortWindow": 10, "longWindow": 50})
    created = out(
        await stack.cli(
            "strategies", "create", "--user", email, "--name", name,
            "--template", "moving_average", "--parameters", parameters,
        )
    )  # fmt: skip
    out(await stack.cli("strategies", "activate", created["id"], "--user", email))
    return email, created["id"], headers


async def test_a_grid_sweep_from_the_command_line(stack, tmp_path):
    email, strategy_id, headers = await new_strategy(stack)
    run = await stack.cli(
        "research", "optimize", strategy_id, "--user", email, *GRID_3X3, "--objective", "sharpeRatio",
        "--trials", "50", "--seed", "7", "--validation", "none", *RANGE, "--wait",
    )  # fmt: skip
    summary = out(run)
    assert "sweep succeeded" in run.stderr

    # The printed best is the API's.
    task_id = summary["task_id"]
    base = f"/strategies/{strategy_id}/research"
    api = data(await stack.http.get(f"{base}/results/{task_id}", headers=headers))["optimizationResult"]
    best = api["bestCandidate"]
    assert summary["status"] == "succeeded" and summary["method"] == "grid" and summary["trial_count"] == 9
    assert summary["objective"] == {"metric": "sharpeRatio", "direction": "maximize"}
    assert summary["best"] == {
        "trial_id": best["trialId"],
        "parameters": best["parameters"],
        "score": best["score"],
        "in_sample": best["metrics"],
        "out_of_sample": None,
    }
    assert best["score"] == max(t["score"] for t in api["trials"])
    assert summary["stop_reason"] == api["convergence"]["earlyStopReason"] == "parameter_space_exhausted"
    deflated = api["overfitting"]["deflatedSharpe"]
    assert summary["overfitting"]["deflated_sharpe"]["deflated_sharpe_ratio"] == deflated["deflatedSharpeRatio"]
    echo = api["metadata"]["inputEcho"]
    assert echo["config"]["commissionRate"] == 0.001 and echo["config"]["startDate"] == "2021-01-01"
    assert echo["parameterSpace"] == {
        "shortWindow": {"min": 5, "max": 15, "step": 5},
        "longWindow": {"min": 30, "max": 70, "step": 20},
    }
    assert api["metadata"]["seed"] == 7

    listed = out(await stack.cli("research", "results", strategy_id, "--user", email))
    assert listed["total"] == 1 and listed["items"][0]["task_id"] == task_id
    assert listed["items"][0]["optimization_result"]["trials"] == []
    assert out(await stack.cli("research", "results", strategy_id, "--user", email, "--method", "random"))["total"] == 0
    table = await stack.cli("--table", "research", "results", strategy_id, "--user", email)
    assert table.exit_code == 0 and task_id in table.stdout and "9/9" in table.stdout

    shown = out(await stack.cli("research", "show", strategy_id, task_id, "--user", email))
    assert shown["progress"]["trials_done"] == 9 and shown["optimization_result"]["trial_count"] == 9
    assert len(shown["optimization_result"]["trials"]) == 9
    assert shown["optimization_result"]["best_candidate"]["trial_id"] == best["trialId"]

    page = out(
        await stack.cli(
            "research", "trials", strategy_id, task_id, "--user", email,
            "--sort", "score", "--desc", "--page-size", "3",
        )
    )  # fmt: skip
    assert page["total"] == 9 and len(page["items"]) == 3 and page["items"][0]["trial_id"] == best["trialId"]
    scores = [t["score"] for t in page["items"]]
    assert scores == sorted(scores, reverse=True)
    feasible = out(await stack.cli("research", "trials", strategy_id, task_id, "--user", email, "--feasible"))
    infeasible = out(await stack.cli("research", "trials", strategy_id, task_id, "--user", email, "--infeasible"))
    assert feasible["total"] + infeasible["total"] == 9
    api_trials = data(
        await stack.http.get(f"{base}/results/{task_id}/trials", params={"pageSize": 50}, headers=headers)
    )
    assert [
        t["trial_id"]
        for t in out(await stack.cli("research", "trials", strategy_id, task_id, "--user", email))["items"]
    ] == [t["trialId"] for t in api_trials["items"]]

    # The report: every section, the strategy's hostile name escaped.
    path = tmp_path / "sweep.html"
    written = out(await stack.cli("research", "report", strategy_id, task_id, "--user", email, "--out", str(path)))
    assert written == {"task_id": task_id, "report": str(path)}
    page_html = path.read_text()
    checked = parse(page_html)
    assert not checked.stack and not checked.mismatches
    assert (
        "<script" not in page_html.lower() and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page_html
    )
    for label in ("Optimization history", "Mean Sharpe ratio over"):
        assert f'aria-label="{label}' in page_html, label
    assert page_html.count('class="cell"') == 9
    assert "no test period" in page_html
    assert "Deflated Sharpe ratio" in page_html and "Probability of backtest overfitting" in page_html

    # Someone else's account sees nothing of it.
    stranger = (await stack.new_account(PASSWORD))[0]
    denied = await stack.cli("research", "show", strategy_id, task_id, "--user", stranger)
    assert denied.exit_code == 1 and "RESEARCH_ACCESS_DENIED" in denied.stderr
    denied = await stack.cli("research", "cancel", task_id, "--user", stranger)
    assert denied.exit_code == 1 and "ACCESS_DENIED" in denied.stderr


async def test_a_holdout_sweep_prints_a_table_and_reports_out_of_sample(stack, tmp_path):
    email, strategy_id, headers = await new_strategy(stack, name="holdout")
    run = await stack.cli(
        "--table", "research", "optimize", strategy_id, "--user", email, *GRID_3X3, "--seed", "3",
        "--validation", "holdout", "--test-fraction", "0.3", "--constraint", "minTrades=1", *RANGE, "--wait",
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    listed = data(await stack.http.get(f"/strategies/{strategy_id}/research/results", headers=headers))
    task_id = listed["items"][0]["taskId"]
    api = data(await stack.http.get(f"/strategies/{strategy_id}/research/results/{task_id}", headers=headers))
    best = api["optimizationResult"]["bestCandidate"]
    assert f"best {best['trialId']}" in run.stdout
    assert re.search(r"^Sharpe ratio\s+\S+\s+\S+$", run.stdout, re.M), run.stdout
    assert "deflated Sharpe ratio" in run.stdout and "probability of backtest overfitting" in run.stdout
    assert api["optimizationResult"]["metadata"]["inputEcho"]["constraints"] == {"minTrades": 1.0}

    path = tmp_path / "holdout.html"
    out(await stack.cli("research", "report", strategy_id, task_id, "--user", email, "--out", str(path)))
    page_html = path.read_text()
    assert 'aria-label="In sample against out of sample"' in page_html and 'class="dot best"' in page_html
    window = api["optimizationResult"]["validation"]["windows"][0]
    assert window["testStart"] in page_html and "minTrades=1" in page_html


async def test_cancel_and_analyze_from_the_command_line(stack):
    email, strategy_id, _ = await new_strategy(stack, name="long sweep")
    started = out(
        await stack.cli(
            "research", "optimize", strategy_id, "--user", email, "--method", "random", "--trials", "5000",
            "--param", "shortWindow=2:40", "--param", "longWindow=10:120:2", *RANGE,
        )
    )  # fmt: skip
    assert started["task_type"] == "strategy_optimization_suggest"
    assert started["status"] in ("queued", "running")
    # Cancelled once it records trials (see the report on a cancel during the sweep's preparation).
    for _ in range(300):
        shown = out(await stack.cli("research", "show", strategy_id, started["task_id"], "--user", email))
        if shown["progress"]["trials_done"] >= 8:
            break
        await asyncio.sleep(0.1)
    assert shown["status"] == "running" and shown["progress"]["trials_planned"] == 5000
    cancelled = out(await stack.cli("research", "cancel", started["task_id"], "--user", email))
    assert cancelled["task_id"] == started["task_id"] and cancelled["status"] == "cancelled", cancelled["error"]
    shown = out(await stack.cli("research", "show", strategy_id, started["task_id"], "--user", email))
    assert shown["status"] == "cancelled" and 8 <= shown["progress"]["trials_done"] < 5000
    assert shown["optimization_result"]["convergence"]["early_stop_reason"] == "cancelled"
    kept = out(await stack.cli("research", "trials", strategy_id, started["task_id"], "--user", email))
    assert kept["total"] == shown["progress"]["trials_done"]
    only = out(await stack.cli("research", "results", strategy_id, "--user", email, "--status", "cancelled"))
    assert only["total"] == 1
    again = await stack.cli("research", "cancel", started["task_id"], "--user", email)
    assert again.exit_code == 1 and "INVALID_TRANSITION" in again.stderr

    analysed = out(await stack.cli("research", "analyze", strategy_id, "--user", email, "--days", "120", "--wait"))
    assert analysed["task_type"] == "strategy_performance_analyze" and analysed["status"] == "succeeded"
    assert analysed["result"]["analysisPeriodDays"] == 120 and analysed["result"]["symbol"] == "AAPL"
    queued = out(await stack.cli("research", "analyze", strategy_id, "--user", email))
    assert queued["status"] in ("queued", "running", "succeeded")


async def test_bad_options_are_refused_before_anything_runs(stack):
    email, strategy_id, headers = await new_strategy(stack, name="refusals")
    for bad in ("shortWindow=5-50", "shortWindow", "=5:10", "shortWindow=5:10:1:2", "stdDev=choice:", "x=1:nan"):
        refused = await stack.cli("research", "optimize", strategy_id, "--user", email, "--param", bad, *RANGE)
        assert refused.exit_code == 2, (bad, refused.output)
        assert "Invalid value for '--param'" in refused.stderr and "NAME=MIN:MAX[:STEP]" in refused.stderr, bad
    twice = await stack.cli(
        "research", "optimize", strategy_id, "--user", email,
        "--param", "shortWindow=5:10", "--param", "shortWindow=6:12", *RANGE,
    )  # fmt: skip
    assert twice.exit_code == 2 and "given twice" in twice.stderr
    constraint = await stack.cli("research", "optimize", strategy_id, "--user", email, "--constraint", "maxDrawdown")
    assert constraint.exit_code == 2 and "NAME=LIMIT" in constraint.stderr
    no_symbol = await stack.cli("research", "optimize", strategy_id, "--user", email, "--start", "2021-01-01")
    assert no_symbol.exit_code == 2 and "--symbol" in no_symbol.stderr

    # What only the service can tell is its error, with the problems it found.
    space = await stack.cli("research", "optimize", strategy_id, "--user", email, "--param", "shortWindow=10:5", *RANGE)
    assert space.exit_code == 1 and "RESEARCH_INVALID_PARAMETER_SPACE" in space.stderr
    assert "max must not be below min" in space.stderr
    metric = await stack.cli("research", "optimize", strategy_id, "--user", email, "--objective", "luck", *RANGE)
    assert metric.exit_code == 1 and "unknown objective metric" in metric.stderr
    assert data(await stack.http.get("/jobs", headers=headers))["total"] == 0


# --- the report on its own -----------------------------------------------------------------------------------


def hand_built(names: tuple[str, str] = ("fast<b>", "slow&")) -> tuple[dict, list[dict]]:
    """A finished holdout sweep over a 3 x 4 grid of two parameters with hostile names."""
    fast, slow = names
    trials = []
    for number, (a, b) in enumerate((a, b) for a in (2, 4, 6) for b in (10, 20, 30, 40)):
        score = a / 10 - abs(b - 20) / 50
        trials.append(
            {
                "trialId": f"w0-t{number}",
                "number": number,
                "window": 0,
                "method": "grid",
                "parameters": {fast: a, slow: b},
                "metric": "sharpeRatio",
                "score": score,
                "feasible": number != 3,
                "violations": [] if number != 3 else ["minTrades: tradeCount 1 below 2"],
                "state": "complete",
                "metrics": {"sharpeRatio": score, "returnRate": score / 10, "tradeCount": 5},
                "testMetrics": {"sharpeRatio": score / 2, "returnRate": score / 20, "tradeCount": 2},
            }
        )
    best = max((t for t in trials if t["feasible"]), key=lambda t: t["score"])
    result = {
        "taskId": "task-1",
        "taskType": "strategy_optimization_suggest",
        "strategyId": "strategy-1",
        "method": "grid",
        "version": "v3",
        "status": "succeeded",
        "progress": {"trialsDone": 12, "trialsPlanned": 12, "bestScore": best["score"], "bestTrialId": best["trialId"]},
        "optimizationResult": {
            "version": "v3",
            "method": "grid",
            "objective": {"metric": "sharpeRatio", "direction": "maximize"},
            "trials": trials,
            "trialCount": 12,
            "bestCandidate": best,
            "metrics": best["metrics"],
            "score": best["score"],
            "convergence": {
                "status": "converged",
                "earlyStopReason": "parameter_space_exhausted",
                "bestScore": best["score"],
                "bestSoFar": [],
            },
            "validation": {
                "mode": "holdout",
                "windows": [
                    {
                        "index": 0,
                        "trainStart": "2021-01-01",
                        "trainEnd": "2022-12-31",
                        "testStart": "2023-01-01",
                        "testEnd": "2023-12-31",
                        "bestTrialId": best["trialId"],
                        "bestParameters": best["parameters"],
                        "inSample": best["metrics"],
                        "outOfSample": best["testMetrics"],
                    }
                ],
            },
            "importances": {fast: 0.7, slow: 0.3},
            "overfitting": {
                "deflatedSharpe": {
                    "deflatedSharpeRatio": 0.42,
                    "sharpeRatio": 0.05,
                    "expectedMaximumSharpe": 0.08,
                    "trials": 12,
                    "observations": 500,
                },
                "probabilityOfBacktestOverfitting": {"probability": 0.61, "combinations": 70, "blocks": 8},
            },
            "suggestions": [{"code": "OVERFIT_RISK", "message": "check <it> out of sample"}],
            "metadata": {
                "seed": 11,
                "template": "moving_average",
                "symbol": "AAPL",
                "timeframe": "1Day",
                "inputEcho": {"config": {"startDate": "2021-01-01", "endDate": "2023-12-31"}, "constraints": {}},
            },
        },
    }
    return result, trials


def test_the_sweep_report_is_self_contained_escaped_and_complete():
    result, trials = hand_built()
    document = sweep_report.render_sweep_report(result, trials, strategy_name=HOSTILE)
    checked = parse(document)
    assert not checked.stack and not checked.mismatches
    lowered = document.lower()
    assert document.startswith("<!DOCTYPE html>") and "<script" not in lowered
    assert "http://" not in document and "https://" not in document and "<link" not in lowered
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in document
    assert "fast&lt;b&gt;" in document and "slow&amp;" in document and "fast<b>" not in document
    assert "check &lt;it&gt; out of sample" in document
    for text in ("moving_average", "AAPL", "grid", "seed 11", "2023-01-01", "parameter space exhausted"):
        assert text in document, text
    assert (
        document.count('class="cell"') == 12
        and 'aria-label="Mean Sharpe ratio over fast&lt;b&gt; and slow&amp;"' in document
    )
    assert document.count('class="bar"') == 2
    assert 'class="dot best"' in document and 'class="dot infeasible"' in document
    assert "0.420" in document and "0.610" in document


def test_the_sweep_report_skips_what_it_cannot_draw():
    result, trials = hand_built()
    for trial in trials:
        trial["parameters"] = {"fast": trial["parameters"]["fast<b>"]}
        trial["testMetrics"] = None
    found = result["optimizationResult"]
    found["importances"], found["validation"]["mode"], found["bestCandidate"]["testMetrics"] = {}, "none", None
    document = sweep_report.render_sweep_report(result, trials)
    assert "Fewer than two parameters vary" in document and 'class="cell"' not in document
    assert "no test period" in document
    parse(document)

    # Many trials with many distinct values: bounded dots, binned cells.
    many = [
        {**trials[0], "trialId": f"w0-t{i}", "number": i, "score": (i % 97) / 10, "parameters": {"a": i, "b": i % 53}}
        for i in range(6000)
    ]
    document = sweep_report.render_sweep_report({"status": "running", "optimizationResult": None}, many)
    assert "no result yet" in document
    assert document.count("<circle") <= sweep_report.MAX_DOTS + 2
    assert document.count('class="cell"') <= sweep_report.MAX_CELLS**2
