"""What every job workflow shares: its contracts with the activities (inputs, outcomes, activity names and
declarations, timeouts and retries) and the steps it runs (claim a slot, run the task, finish).

Workflow modules import this module passed through the sandbox (``workflow.unsafe.imports_passed_through``):
the sandbox re-executes a workflow's own module for every run, and building these data classes and
declarations each time cost a backtest's workflow more than its activity's engine. Everything here is
deterministic and keeps no state at module level, which is what passing it through requires.

A job's lifecycle: activities move it through queued → running → succeeded | failed | cancelled; the task
itself is the activity registered under the task type's name. Cancellation through Temporal ends in
``cancelled``. A separate reconciler, run by a Temporal Schedule, repairs jobs whose workflow was ended from
outside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeout

# Activity names, shared with activities/jobs.py.
START_ACTIVITY = "start_job"
FINISH_ACTIVITY = "finish_job"
RECONCILE_ACTIVITY = "reconcile_jobs"

# Raised by an activity for bad input: retrying cannot help.
NON_RETRYABLE = ["InvalidInput", "JobInputError"]


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


# Every bookkeeping step: a short transaction, retried until the database answers.
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
BOOKKEEPING_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


def failure(error: ActivityError) -> JobOutcome:
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
            outcome = failure(error)
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
        await workflow.execute_activity(
            FINISH_ACTIVITY,
            args=[job_id, outcome, result],
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )


# --- the job path since per-user slots are handed over by signal ----------------------------------------
#
# JobWorkflowV2 and BacktestWorkflowV2 are new workflow types rather than `workflow.patched` branches in the
# first ones: the flow differs in its activities, their inputs and a signal handler. The first types stay
# registered, unchanged, for runs started before this flow existed.

SLOT_FREED_SIGNAL = "slot_freed"
CLAIM_ACTIVITY = "job_claim_slot"
FINISH_AND_HAND_OVER_ACTIVITY = "job_finish_and_hand_over"
CLAIMED, WAITING, NOT_RUNNABLE = "claimed", "waiting", "not_runnable"
# A job that found no free slot waits for the signal of the job that frees one; the timer, doubling up to
# its cap, only covers a signal that never came (a worker killed between its commit and its signal, a job
# whose workflow was ended from outside).
FIRST_SLOT_WAIT = timedelta(seconds=1)
LONGEST_SLOT_WAIT = timedelta(seconds=30)


@dataclass
class ClaimInput:
    job_id: str
    workflow_id: str
    run_id: str


@dataclass
class Claim:
    state: str  # CLAIMED, WAITING or NOT_RUNNABLE
    log_lines: list[str] = field(default_factory=list)  # written with the job's last transaction
    outcome: JobOutcome | None = None  # when the activity that claimed also ran the task and finished the job


@dataclass
class FinishInput:
    job_id: str
    outcome: JobOutcome
    result: dict[str, Any] | None = None
    log_lines: list[str] = field(default_factory=list)


def task_options(params: JobInput) -> dict[str, Any]:
    """Options of a job's long activity: the tier's timeout and retries, plus attempts for lost workers."""
    return {
        "start_to_close_timeout": timedelta(seconds=params.timeout_seconds),
        "heartbeat_timeout": timedelta(seconds=params.heartbeat_timeout_seconds),
        # Task failures that retrying cannot fix are raised non-retryable by the activities.
        "retry_policy": RetryPolicy(
            maximum_attempts=params.max_retries + 1 + WORKER_LOSS_ATTEMPTS,
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }


CANCELLED_ON_REQUEST = JobOutcome("cancelled", "JOB_CANCELLED", "cancelled on request")
NOT_QUEUED = JobOutcome("cancelled", "JOB_NOT_RUNNABLE", "the job was no longer queued")


class SlotHolder:
    """A job that runs only in one of its user's concurrency slots for its task type: its claim activity
    takes one (waiting for it a while in its worker, see ``JobActivities.claimed_here``), or reports the job
    waiting; the workflow then waits for the ``slot_freed`` signal, which the job that frees a slot sends
    after its last transaction to a job not waiting in its own worker."""

    def __init__(self) -> None:
        self._slot_freed = False

    @workflow.signal(name=SLOT_FREED_SIGNAL)
    def slot_freed(self) -> None:
        self._slot_freed = True

    async def _claimed(self, attempt: Callable[[], Awaitable[Claim]]) -> Claim:
        """``attempt`` until it claims a slot or finds the job not runnable."""
        wait = FIRST_SLOT_WAIT
        while True:
            self._slot_freed = False  # before the attempt: a signal sent while it runs is not lost
            claim = await attempt()
            if claim.state != WAITING:
                return claim
            try:
                await workflow.wait_condition(lambda: self._slot_freed, timeout=wait)
            except TimeoutError:
                wait = min(wait * 2, LONGEST_SLOT_WAIT)

    @staticmethod
    async def _finish(params: JobInput, outcome: JobOutcome, lines: list[str]) -> JobOutcome:
        """The job's last transaction, when its task did not make it (failed, cancelled)."""
        finish = FinishInput(params.job_id, outcome, None, lines)
        await workflow.execute_activity_method(
            JobBookkeeping.finish, finish, start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY
        )
        return outcome


class JobBookkeeping:
    """The bookkeeping activities job workflows call, implemented by ``activities.jobs.JobActivities``:
    declared here so that workflows call them typed without importing what the implementation imports."""

    @activity.defn(name=CLAIM_ACTIVITY)
    async def claim_slot(self, claim: ClaimInput) -> Claim:
        """queued → running if one of the user's slots for the task type is free; else the job waits."""
        raise NotImplementedError

    @activity.defn(name=FINISH_AND_HAND_OVER_ACTIVITY)
    async def finish(self, finish: FinishInput) -> None:
        """The job's final status, result and log lines; its slot is handed to a waiting job."""
        raise NotImplementedError


# Claiming a slot is retried sooner than other bookkeeping: a job is waiting on it.
CLAIM_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=5))


# --- a backtest's activities ------------------------------------------------------------------------------

LOAD_BARS_ACTIVITY = "backtest_load_bars"  # BacktestWorkflow
RUN_ACTIVITY = "backtest_run"  # BacktestWorkflow
PREPARE_ACTIVITY = "backtest_claim_and_load"  # BacktestWorkflowV2 before one-activity runs
COMPUTE_ACTIVITY = "backtest_compute_and_finish"  # BacktestWorkflowV2 before one-activity runs
RUN_IN_SLOT_ACTIVITY = "backtest_run_in_slot"


@dataclass
class ComputeInput:
    job_id: str
    log_lines: list[str] = field(default_factory=list)  # the loading step's, written with the result


class BacktestSteps:
    """The activities of a backtest, implemented by ``activities.backtests.BacktestActivities``."""

    @activity.defn(name=RUN_IN_SLOT_ACTIVITY)
    async def run_in_slot(self, claim: ClaimInput) -> Claim:
        """Claim the user's slot (queued → running) or report that the job waits; once claimed, the whole
        backtest: its bars into the store, the engine, then the result and the job's outcome in one
        transaction (``Claim.outcome``)."""
        raise NotImplementedError

    @activity.defn(name=PREPARE_ACTIVITY)
    async def claim_and_load(self, claim: ClaimInput) -> Claim:
        """Claim the user's slot (queued → running) or report that the job waits; then bring the backtest's
        bars into the store and check there are enough."""
        raise NotImplementedError

    @activity.defn(name=COMPUTE_ACTIVITY)
    async def compute_and_finish(self, compute: ComputeInput) -> JobOutcome:
        """The engine over the stored bars; the result and the job's success in one transaction."""
        raise NotImplementedError
