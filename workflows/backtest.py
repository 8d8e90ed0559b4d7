"""A backtest: the job workflow of a ``backtest_run`` job (workflow id ``backtest-<backtest id>``).

One activity in the common case, the same round trips as a workflow of one no-op activity: it claims the
user's slot, brings the bars into the store (syncing only what it lacks), runs the engine in the worker's
process pool, and stores the result as it finishes the job. A job that finds its user's slots taken waits for
one, in its activity while a job of the same worker may free it, then in the workflow for the ``slot_freed``
signal of the job that frees one, and tries again. A failure or a cancel that the activity could not record
ends the job in one more activity.

Earlier flows are in ``workflows.backtest_earlier``.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from workflows.steps import (
        CANCELLED_ON_REQUEST,
        NOT_QUEUED,
        NOT_RUNNABLE,
        BacktestSteps,
        ClaimInput,
        JobInput,
        JobOutcome,
        SlotHolder,
        failure,
        task_options,
    )


@workflow.defn
class BacktestWorkflowV3(SlotHolder):
    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        info = workflow.info()
        claim = ClaimInput(params.job_id, info.workflow_id, info.run_id)
        options = task_options(params)
        try:
            ran = await self._claimed(
                lambda: workflow.execute_activity_method(BacktestSteps.run_in_slot, claim, **options)
            )
        except ActivityError as error:
            if not isinstance(error.cause, CancelledError):
                return await self._finish(params, failure(error), [])
            await self._finish(params, CANCELLED_ON_REQUEST, [])  # the activity was cancelled with the workflow
            raise
        except asyncio.CancelledError:
            await self._finish(params, CANCELLED_ON_REQUEST, [])
            raise
        if ran.state == NOT_RUNNABLE:
            return NOT_QUEUED
        assert ran.outcome is not None  # a claimed run always ends the job
        return ran.outcome
