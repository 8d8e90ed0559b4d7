"""The flows of a backtest before ``BacktestWorkflowV3`` (``workflows.backtest``), kept registered for runs
started under them: ``BacktestWorkflow`` ran claim, load, run and finish as activities, retrying the claim;
``BacktestWorkflowV2`` waited for the ``slot_freed`` signal, then ran two activities (claim and load, then
compute and finish) or, behind the ``backtest-one-activity`` patch, one. A module of their own, because the
sandbox executes a workflow's module for every run of it.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from workflows.steps import (
        CANCELLED_ON_REQUEST,
        LOAD_BARS_ACTIVITY,
        NOT_QUEUED,
        NOT_RUNNABLE,
        RUN_ACTIVITY,
        BacktestSteps,
        ClaimInput,
        ComputeInput,
        JobInput,
        JobOutcome,
        JobSteps,
        SlotHolder,
        failure,
        task_options,
    )

# Runs started before a backtest became one activity ran two: claim and load, then compute and finish.
ONE_ACTIVITY_PATCH = "backtest-one-activity"


@workflow.defn
class BacktestWorkflow(JobSteps):
    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        return await self._run_steps(params, [LOAD_BARS_ACTIVITY, RUN_ACTIVITY])


@workflow.defn
class BacktestWorkflowV2(SlotHolder):
    """The backtest in its user's slot. A failure or a cancel that the activity could not record ends the job
    in one more activity."""

    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        info = workflow.info()
        claim = ClaimInput(params.job_id, info.workflow_id, info.run_id)
        options = task_options(params)
        lines: list[str] = []
        try:
            if workflow.patched(ONE_ACTIVITY_PATCH):
                ran = await self._claimed(
                    lambda: workflow.execute_activity_method(BacktestSteps.run_in_slot, claim, **options)
                )
                if ran.state == NOT_RUNNABLE:
                    return NOT_QUEUED
                assert ran.outcome is not None  # a claimed run always ends the job
                return ran.outcome
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
