"""A seeded sweep whose worker process is killed (SIGKILL) mid-sweep resumes on a new worker without running
its recorded batches again, and ends with the same trials, in the same order, as a sweep never interrupted."""

from __future__ import annotations

import asyncio

from tests.conftest import data
from tests.test_backtests import active_strategy
from tests.test_research import TPE_BODY, all_trials, finished, path_of, sweep
from tests.test_worker_recovery import idle_stack, kill_worker, start_worker, stop_workers  # noqa: F401 (the fixture)
from workflows.sweep_steps import SAMPLER_BATCH

# A worker that stops for a long while before recording the sweep's third batch, after marking that it got
# there: the kill lands between a batch's evaluation and its record.
SLOW_WORKER = """
import asyncio, pathlib, worker
from activities.research import ResearchActivities
original = ResearchActivities._record
async def slow(self, batch, *args, **kwargs):
    if batch.batch == 2:
        pathlib.Path({marker!r}).touch()
        await asyncio.sleep(30)
    return await original(self, batch, *args, **kwargs)
ResearchActivities._record = slow
worker.main()
"""


async def test_a_killed_worker_resumes_the_same_sweep(idle_stack, tmp_path):  # noqa: F811 (the fixture imported)
    stack = idle_stack
    marker = tmp_path / "third-batch"
    first = start_worker(stack, SLOW_WORKER.format(marker=str(marker)))
    second = None
    try:
        _, _, headers = await stack.new_account("Recover1Password")
        strategy = await active_strategy(stack, headers, "moving_average", shortWindow=10, longWindow=50)
        interrupted = await sweep(stack, headers, strategy["id"], TPE_BODY)
        for _ in range(600):
            if marker.exists():
                break
            await asyncio.sleep(0.05)
        assert marker.exists()
        progress = data(
            await stack.http.get(
                f"/strategies/{strategy['id']}/research/results/{interrupted['taskId']}", headers=headers
            )
        )["progress"]
        assert progress["trialsDone"] == 2 * SAMPLER_BATCH  # two batches recorded, the third not
        kill_worker(first)

        second = start_worker(stack)
        resumed = await finished(stack, headers, strategy["id"], interrupted["taskId"], timeout=180)
        assert resumed["status"] == "succeeded", resumed["error"]
        uninterrupted = await sweep(stack, headers, strategy["id"], TPE_BODY)
        whole = await finished(stack, headers, strategy["id"], uninterrupted["taskId"])
        assert whole["status"] == "succeeded", whole["error"]

        trials = await all_trials(stack, headers, strategy["id"], interrupted["taskId"])
        assert len(trials) == 40
        assert path_of(trials) == path_of(await all_trials(stack, headers, strategy["id"], uninterrupted["taskId"]))
        best = [r["optimizationResult"]["bestCandidate"]["trialId"] for r in (resumed, whole)]
        assert best[0] == best[1]
    finally:
        await stop_workers(stack, first, second)
