"""A backtest: the job workflow of a ``backtest_run`` job (workflow id ``backtest-<backtest id>``).

First the bars, through the market-data store (syncing only what it lacks); then the engine, in the worker's
process pool, from an activity that heartbeats its progress and stores the result as it finishes the job.
``BacktestWorkflow`` is the flow before slots were handed over by signal, kept for runs started under it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from temporalio import activity, workflow
from temporalio.exceptions import ActivityError, CancelledError

from workflows.job import (
    CANCELLED_ON_REQUEST,
    NOT_QUEUED,
    NOT_RUNNABLE,
    Claim,
    ClaimInput,
    JobInput,
    JobOutcome,
    JobSteps,
    SlotHolder,
    failure,
    task_options,
)

LOAD_BARS_ACTIVITY = "backtest_load_bars"
RUN_ACTIVITY = "backtest_run"


def workflow_id(backtest_id: str) -> str:
    return f"backtest-{backtest_id}"


@workflow.defn
class BacktestWorkflow(JobSteps):
    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        return await self._run_steps(params, [LOAD_BARS_ACTIVITY, RUN_ACTIVITY])


# --- since per-user slots are handed over by signal (see workflows/job.py) ------------------------------

PREPARE_ACTIVITY = "backtest_claim_and_load"
COMPUTE_ACTIVITY = "backtest_compute_and_finish"


@dataclass
class ComputeInput:
    job_id: str
    log_lines: list[str] = field(default_factory=list)  # the loading step's, written with the result


class BacktestSteps:
    """The two activities of a backtest, implemented by ``activities.backtests.BacktestActivities``."""

    @activity.defn(name=PREPARE_ACTIVITY)
    async def claim_and_load(self, claim: ClaimInput) -> Claim:
        """Claim the user's slot (queued → running) or report that the job waits; then bring the backtest's
        bars into the store and check there are enough."""
        raise NotImplementedError

    @activity.defn(name=COMPUTE_ACTIVITY)
    async def compute_and_finish(self, compute: ComputeInput) -> JobOutcome:
        """The engine over the stored bars; the result and the job's success in one transaction."""
        raise NotImplementedError


@workflow.defn
class BacktestWorkflowV2(SlotHolder):
    """Two activities in the common case, as few round trips as the work allows: claim and load, then compute
    and finish. A failure or a cancel ends the job in one more."""

    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        info = workflow.info()
        claim = ClaimInput(params.job_id, info.workflow_id, info.run_id)
        options = task_options(params)
        lines: list[str] = []
        try:
            claimed = await self._claimed(
                lambda: workflow.execute_activity_method(BacktestSteps.claim_and_load, claim, **options)
            )
            if claimed.state == NOT_RUNNABLE:
                return NOT_QUEUED
            lines = claimed.log_lines
            compute = ComputeInput(params.job_id, lines)
            return await workflow.execute_activity_method(BacktestSteps.compute_and_finish, compute, **options)
        except ActivityError as error:
            if not isinstance(error.cause, CancelledError):
                return await self._finish(params, failure(error), lines)
            await self._finish(params, CANCELLED_ON_REQUEST, lines)  # the step was cancelled with the workflow
            raise
        except asyncio.CancelledError:
            await self._finish(params, CANCELLED_ON_REQUEST, lines)
            raise
