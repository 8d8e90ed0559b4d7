"""A research sweep: the job workflow of a ``strategy_optimization_suggest`` job (workflow id
``research-<job id>``).

It claims the user's slot and prepares the bars in one activity, then hands trials out in batches: all at once,
a few batches in parallel, when the points are known in advance (grid, random); one batch after the other when
a sampler asks them from the recorded trials (TPE, CMA-ES). Each batch is an activity that records its trials;
the workflow keeps only counts and the best score, checks the budget between batches and continues as new
after ``BATCHES_PER_RUN`` batches. A last activity builds the result, unless the batch that ends the sweep
alone built it. A cancel stops the batches in flight
(their activities heartbeat per chunk of trials), keeps the recorded trials and ends the job ``cancelled``
with the result of what ran.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from workflows.steps import (
        CANCELLED_ON_REQUEST,
        NOT_QUEUED,
        NOT_RUNNABLE,
        ClaimInput,
        JobInput,
        JobOutcome,
        SlotHolder,
        failure,
        task_options,
    )
    from workflows.sweep_steps import (
        BATCHES_PER_RUN,
        CANCELLED,
        EXHAUSTED,
        PLANNED_BATCH,
        PLANNED_PARALLEL,
        BatchInput,
        BatchOutcome,
        FinishSweep,
        ResearchSteps,
        SegmentInput,
        SegmentOutcome,
        SweepEnd,
        SweepInput,
        SweepState,
        budget_spent,
        ran_out,
    )

# Writing a sweep to optuna's storage: an export, tried a few times, never the job's outcome.
MIRROR_TIMEOUT = timedelta(minutes=5)
MIRROR_RETRY = RetryPolicy(maximum_attempts=3)


@workflow.defn
class ResearchWorkflow(SlotHolder):
    @workflow.run
    async def run(self, params: SweepInput) -> JobOutcome:
        # A cancel waits for the batches in flight to stop (at their next heartbeat), so that nothing is
        # recorded after the result of what ran is built.
        options = {**task_options(params), "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED}
        state = params.state
        if state is None:
            info = workflow.info()
            claim = ClaimInput(params.job_id, info.workflow_id, info.run_id)
            try:
                prepared = await self._claimed_and_prepared(claim, options)
            except ActivityError as error:
                if not isinstance(error.cause, CancelledError):
                    return await self._finish(params, failure(error), [])
                await self._finish(params, CANCELLED_ON_REQUEST, [])  # cancelled while it prepared
                raise
            except asyncio.CancelledError:
                await self._finish(params, CANCELLED_ON_REQUEST, [])
                raise
            if prepared is None:
                return NOT_QUEUED
            if isinstance(prepared, JobOutcome):
                return prepared
            state = prepared
        try:
            batches = await self._sweep(params, state, options)
            if batches is not None and state.stop_reason is None:
                workflow.continue_as_new(dataclasses.replace(params, state=state))
            return await self._finished(params, state, cancelled=False)
        except ActivityError as error:
            if not isinstance(error.cause, CancelledError):
                return await self._finish(params, failure(error), [])
            await self._finished(params, state, cancelled=True)
            raise
        except asyncio.CancelledError:
            await self._finished(params, state, cancelled=True)
            raise

    async def _claimed_and_prepared(self, claim: ClaimInput, options: dict) -> SweepState | JobOutcome | None:
        prepared = None

        async def attempt():
            nonlocal prepared
            prepared = await workflow.execute_activity_method(ResearchSteps.claim_and_prepare, claim, **options)
            return prepared.claim

        claimed = await self._claimed(attempt)
        if claimed.state == NOT_RUNNABLE:
            return None
        if claimed.outcome is not None:  # ended in the activity (no bars, a deleted strategy)
            return claimed.outcome
        assert prepared is not None and prepared.plan is not None  # claimed, so planned
        plan = prepared.plan
        state = SweepState(plan, workflow.now().timestamp(), best=[None] * plan.windows)
        if prepared.ran is not None:  # a sweep of one batch, run where it was prepared
            state.next_number, state.batch = plan.planned[0], 1
            self._count(state, 0, prepared.ran)
        return state

    async def _sweep(self, params: SweepInput, state: SweepState, options: dict) -> int | None:
        """Batches until every window is done or the budget ends the sweep; the batches run, or None when the
        sweep is over (a number: this run took its share and continues as new)."""
        runs = 0
        while state.window < state.plan.windows and state.stop_reason is None:
            planned = state.plan.planned[state.window]
            if state.next_number >= planned:
                state.window, state.next_number, state.batch = state.window + 1, 0, 0
                continue
            if runs >= BATCHES_PER_RUN:
                return runs
            if state.plan.sequential:
                await self._segment(params, state, planned, options)
                runs += 1
                self._check_budget(state)
                continue
            inputs = self._round(params, state, planned)
            outcomes = await asyncio.gather(
                *(workflow.execute_activity_method(ResearchSteps.run_batch, i, **options) for i in inputs)
            )
            runs += len(inputs)
            for batch, outcome in zip(inputs, outcomes, strict=True):
                self._count(state, batch.window, outcome)
            self._check_budget(state)
        return None

    @staticmethod
    def _round(params: SweepInput, state: SweepState, planned: int) -> list[BatchInput]:
        """The next batches of points known in advance, of equal size (so that those running at once end
        together); a batch that ends the sweep alone is told so."""
        left = planned - state.next_number
        size = -(-left // -(-left // PLANNED_BATCH))
        inputs = []
        for _ in range(PLANNED_PARALLEL):
            if state.next_number >= planned:
                break
            count = min(size, planned - state.next_number)
            inputs.append(BatchInput(params.job_id, state.window, state.batch, state.next_number, count))
            state.next_number += count
            state.batch += 1
        if len(inputs) == 1 and state.next_number >= planned and state.window == state.plan.windows - 1:
            inputs[0].ends_sweep = SweepEnd(state.plan, state.started_at, state.best[state.window])
        return inputs

    async def _segment(self, params: SweepInput, state: SweepState, planned: int, options: dict) -> None:
        """A sampler's batches, from where the window stands, in one activity."""
        segment = SegmentInput(
            params.job_id, state.window, state.batch, state.next_number, planned, state.started_at, state.plan
        )
        outcome = await workflow.execute_activity_method(ResearchSteps.run_batches, segment, **options)
        state.next_number, state.batch = outcome.next_number, outcome.next_batch
        self._count(state, state.window, outcome)

    @staticmethod
    def _count(state: SweepState, window: int, outcome: BatchOutcome | SegmentOutcome) -> None:
        state.done += outcome.evaluated
        best = state.best[window]
        if outcome.best_score is not None and (
            best is None or (outcome.best_score > best if state.plan.maximize else outcome.best_score < best)
        ):
            state.best[window] = outcome.best_score
        if isinstance(outcome, BatchOutcome) and outcome.ended is not None:
            state.ended = outcome.ended
        if outcome.exhausted:
            # No more feasible points in this window: the next window, or the end.
            state.next_number = state.plan.planned[window]
            if window == state.plan.windows - 1:
                state.stop_reason = EXHAUSTED

    @staticmethod
    def _check_budget(state: SweepState) -> None:
        if state.stop_reason is None:
            elapsed = workflow.now().timestamp() - state.started_at
            state.stop_reason = budget_spent(state.plan, state.best[state.window], elapsed)

    async def _finished(self, params: JobInput, state: SweepState, *, cancelled: bool) -> JobOutcome:
        if state.ended is not None and not cancelled:
            outcome = state.ended
        else:
            reason = CANCELLED if cancelled else state.stop_reason or ran_out(state.plan)
            used_ms = round((workflow.now().timestamp() - state.started_at) * 1000)
            finish = FinishSweep(params.job_id, reason, used_ms, cancelled)
            outcome = await workflow.execute_activity_method(ResearchSteps.finish, finish, **task_options(params))
        try:
            await workflow.execute_activity_method(
                ResearchSteps.mirror, params.job_id, start_to_close_timeout=MIRROR_TIMEOUT, retry_policy=MIRROR_RETRY
            )
        except ActivityError:
            workflow.logger.warning("the sweep %s could not be written to optuna's storage", params.job_id)
        return outcome
