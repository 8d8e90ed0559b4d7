"""A job: one durable workflow per row of ``jobs`` (workflow id ``job-<id>``).

Activities move the job through queued → running → succeeded | failed | cancelled; the task itself is
the activity registered under the task type's name. Cancellation through Temporal ends in ``cancelled``.
A separate reconciler, run by a Temporal Schedule, repairs jobs whose workflow was ended from outside.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeout

# Activity names, shared with activities/jobs.py.
START_ACTIVITY = "start_job"
FINISH_ACTIVITY = "finish_job"
RECONCILE_ACTIVITY = "reconcile_jobs"

# Raised by an activity for bad input: retrying cannot help.
NON_RETRYABLE = ["InvalidInput", "JobInputError"]


def workflow_id(job_id: str) -> str:
    return f"job-{job_id}"


# Beyond the tier's own retries: attempts allowed for a lost worker (its heartbeats stop).
WORKER_LOSS_ATTEMPTS = 3


@dataclass
class JobInput:
    job_id: str
    task_type: str
    timeout_seconds: int
    max_retries: int
    heartbeat_timeout_seconds: int = 60


@dataclass
class JobOutcome:
    status: str
    error_code: str | None = None
    error_message: str | None = None


_BOOKKEEPING = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30)),
}


def _failure(error: ActivityError) -> JobOutcome:
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type and cause.type.isupper():
        return JobOutcome("failed", cause.type, cause.message)  # a failure our activities named
    if isinstance(cause, TemporalTimeout):
        return JobOutcome("failed", "TASK_TIMED_OUT", "the task did not finish in time")
    # Anything else is internal: its details stay in the worker's log, never in what users read.
    return JobOutcome("failed", "EXECUTION_FAILED", "the task failed unexpectedly; see the worker log")


class JobSteps:
    """A job's run: start, its task's activities in order (the last one's return is the job's result),
    finish. Each activity receives the job id and reads what it needs from the job's rows."""

    async def _run_steps(self, params: JobInput, steps: list[str]) -> JobOutcome:
        result: dict[str, Any] | None = None
        try:
            if not await self._start(params):
                return JobOutcome("cancelled", "JOB_NOT_RUNNABLE", "the job was no longer queued")
            for step in steps:
                result = await workflow.execute_activity(
                    step,
                    params.job_id,
                    result_type=dict[str, Any],
                    start_to_close_timeout=timedelta(seconds=params.timeout_seconds),
                    heartbeat_timeout=timedelta(seconds=params.heartbeat_timeout_seconds),
                    # Task failures that retrying cannot fix are raised non-retryable by the activities.
                    retry_policy=RetryPolicy(
                        maximum_attempts=params.max_retries + 1 + WORKER_LOSS_ATTEMPTS,
                        non_retryable_error_types=NON_RETRYABLE,
                    ),
                )
            outcome = JobOutcome("succeeded")
        except ActivityError as error:
            outcome = _failure(error)
        except asyncio.CancelledError:
            # Whether queued or running, a cancel request ends the job as cancelled.
            await self._finish(params.job_id, JobOutcome("cancelled", "JOB_CANCELLED", "cancelled on request"), None)
            raise
        await self._finish(params.job_id, outcome, result)
        return outcome

    @staticmethod
    async def _start(params: JobInput) -> bool:
        """queued → running; retries (the job stays queued) while the user's concurrency limit is reached."""
        info = workflow.info()
        return await workflow.execute_activity(
            START_ACTIVITY,
            args=[params.job_id, info.workflow_id, info.run_id],
            result_type=bool,
            start_to_close_timeout=timedelta(seconds=30),
            # Short, so that a job waiting for a concurrency slot starts soon after one frees up.
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=2)),
        )

    @staticmethod
    async def _finish(job_id: str, outcome: JobOutcome, result: dict[str, Any] | None) -> None:
        await workflow.execute_activity(FINISH_ACTIVITY, args=[job_id, outcome, result], **_BOOKKEEPING)


@workflow.defn
class JobWorkflow(JobSteps):
    """A job whose task is the one activity registered under its task type's name."""

    @workflow.run
    async def run(self, params: JobInput) -> JobOutcome:
        return await self._run_steps(params, [params.task_type])


@workflow.defn
class JobReconcilerWorkflow:
    """Started by the schedule ``job-reconciler-<task queue>``: brings stale read-model rows in line."""

    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(RECONCILE_ACTIVITY, result_type=int, **_BOOKKEEPING)
