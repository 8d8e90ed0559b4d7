"""A backtest: the job workflow of a ``backtest_run`` job (workflow id ``backtest-<backtest id>``).

First the bars, through the market-data store (syncing only what it lacks); then the engine, in an
activity that heartbeats its progress and stores the result before the job is finished.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.job import JobInput, JobOutcome, JobSteps

LOAD_BARS_ACTIVITY = "backtest_load_bars"
RUN_ACTIVITY = "backtest_run"


def workflow_id(backtest_id: str) -> str:
    return f"backtest-{backtest_id}"


@workflow.defn
class BacktestWorkflow(JobSteps):
    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        return await self._run_steps(params, [LOAD_BARS_ACTIVITY, RUN_ACTIVITY])
