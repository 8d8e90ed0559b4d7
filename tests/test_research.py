"""Research sweeps over HTTP: every trial a backtest whose metric is its score, the best candidate the best,
out-of-sample figures, reproducible seeded samplers, invalid spaces refused, and ownership on every route."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time

import optuna
import pytest

from domain import backtest as engine_run
from domain.backtest import BacktestConfig
from integrations.market_data.synthetic import SyntheticProvider
from integrations.optuna_storage import storage_url, study_name
from tests.conftest import data, error
from tests.test_backtests import active_strategy, settled, submit

PASSWORD = "Research1Password"
CONFIG = {"symbol": "AAPL", "startDate": "2021-01-01", "endDate": "2023-12-31", "commissionRate": 0.001}
GRID_4X4 = {"shortWindow": {"min": 5, "max": 20, "step": 5}, "longWindow": {"min": 30, "max": 90, "step": 20}}


async def sweep(stack, headers, strategy_id: str, body: dict) -> dict:
    return data(
        await stack.http.post(f"/strategies/{strategy_id}/research/optimization-task", json=body, headers=headers), 202
    )


async def finished(stack, headers, strategy_id: str, task_id: str, timeout: float = 120) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = data(await stack.http.get(f"/strategies/{strategy_id}/research/results/{task_id}", headers=headers))
        if found["status"] in ("succeeded", "failed", "cancelled"):
            return found
        assert asyncio.get_running_loop().time() < deadline, f"sweep still {found['status']}"
        await asyncio.sleep(0.2)


def local_metrics(stack, template: str, parameters: dict, config: dict, synced: dict = CONFIG) -> dict:
    """The metrics of a backtest with these parameters and config, computed here from the bars the store holds:
    the provider's over the whole range that was synced first (``synced``: a sweep syncs its config's; the
    synthetic provider's opens depend on the range asked for)."""
    parsed = BacktestConfig.model_validate(config)
    provider = SyntheticProvider(seed=stack.settings.synthetic_seed)
    start = datetime.combine(date.fromisoformat(synced["startDate"]), time.min, tzinfo=UTC)
    end = datetime.combine(date.fromisoformat(synced["endDate"]), time.max, tzinfo=UTC)
    bars = provider.bars(parsed.symbol, parsed.timeframe, start, end)
    first = datetime.combine(parsed.start_date, time.min, tzinfo=UTC)
    last = datetime.combine(parsed.end_date, time.max, tzinfo=UTC)
    within = bars[(bars["timestamp"] >= first) & (bars["timestamp"] <= last)].reset_index(drop=True)
    return engine_run.run(within, template, parameters, parsed)["metrics"]


async def test_a_grid_sweep_scores_every_trial_by_its_backtest(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    body = {
        "method": "grid",
        "objective": {"metric": "sharpeRatio"},
        "parameterSpace": GRID_4X4,
        "budget": {"maxTrials": 100},
        "config": CONFIG,
        "validation": {"mode": "none"},
    }
    task = await sweep(stack, headers, strategy["id"], body)
    assert task["taskType"] == "strategy_optimization_suggest"
    done = await finished(stack, headers, strategy["id"], task["taskId"])
    assert done["status"] == "succeeded", done["error"]
    result = done["optimizationResult"]
    assert result["version"] == "v3" and result["trialCount"] == 16 and len(result["trials"]) == 16
    assert {(t["parameters"]["shortWindow"], t["parameters"]["longWindow"]) for t in result["trials"]} == {
        (s, long) for s in (5, 10, 15, 20) for long in (30, 50, 70, 90)
    }
    for trial in result["trials"]:
        expected = local_metrics(stack, "moving_average", trial["parameters"], CONFIG)
        assert trial["score"] == pytest.approx(expected["sharpeRatio"], abs=1e-9)
        assert trial["metrics"] == pytest.approx(expected, abs=1e-9)
    best = max(result["trials"], key=lambda t: t["score"])
    assert result["bestCandidate"]["trialId"] == best["trialId"]
    assert result["convergence"]["earlyStopReason"] == "parameter_space_exhausted"
    assert result["budgetUsage"]["usedTrials"] == 16 and result["budgetUsage"]["totalCandidates"] == 16

    # Optuna's storage holds the sweep as a study (written once the job has ended): optuna-dashboard shows it.
    await stack.temporal.get_workflow_handle(f"research-{task['taskId']}").result()
    study = optuna.load_study(study_name=study_name(task["taskId"], 0), storage=storage_url(stack.settings.db_url))
    assert sorted((t.number, t.value) for t in study.trials) == sorted(
        (t["number"], t["score"]) for t in result["trials"]
    )
    assert study.best_trial.params == {k: best["parameters"][k] for k in ("shortWindow", "longWindow")}

    # The best trial's score is the metric of a real backtest of the strategy with its parameters.
    data(
        await stack.http.put(f"/strategies/{strategy['id']}", json={"parameters": best["parameters"]}, headers=headers)
    )
    backtest = (await submit(stack, headers, strategy["id"], CONFIG))["backtestTask"]
    completed = await settled(stack, headers, backtest["id"])
    assert completed["metrics"]["sharpeRatio"] == pytest.approx(best["score"], abs=1e-9)


async def all_trials(stack, headers, strategy_id: str, task_id: str) -> list[dict]:
    url = f"/strategies/{strategy_id}/research/results/{task_id}/trials"
    found, page = [], 1
    while True:
        listed = data(await stack.http.get(url, params={"page": page, "pageSize": 25}, headers=headers))
        found += listed["items"]
        if len(found) >= listed["total"]:
            return found
        page += 1


def path_of(trials: list[dict]) -> list[tuple]:
    return [(t["window"], t["number"], tuple(sorted(t["parameters"].items())), t["score"]) for t in trials]


TPE_BODY = {
    "method": "bayesian",
    "objective": {"metric": "sharpeRatio"},
    "parameterSpace": {"shortWindow": {"min": 2, "max": 40}, "longWindow": {"min": 10, "max": 120, "step": 2}},
    "budget": {"maxTrials": 40},
    "seed": 7,
    "config": CONFIG,
    "validation": {"mode": "holdout"},
}


async def test_a_seeded_bayesian_sweep_repeats_its_trials(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    paths = []
    for _ in range(2):
        task = await sweep(stack, headers, strategy["id"], TPE_BODY)
        done = await finished(stack, headers, strategy["id"], task["taskId"])
        assert done["status"] == "succeeded", done["error"]
        trials = await all_trials(stack, headers, strategy["id"], task["taskId"])
        assert len(trials) == 40 and [t["number"] for t in trials] == list(range(40))
        assert all(t["parameters"]["shortWindow"] < t["parameters"]["longWindow"] for t in trials)
        paths.append((path_of(trials), done["optimizationResult"]["bestCandidate"]["trialId"]))
    assert paths[0] == paths[1]
    # TPE after its random start: not the random sampler's points.
    assert len({t[2] for t in paths[0][0]}) > 20


async def test_a_holdout_sweep_never_sees_the_test_period(stack, database_url):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    body = {**TPE_BODY, "budget": {"maxTrials": 16}}
    first = await sweep(stack, headers, strategy["id"], body)
    before = await finished(stack, headers, strategy["id"], first["taskId"])
    result = before["optimizationResult"]
    window = result["validation"]["windows"][0]
    assert window["trainStart"] == "2021-01-01" and window["testEnd"] == "2023-12-31"
    assert date.fromisoformat(window["trainEnd"]) < date.fromisoformat(window["testStart"])
    assert result["validation"]["outOfSample"]["returnRate"] is not None
    assert result["bestCandidate"]["testMetrics"]["barCount"] > 100
    train = {**CONFIG, "startDate": window["trainStart"], "endDate": window["trainEnd"]}
    test = {**CONFIG, "startDate": window["testStart"], "endDate": window["testEnd"]}
    best = result["bestCandidate"]
    assert best["score"] == pytest.approx(
        local_metrics(stack, "moving_average", best["parameters"], train)["sharpeRatio"], abs=1e-9
    )
    assert best["testMetrics"] == pytest.approx(
        local_metrics(stack, "moving_average", best["parameters"], test), abs=1e-9
    )
    assert result["overfitting"]["deflatedSharpe"]["trials"] == 16
    assert 0 <= result["overfitting"]["probabilityOfBacktestOverfitting"]["probability"] <= 1

    # Other prices in the test period: the same trials in the same order, other out-of-sample figures.
    await scale_closes(stack, "AAPL", window["testStart"], 1.5)
    second = await sweep(stack, headers, strategy["id"], body)
    after = await finished(stack, headers, strategy["id"], second["taskId"])
    trials_before = await all_trials(stack, headers, strategy["id"], first["taskId"])
    trials_after = await all_trials(stack, headers, strategy["id"], second["taskId"])
    assert path_of(trials_before) == path_of(trials_after)
    assert [t["testMetrics"] for t in trials_before] != [t["testMetrics"] for t in trials_after]
    assert after["optimizationResult"]["bestCandidate"]["parameters"] == best["parameters"]


async def scale_closes(stack, symbol: str, since: str, factor: float) -> None:
    """The stored bars of ``symbol`` from ``since`` on, with other prices, and one bar fewer (a worker keeps the
    bars it has read under their count: stored bars are never rewritten, except here)."""
    from sqlalchemy import delete, func, select, update

    from db.engine import Database
    from db.models import MarketBar

    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:
            start = datetime.combine(date.fromisoformat(since), time.min, tzinfo=UTC)
            await session.execute(
                update(MarketBar)
                .where(MarketBar.symbol == symbol, MarketBar.timestamp >= start)
                .values(open=MarketBar.open * factor, close=MarketBar.close * factor * 1.01)
            )
            last = await session.scalar(select(func.max(MarketBar.timestamp)).where(MarketBar.symbol == symbol))
            await session.execute(delete(MarketBar).where(MarketBar.symbol == symbol, MarketBar.timestamp == last))
    finally:
        await db.dispose()


async def test_invalid_requests_create_no_job_and_others_are_denied(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    url = f"/strategies/{strategy['id']}/research/optimization-task"
    for space in (
        {"shortWindow": {"min": 10, "max": 5}},
        {"shortWindow": {"min": 0, "max": 5}},
        {"nope": {"min": 1, "max": 5}},
        {"shortWindow": {"min": 1.5, "max": 5}},
        {"shortWindow": {"min": 300, "max": 300}, "longWindow": {"min": 10, "max": 20}},
        {"shortWindow": {"min": 2, "max": 5, "step": 0}},
    ):
        found = error(
            await stack.http.post(url, json={"parameterSpace": space, "config": CONFIG}, headers=headers), 422
        )
        assert found["code"] == "RESEARCH_INVALID_PARAMETER_SPACE", space
    found = error(
        await stack.http.post(url, json={"objective": {"metric": "luck"}, "config": CONFIG}, headers=headers), 422
    )
    assert found["code"] == "RESEARCH_INVALID_PARAMETER_SPACE"
    found = error(
        await stack.http.post(url, json={"config": {**CONFIG, "endDate": "2020-01-01"}}, headers=headers), 422
    )
    assert found["code"] == "BACKTEST_INVALID_CONFIG"
    jobs = data(await stack.http.get("/jobs", headers=headers))
    assert jobs["total"] == 0

    task = await sweep(stack, headers, strategy["id"], {"config": CONFIG, "budget": {"maxTrials": 8}})
    await finished(stack, headers, strategy["id"], task["taskId"])
    _, _, other = await stack.new_account(PASSWORD)
    base = f"/strategies/{strategy['id']}/research"
    for method, path, body in (
        ("POST", "/optimization-task", {}),
        ("POST", "/performance-task", {}),
        ("GET", "/results", None),
        ("GET", f"/results/{task['taskId']}", None),
        ("GET", f"/results/{task['taskId']}/trials", None),
    ):
        answer = await stack.http.request(method, base + path, json=body, headers=other)
        assert (
            error(answer, 403)["code"] == "STRATEGY_ACCESS_DENIED"
            or error(answer, 403)["code"] == "RESEARCH_ACCESS_DENIED"
        )
    assert error(await stack.http.post(f"/jobs/{task['taskId']}/cancel", headers=other), 403)


async def test_an_empty_body_starts_a_default_sweep_listed_in_results(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "mean_reversion")
    await settled(stack, headers, (await submit(stack, headers, strategy["id"], CONFIG))["backtestTask"]["id"])
    task = await sweep(stack, headers, strategy["id"], {})
    assert task["status"] in ("queued", "running", "succeeded")
    done = await finished(stack, headers, strategy["id"], task["taskId"])
    assert done["status"] == "succeeded", done["error"]
    result = done["optimizationResult"]
    assert result["method"] == "bayesian" and result["trialCount"] == 50
    assert result["metadata"]["inputEcho"]["config"]["symbol"] == "AAPL"
    assert set(result["metadata"]["inputEcho"]["parameterSpace"]) == {"window", "entryZ", "exitZ"}
    assert all(t["parameters"]["exitZ"] < t["parameters"]["entryZ"] for t in result["trials"])
    listed = data(await stack.http.get(f"/strategies/{strategy['id']}/research/results", headers=headers))
    assert listed["total"] == 1 and listed["items"][0]["taskId"] == task["taskId"]
    assert listed["items"][0]["taskType"] == "strategy_optimization_suggest"
    assert listed["items"][0]["progress"]["trialsDone"] == 50
    assert (
        data(
            await stack.http.get(
                f"/strategies/{strategy['id']}/research/results", params={"method": "grid"}, headers=headers
            )
        )["total"]
        == 0
    )


@pytest.mark.parametrize("method", ["random", "cmaes"])
async def test_random_and_cmaes_sweeps_respect_constraints(stack, method):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    body = {
        **TPE_BODY,
        "method": method,
        "budget": {"maxTrials": 24},
        "constraints": {"minTrades": 12, "maxDrawdown": 0.2},
    }
    task = await sweep(stack, headers, strategy["id"], body)
    done = await finished(stack, headers, strategy["id"], task["taskId"])
    assert done["status"] == "succeeded", done["error"]
    trials = done["optimizationResult"]["trials"]
    assert len(trials) == 24
    for trial in trials:
        breaks = trial["metrics"]["tradeCount"] < 12 or trial["metrics"]["maxDrawdown"] > 0.2
        assert trial["feasible"] == (not breaks and trial["score"] is not None)
        assert bool(trial["violations"]) == breaks


async def test_walk_forward_windows_stitch_their_test_periods(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    body = {
        **TPE_BODY,
        "method": "grid",
        "parameterSpace": GRID_4X4,
        "validation": {"mode": "walk_forward", "windows": 3},
    }
    task = await sweep(stack, headers, strategy["id"], body)
    done = await finished(stack, headers, strategy["id"], task["taskId"])
    assert done["status"] == "succeeded", done["error"]
    validation = done["optimizationResult"]["validation"]
    windows = validation["windows"]
    assert [w["index"] for w in windows] == [0, 1, 2]
    for earlier, later in zip(windows, windows[1:], strict=False):
        # Rolling windows: each one trains on the period the one before it was tested on.
        assert (later["trainStart"], later["trainEnd"]) == (earlier["testStart"], earlier["testEnd"])
    assert validation["outOfSample"]["barCount"] == sum(w["outOfSample"]["barCount"] for w in windows)
    assert done["optimizationResult"]["trialCount"] == 48


async def test_a_cancelled_sweep_keeps_its_trials(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    task = await sweep(stack, headers, strategy["id"], {**TPE_BODY, "budget": {"maxTrials": 5000}})
    url = f"/strategies/{strategy['id']}/research/results/{task['taskId']}"
    for _ in range(600):
        progress = data(await stack.http.get(url, headers=headers))["progress"]
        if progress["trialsDone"] >= 16:
            break
        await asyncio.sleep(0.05)
    assert progress["trialsPlanned"] == 5000 and progress["bestScore"] is not None
    cancelled = data(await stack.http.post(f"/jobs/{task['taskId']}/cancel", headers=headers))
    assert cancelled["status"] == "cancelled"
    found = data(await stack.http.get(url, headers=headers))
    result = found["optimizationResult"]
    assert result["convergence"] == {**result["convergence"], "status": "cancelled", "earlyStopReason": "cancelled"}
    kept = await all_trials(stack, headers, strategy["id"], task["taskId"])
    assert 16 <= len(kept) == result["trialCount"] == found["progress"]["trialsDone"] < 5000


async def test_the_trial_listing_pages_sorts_and_filters(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    body = {**TPE_BODY, "method": "grid", "parameterSpace": GRID_4X4, "constraints": {"minTrades": 8}}
    task = await sweep(stack, headers, strategy["id"], body)
    await finished(stack, headers, strategy["id"], task["taskId"])
    url = f"/strategies/{strategy['id']}/research/results/{task['taskId']}/trials"
    best_first = data(
        await stack.http.get(url, params={"sort": "score", "order": "desc", "pageSize": 5}, headers=headers)
    )
    assert best_first["total"] == 16 and len(best_first["items"]) == 5
    scores = [t["score"] for t in best_first["items"]]
    assert scores == sorted(scores, reverse=True)
    feasible = data(await stack.http.get(url, params={"feasible": "true", "pageSize": 50}, headers=headers))
    assert all(t["feasible"] and t["metrics"]["tradeCount"] >= 8 for t in feasible["items"])
    infeasible = data(await stack.http.get(url, params={"feasible": "false", "pageSize": 50}, headers=headers))
    assert feasible["total"] + infeasible["total"] == 16


async def test_a_performance_analysis_compares_with_buy_and_hold(stack):
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=5, longWindow=20)
    await settled(stack, headers, (await submit(stack, headers, strategy["id"], CONFIG))["backtestTask"]["id"])
    url = f"/strategies/{strategy['id']}/research/performance-task"
    task = data(await stack.http.post(url, json={"analysisPeriodDays": 120}, headers=headers), 202)
    assert task["taskType"] == "strategy_performance_analyze"
    for _ in range(300):
        job = data(await stack.http.get(f"/jobs/{task['taskId']}", headers=headers))
        if job["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.1)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["analysisPeriodDays"] == 120 and result["symbol"] == "AAPL"
    assert result["excessReturn"] == pytest.approx(
        result["strategy"]["returnRate"] - result["buyAndHold"]["returnRate"]
    )
    assert result["buyAndHold"]["tradeCount"] == 1 and len(result["earlier"]) == 1
    assert error(await stack.http.post(url, json={"analysisPeriodDays": 0}, headers=headers), 422)
    assert error(await stack.http.post(url, json={"analysisPeriodDays": 366}, headers=headers), 422)
    # The results listing holds sweeps only, as the reference's does.
    assert data(await stack.http.get(f"/strategies/{strategy['id']}/research/results", headers=headers))["total"] == 0


async def test_a_long_sweep_continues_as_new_and_loses_nothing(stack, monkeypatch):
    import workflows.sweep_steps

    monkeypatch.setattr(workflows.sweep_steps, "BATCHES_PER_RUN", 1)  # a new run after every round of batches
    _, _, headers = await stack.new_account(PASSWORD)
    strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
    body = {**TPE_BODY, "method": "grid", "parameterSpace": GRID_4X4, "validation": {"mode": "walk_forward"}}
    task = await sweep(stack, headers, strategy["id"], body)
    done = await finished(stack, headers, strategy["id"], task["taskId"])
    assert done["status"] == "succeeded", done["error"]
    assert done["optimizationResult"]["trialCount"] == 48 and done["progress"]["trialsDone"] == 48
    history = await stack.temporal.get_workflow_handle(f"research-{task['taskId']}").fetch_history()
    assert history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id


async def test_the_daily_schedule_analyses_every_active_strategy(stack):
    from db.engine import Database
    from db.models import Job
    from workflows import dispatch

    _, _, headers = await stack.new_account(PASSWORD)
    first = await active_strategy(stack, headers, "moving_average", shortWindow=2, longWindow=5)  # 30 days suffice
    second = await active_strategy(stack, headers, "momentum")
    db = Database.from_settings(stack.settings)
    try:
        async with db.session() as session:  # as the system schedule's firing writes it: no user, no strategy
            job = Job(user_id=None, task_type="strategy_performance_analyze", payload={}, idempotency_key="daily-1")
            session.add(job)
        await dispatch.start(
            stack.temporal, job, task_queue=stack.settings.task_queue, heartbeat_timeout_seconds=30, supersede=False
        )
        await stack.temporal.get_workflow_handle(dispatch.workflow_id(job)).result()
        async with db.reading() as session:
            ran = await session.get_one(Job, job.id)
    finally:
        await db.dispose()
    assert ran.status == "succeeded", ran.error_message
    analysed = {item["strategyId"]: item for item in ran.result["items"]}
    assert {first["id"], second["id"]} <= set(analysed) and ran.result["analysisPeriodDays"] == 30
    item = analysed[first["id"]]
    assert item["excessReturn"] == pytest.approx(item["returnRate"] - item["buyAndHoldReturn"])
