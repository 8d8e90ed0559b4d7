"""A job: one durable workflow per row of ``jobs`` (workflow id ``job-<id>``), and the reconciler.

Only the workflow classes live here: the sandbox re-executes this module for every run, so what they share
with the activities and with other job workflows is in ``workflows.steps``, imported passed through.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from workflows.steps import (
        BOOKKEEPING_RETRY,
        BOOKKEEPING_TIMEOUT,
        CANCELLED_ON_REQUEST,
        CLAIM_RETRY,
        NOT_QUEUED,
        NOT_RUNNABLE,
        RECONCILE_ACTIVITY,
        ClaimInput,
        FinishInput,
        JobBookkeeping,
        JobInput,
        JobOutcome,
        JobSteps,
        SlotHolder,
        failure,
        task_options,
    )


@workflow.defn
class JobWorkflow(JobSteps):
    """A job whose task is the one activity registered under its task type's name (runs started before
    JobWorkflowV2)."""

    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        return await self._run_steps(params, [params.task_type])


@workflow.defn
class JobReconcilerWorkflow:
    """Started by the schedule ``job-reconciler-<task queue>``: brings stale read-model rows in line."""

    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(
            RECONCILE_ACTIVITY,
            result_type=int,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )


@workflow.defn
class JobWorkflowV2(SlotHolder):
    """A job whose task is the one activity registered under its task type's name, run in one of the user's
    slots: claim, task, then the last transaction, which hands the slot to the next waiting job."""

    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        info = workflow.info()
        claim = ClaimInput(params.job_id, info.workflow_id, info.run_id)
        try:
            claimed = await self._claimed(
                lambda: workflow.execute_activity_method(
                    JobBookkeeping.claim_slot,
                    claim,
                    start_to_close_timeout=BOOKKEEPING_TIMEOUT,
                    retry_policy=CLAIM_RETRY,
                )
            )
            if claimed.state == NOT_RUNNABLE:
                return NOT_QUEUED
            # The task activities predate typed inputs: they take the job id and read the rest from its row.
            result = await workflow.execute_activity(
                params.task_type, params.job_id, result_type=dict[str, Any], **task_options(params)
            )
        except ActivityError as error:
            if not isinstance(error.cause, CancelledError):
                return await self._finish(params, failure(error), [])
            await self._finish(params, CANCELLED_ON_REQUEST, [])  # the task was cancelled with the workflow
            raise
        except asyncio.CancelledError:
            await self._finish(params, CANCELLED_ON_REQUEST, [])
            raise
        outcome = JobOutcome("succeeded")
        finish = FinishInput(params.job_id, outcome, result, [])
        await workflow.execute_activity_method(
            JobBookkeeping.finish, finish, start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY
        )
        return outcome
