"""A research sweep's activities: claim the user's slot and bring the bars into the store; run batches of
trials in the worker's process pool and record each batch in one transaction; build the result.

A batch reads its window's bars once (kept in the worker, see ``KeptArrays``) and sends them with each chunk
of trials to the pool. It heartbeats as each chunk finishes, so a cancel reaches it within a chunk's time, and
drops the chunks still waiting for a process. A batch already recorded (an attempt whose answer was lost) is
answered from its rows, never run twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, Table, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.jobs import (
    JobActivities,
    activity_error,
    append_logs,
    claim_slot,
    locked_job,
    record_outcome,
    record_success,
)
from activities.market_data import MarketDataActivities
from db.base import utcnow
from db.engine import Database, json_text
from db.models import Job, ResearchSweep, ResearchTrial
from domain import jobs as job_states
from domain import research_result, trials
from domain.backtest import BacktestConfig
from domain.research import GRID, RANDOM, Plan, SearchSpace
from domain.research_result import trial_id
from integrations.optuna_storage import MirroredTrial, OptunaMirror, study_name
from workflows.steps import CANCELLED_ON_REQUEST, CLAIMED, Claim, ClaimInput, FinishInput, JobOutcome
from workflows.sweep_steps import (
    SAMPLER_BATCH,
    SEGMENT_SECONDS,
    BatchInput,
    BatchOutcome,
    FinishSweep,
    Prepared,
    ResearchSteps,
    SegmentInput,
    SegmentOutcome,
    SweepEnd,
    SweepPlan,
    budget_spent,
    ending,
    one_batch,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
# Trials per task sent to the process pool: few enough that a cancel or a heartbeat waits little for one (a
# trial takes well under a millisecond), many enough that they share their indicators (see signals).
CHUNK = 100
# Sweeps' windows a worker keeps read (see _sweep).
KEPT_SWEEPS = 32
# A pooled call that has not ended after this long heartbeats.
BEAT_SECONDS = 1.0
_TRIALS = cast(Table, ResearchTrial.__table__)
_SWEEPS = cast(Table, ResearchSweep.__table__)
_JOBS = cast(Table, Job.__table__)


class ResearchActivities(ResearchSteps):
    def __init__(
        self,
        db: Database,
        market: MarketDataActivities,
        jobs: JobActivities,
        engines: Executor,
        processes: int,
        optuna: OptunaMirror,
    ) -> None:
        self._db = db
        self._market = market
        self._jobs = jobs
        self._engines = engines
        self._processes = processes  # of the pool: a batch is cut in as many chunks, at most CHUNK trials each
        self._optuna = optuna
        self._sweeps: OrderedDict[tuple[str, int], asyncio.Future[_Sweep]] = OrderedDict()

    # --- claim and prepare ----------------------------------------------------------------------------------

    @activity.defn(name="research_claim_and_prepare")
    async def claim_and_prepare(self, claim: ClaimInput) -> Prepared:
        async def attempt() -> Claim:
            async with self._db.session() as session:
                _, state = await claim_slot(session, claim.job_id, claim.workflow_id, claim.run_id)
            return Claim(state)

        claimed = await self._jobs.claimed_here(claim.workflow_id, attempt)
        if claimed.state != CLAIMED:
            return Prepared(claimed)
        try:
            plan = await self._plan(claim.job_id)
            await self._prepared_bars(claim.job_id, plan)
            planned = sweep_plan(plan)
            ran = None
            if one_batch(planned):
                whole = BatchInput(claim.job_id, 0, 0, 0, planned.planned[0], SweepEnd(planned, time.time(), None))
                ran = await self._one_batch(await self._sweep(claim.job_id, 0), whole)
        except ApplicationError as error:
            if not (error.non_retryable and error.type and error.type.isupper()):
                raise
            outcome = JobOutcome("failed", error.type, error.message)
            await self._jobs.finish(FinishInput(claim.job_id, outcome))
            return Prepared(Claim(CLAIMED, outcome=outcome))
        return Prepared(Claim(CLAIMED), planned, ran)

    async def _prepared_bars(self, job_id: str, plan: Plan) -> None:
        """Every bar of the sweep's range in the store, and enough of them in each window to trade."""
        config = BacktestConfig.model_validate(plan.config)
        lines: list[str] = []  # written together, once the bars are known to suffice
        item = await self._market.sync_symbol(
            job_id, config.span().symbol, config.as_sync(), lines=lines, on_progress=activity.heartbeat
        )
        if item["status"] != "ok":
            raise activity_error(
                "BACKTEST_HISTORY_UNAVAILABLE",
                f"no bars for {config.symbol} ({item['errorCode']})",
                retryable=item["retryable"],
            )
        for index in range(len(plan.windows)):
            train = (await self._sweep(job_id, index, plan)).train  # kept for the batches this worker runs
            if len(train.bars) < 3:
                await append_logs(self._db, job_id, lines)
                raise activity_error(
                    "BACKTEST_INSUFFICIENT_DATA",
                    f"{len(train.bars)} bars in the training period of window {index}: too few to trade",
                    retryable=False,
                )
        lines.append(f"{plan.method} sweep of {plan.template} on {config.symbol}: ready")
        await append_logs(self._db, job_id, lines)

    # --- batches --------------------------------------------------------------------------------------------

    @activity.defn(name="research_run_batch")
    async def run_batch(self, batch: BatchInput) -> BatchOutcome:
        return await self._one_batch(await self._sweep(batch.job_id, batch.window), batch)

    @activity.defn(name="research_run_batches")
    async def run_batches(self, segment: SegmentInput) -> SegmentOutcome:
        """Batches asked of the sampler one after the other, the history kept between them, until the window's
        trials are done, the budget ends, or ``SEGMENT_SECONDS`` pass (the workflow then asks for more).

        A batch is recorded while the next one is asked and evaluated (the sampler reads the history kept here,
        not the database), one record at a time and in order, so what is recorded is always whole batches from
        the segment's start; an attempt after a lost one starts after them."""
        sweep = await self._sweep(segment.job_id, segment.window)
        history = await self._history(segment.job_id, segment.window, before=segment.planned)
        earlier = await self._recorded(
            BatchInput(segment.job_id, segment.window, segment.batch, segment.first, segment.planned - segment.first),
            sweep.plan,
        )
        evaluated = earlier.evaluated if earlier else 0
        best = (earlier.best_score, earlier.best_number) if earlier and earlier.best_score is not None else None
        number, batch_number = len(history), segment.batch + -(-evaluated // SAMPLER_BATCH)
        exhausted = evaluated % SAMPLER_BATCH != 0 and number < segment.planned  # a short batch ended the space
        started = time.monotonic()
        spent: str | None = None
        recording: asyncio.Task[JobOutcome | None] | None = None
        try:
            while number < segment.planned and not exhausted:
                batch = BatchInput(
                    segment.job_id, segment.window, batch_number, number, min(SAMPLER_BATCH, segment.planned - number)
                )
                proposals, outcomes = await self._asked_and_evaluated(sweep, batch, history)
                if recording is not None:
                    await recording  # the batch before, recorded first
                points = {batch.first + i: proposal for i, proposal in enumerate(proposals)}
                recording = asyncio.create_task(self._record(batch, sweep.plan, outcomes, points))
                history += [_recorded(outcome, points[outcome.number]) for outcome in outcomes]
                found = research_result.best_of(outcomes, sweep.plan.maximize)
                if found is not None and sweep.plan.objective().better(found.score, best and best[0]):
                    best = (found.score, found.number)
                evaluated, number, batch_number = evaluated + len(outcomes), number + batch.count, batch_number + 1
                exhausted = len(proposals) < batch.count
                activity.heartbeat(f"{number} of {segment.planned} trials")
                spent = budget_spent(segment.plan, best and best[0], time.time() - segment.started_at)
                if spent or time.monotonic() - started >= SEGMENT_SECONDS:
                    break
            if recording is not None:
                await recording
            if number < segment.planned and not exhausted and not spent:  # paused: the window goes on
                await self._mirrored_while_running(segment.job_id, sweep.plan, segment.window)
        except asyncio.CancelledError:
            if recording is not None:
                recording.cancel()  # its transaction rolls back: the batch is recorded whole or not at all
            raise
        score, best_number = best if best is not None else (None, None)
        return SegmentOutcome(evaluated, score, best_number, number, batch_number, exhausted)

    async def _mirrored_while_running(self, job_id: str, plan: Plan, window: int) -> None:
        """The window's trials so far in optuna's storage, for a dashboard watching a long sweep: an export,
        never the sweep's failure; the mirror activity writes what this misses once the job has ended (and so
        all of a window that a segment ends)."""
        try:
            await self._mirrored(job_id, plan, window, await self._trial_rows(job_id, window))
        except Exception:
            log.warning("could not write sweep %s to optuna's storage", job_id, exc_info=True)

    async def _one_batch(self, sweep: _Sweep, batch: BatchInput) -> BatchOutcome:
        """A batch of points known in advance, evaluated and recorded (or, when an earlier attempt recorded
        them, as it did)."""
        recorded = await self._recorded(batch, sweep.plan)
        if recorded is not None:
            return recorded
        proposals = self._planned_points(sweep, batch)
        outcomes = await self._evaluated(sweep, [(number, p.parameters) for number, p in proposals])
        points = {number: proposal for number, proposal in proposals}
        found = research_result.best_of(outcomes, sweep.plan.maximize)
        score, number = (found.score, found.number) if found else (None, None)
        exhausted = len(proposals) < batch.count
        ending_sweep = None
        if batch.ends_sweep is not None:
            end = batch.ends_sweep
            best = score if score is not None and sweep.plan.objective().better(score, end.best) else end.best
            elapsed = time.time() - end.started_at
            reason = ending(end.plan, exhausted=exhausted, best=best, elapsed_seconds=elapsed)
            ending_sweep = FinishSweep(batch.job_id, reason, round(elapsed * 1000))
        ended = await self._record(batch, sweep.plan, outcomes, points, ending_sweep)
        if ended is None:
            recorded = await self._recorded(batch, sweep.plan)  # by an attempt that ran at the same time
            if recorded is None:  # no such batch: the sweep's job was deleted
                raise activity_error("RESEARCH_NOT_FOUND", "the sweep was deleted", retryable=False)
            return recorded
        return BatchOutcome(len(outcomes), score, number, exhausted, ended if ending_sweep else None)

    async def _asked_and_evaluated(
        self, sweep: _Sweep, batch: BatchInput, history: list[trials.Recorded]
    ) -> tuple[list[trials.Proposal], list[trials.TrialOutcome]]:
        """The sampler's points for the batch and their backtests, in one call to the pool."""
        plan = sweep.plan
        # The window's seed, so that walk-forward windows do not all ask the same first points.
        seed = trials.batch_seed(plan.seed, batch.window)
        ask = trials.Ask(
            sweep.space,
            plan.method,
            plan.maximize,
            seed,
            batch.batch,
            list(history),
            batch.count,
            bool(plan.constraints),
        )
        run = trials.AskAndRun(ask, plan.template, sweep.train, sweep.test, plan.metric, plan.constraints, batch.first)
        ((proposals, outcomes),) = await self._pooled_all([(trials.propose_and_evaluate, run)])
        return proposals, outcomes

    async def _evaluated(self, sweep: _Sweep, numbered: list[tuple[int, dict[str, Any]]]) -> list[trials.TrialOutcome]:
        """Backtests of the trials in the process pool, in chunks spread over its processes."""
        size = max(1, min(CHUNK, -(-len(numbered) // self._processes)))
        batches = [
            trials.TrialBatch(
                sweep.plan.template,
                sweep.train,
                sweep.test,
                numbered[i : i + size],
                sweep.plan.metric,
                sweep.plan.constraints,
            )
            for i in range(0, len(numbered), size)
        ]
        return [
            outcome
            for chunk in await self._pooled_all([(trials.evaluate_batch, b) for b in batches])
            for outcome in chunk
        ]

    def _planned_points(self, sweep: _Sweep, batch: BatchInput) -> list[tuple[int, trials.Proposal]]:
        """The batch's points, numbered, of a sweep whose points are known in advance: its listed ones, a grid's
        in order, or a random sweep's (each drawn from its own number)."""
        plan, space = sweep.plan, sweep.space
        numbers = range(batch.first, batch.first + batch.count)
        listed = plan.points if plan.points is not None else sweep.grid
        if listed is not None:
            chosen = listed[batch.first : batch.first + batch.count]
            return [(n, _planned(space, p)) for n, p in zip(numbers, chosen, strict=False)]
        seed = trials.batch_seed(plan.seed, batch.window)
        drawn = ((n, trials.random_point(space, seed, n)) for n in numbers)
        return [(n, _planned(space, p)) for n, p in drawn if p is not None]

    async def _record(
        self,
        batch: BatchInput,
        plan: Plan,
        outcomes: list[trials.TrialOutcome],
        points: dict[int, trials.Proposal],
        ending: FinishSweep | None = None,
    ) -> JobOutcome | None:
        """The batch's trials, the sweep's progress and the job's, in one transaction; with ``ending``, the
        sweep's result too (built from the rows recorded before and these) and the job's outcome. None when an
        attempt recorded the batch first; else the job's outcome (running, unless the batch ended it)."""
        rows = [_row(batch, outcome, points[outcome.number]) for outcome in outcomes]
        best = research_result.best_of(outcomes, plan.maximize)
        result = None
        if ending is not None:
            earlier = await self._trial_rows(batch.job_id, before=(batch.window, batch.first))
            # Built in the process pool while the trials are written.
            result = asyncio.ensure_future(self._result(plan, earlier + rows, ending))
        try:
            async with self._db.session() as session:
                connection = await session.connection()
                if rows:
                    await _insert_trials(connection, rows)
                await connection.execute(_progress(batch.job_id, batch.window, len(rows), best, plan.maximize))
                await connection.execute(
                    update(_JOBS)
                    .where(_JOBS.c.id == batch.job_id, _JOBS.c.status == job_states.RUNNING)
                    .values(progress=_done_fraction(batch.job_id).scalar_subquery(), updated_at=utcnow())
                )
                if ending is None or result is None:
                    return JobOutcome(job_states.RUNNING)
                outcome, waiting = await _stored(session, ending, await result)
        except IntegrityError:
            return None
        finally:
            if result is not None and not result.done():
                result.cancel()
        await self._jobs.hand_over(waiting)
        return outcome

    async def _recorded(self, batch: BatchInput, plan: Plan) -> BatchOutcome | None:
        async with self._db.reading() as session:
            rows = (
                await session.execute(
                    select(ResearchTrial.number, ResearchTrial.score, ResearchTrial.feasible).where(
                        ResearchTrial.job_id == batch.job_id,
                        ResearchTrial.window == batch.window,
                        ResearchTrial.number >= batch.first,
                        ResearchTrial.number < batch.first + batch.count,
                    )
                )
            ).all()
        if not rows:
            return None
        best = research_result.best_of(
            [research_result.Scored(number, score, feasible) for number, score, feasible in rows], plan.maximize
        )
        return BatchOutcome(
            len(rows), best.score if best else None, best.number if best else None, len(rows) < batch.count
        )

    async def _history(self, job_id: str, window: int, before: int, since: int = 0) -> list[trials.Recorded]:
        async with self._db.reading() as session:
            rows = (
                await session.execute(
                    select(
                        ResearchTrial.point,
                        ResearchTrial.score,
                        ResearchTrial.state,
                        ResearchTrial.constraint_values,
                        ResearchTrial.system_attrs,
                    )
                    .where(ResearchTrial.job_id == job_id, ResearchTrial.window == window)
                    .where(ResearchTrial.number >= since, ResearchTrial.number < before)
                    .order_by(ResearchTrial.number)
                )
            ).all()
        return [
            trials.Recorded(point, score if state == "complete" else None, list(constraints), dict(attrs))
            for point, score, state, constraints, attrs in rows
        ]

    # --- the result -----------------------------------------------------------------------------------------

    @activity.defn(name="research_finish")
    async def finish(self, finish: FinishSweep) -> JobOutcome:
        return await self._ended(finish)

    async def _ended(self, finish: FinishSweep) -> JobOutcome:
        """The result built from the recorded trials and stored with the job's outcome."""
        plan = await self._plan(finish.job_id)
        body = await self._result(plan, await self._trial_rows(finish.job_id), finish)
        async with self._db.session() as session:
            outcome, waiting = await _stored(session, finish, body)
        await self._jobs.hand_over(waiting)
        return outcome

    async def _result(self, plan: Plan, rows: list[dict[str, Any]], finish: FinishSweep) -> dict[str, Any]:
        """The job's result: the sweep's ``v3`` body from its trials' rows (every window's, in order)."""
        windows = await asyncio.gather(
            *(
                self._window_figures(finish.job_id, plan, index, [row for row in rows if row["window"] == index])
                for index in range(len(plan.windows))
            )
        )
        return {
            "optimizationResult": research_result.body(plan, rows, windows, finish.stop_reason, finish.used_duration_ms)
        }

    @activity.defn(name="research_mirror")
    async def mirror(self, job_id: str) -> int:
        plan = await self._plan(job_id)
        written = 0
        for index in range(len(plan.windows)):
            written += await self._mirrored(job_id, plan, index, await self._trial_rows(job_id, index))
        return written

    async def _window_figures(
        self, job_id: str, plan: Plan, index: int, rows: list[dict[str, Any]]
    ) -> research_result.WindowFigures:
        """A window's best trial and what is computed after its sweep: the best's returns (for the deflated
        Sharpe ratio and the stitched out-of-sample equity), the importances and the overfitting figures."""
        sweep = await self._sweep(job_id, index)  # the window's bars, as its trials read them
        request = research_result.WindowRequest(plan, index, rows, sweep.train, sweep.test)
        importances, pbo, runs = await self._pooled_all(research_result.window_tasks(request))
        return research_result.window_figures(index, importances, pbo, runs)

    async def _trial_rows(
        self, job_id: str, window: int | None = None, before: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """The sweep's recorded trials in order: all, a window's, or those before (window, number)."""
        if before == (0, 0):
            return []
        query = select(_TRIALS).where(_TRIALS.c.job_id == job_id).order_by(_TRIALS.c.window, _TRIALS.c.number)
        if window is not None:
            query = query.where(_TRIALS.c.window == window)
        if before is not None:
            query = query.where(
                (_TRIALS.c.window < before[0]) | ((_TRIALS.c.window == before[0]) & (_TRIALS.c.number < before[1]))
            )
        async with self._db.reading() as session:
            return [dict(row._mapping) for row in await session.execute(query)]

    async def _mirrored(self, job_id: str, plan: Plan, window: int, rows: list[dict[str, Any]]) -> int:
        """The window's recorded trials in optuna's storage, for optuna-dashboard: what it lacks, in one
        transaction; how many that was."""
        mirrored = [
            MirroredTrial(
                row["number"],
                "COMPLETE" if row["state"] == "complete" and row["score"] is not None else "FAIL",
                row["point"],
                row["score"],
                {"metrics": row["metrics"], "testMetrics": row["test_metrics"], "violations": row["violations"]},
            )
            for row in rows
        ]
        distributions = trials.distributions_of(plan.search_space())
        name = study_name(job_id, window)
        return await asyncio.to_thread(self._optuna.write, name, plan.maximize, distributions, mirrored)

    # --- shared ---------------------------------------------------------------------------------------------

    async def _sweep(self, job_id: str, window: int, plan: Plan | None = None) -> _Sweep:
        """The window's plan, space and periods, read once per worker for the sweep's batches (concurrent
        batches share the first read): a sweep's plan never changes, and its batches then run on the same bars."""
        key = (job_id, window)
        kept = self._sweeps.get(key)
        if kept is None:
            kept = self._sweeps[key] = asyncio.ensure_future(self._read_sweep(job_id, window, plan))
            while len(self._sweeps) > KEPT_SWEEPS:
                self._sweeps.popitem(last=False)
        else:
            self._sweeps.move_to_end(key)
        try:
            return await asyncio.shield(kept)
        except Exception:
            self._sweeps.pop(key, None)  # read again next time
            raise

    async def _read_sweep(self, job_id: str, window: int, plan: Plan | None) -> _Sweep:
        plan = plan or await self._plan(job_id)
        train, test = await self._periods(plan, window)
        space = plan.search_space()
        # A grid's planned points, listed once: its batches then slice the list, not walk the grid.
        grid = list(islice(space.grid(), plan.planned(window))) if plan.method == GRID and plan.points is None else None
        return _Sweep(plan, space, train, test, grid)

    async def _plan(self, job_id: str) -> Plan:
        async with self._db.reading() as session:
            stored = await session.scalar(select(ResearchSweep.plan).where(ResearchSweep.job_id == job_id))
        if stored is None:
            raise activity_error("RESEARCH_NOT_FOUND", "the sweep was deleted", retryable=False)
        return Plan.model_validate(stored)

    async def _periods(self, plan: Plan, index: int) -> tuple[trials.Period, trials.Period | None]:
        """The window's train period and, when it has one, its test period: configs and stored bars."""
        window = plan.window(index)
        train = await self._period(plan, window.train_start, window.train_end)
        if window.test_start is None or window.test_end is None:
            return train, None
        return train, await self._period(plan, window.test_start, window.test_end)

    async def _period(self, plan: Plan, start: Any, end: Any) -> trials.Period:
        config = research_result.period_config(plan, start, end)
        span = config.span()
        count = await self._market.stored_count(span.symbol, config.as_sync())
        bars = await self._market.stored_arrays(
            span.symbol, span.timeframe, config.as_sync(), lambda read: activity.heartbeat(f"read {read} bars"), count
        )
        return trials.Period(config, bars)

    async def _pooled_all(self, calls: list[tuple[Callable[[Any], T], Any]]) -> list[T]:
        """Each call in the process pool, heartbeating as each ends and every second meanwhile; a cancel
        drops the calls still waiting for a process."""
        futures: list[Future[T]] = [self._engines.submit(fn, argument) for fn, argument in calls]
        waiting = {asyncio.wrap_future(f) for f in futures}
        try:
            pending = set(waiting)
            while pending:
                done, pending = await asyncio.wait(pending, timeout=BEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                activity.heartbeat(f"{len(calls) - len(pending)} of {len(calls)} done")
            return [f.result() for f in futures]
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except BrokenProcessPool:
            raise activity_error("ENGINE_UNAVAILABLE", "the engine process stopped", retryable=True) from None


@dataclass(frozen=True)
class _Sweep:
    """What every batch of a window reads: the plan, its space and the window's periods."""

    plan: Plan
    space: SearchSpace
    train: trials.Period
    test: trials.Period | None
    grid: list[dict[str, Any]] | None  # a grid's planned points, in order


async def _stored(session: AsyncSession, finish: FinishSweep, body: dict[str, Any]) -> tuple[JobOutcome, list[str]]:
    """The job's outcome with the sweep's result, in the caller's transaction: succeeded (or cancelled, when
    the sweep was), unless it no longer runs; and the waiting jobs to wake."""
    if finish.cancelled:
        job = await locked_job(session, finish.job_id)
        return CANCELLED_ON_REQUEST, await record_outcome(session, job, CANCELLED_ON_REQUEST, body, [])
    line = research_result.summary_line(body["optimizationResult"])
    ran, waiting = await record_success(session, finish.job_id, body, [line])
    if ran is not None:
        return JobOutcome(job_states.SUCCEEDED), waiting
    job = await locked_job(session, finish.job_id)  # cancelled meanwhile, or deleted
    return (JobOutcome(job.status, job.error_code, job.error_message) if job else CANCELLED_ON_REQUEST), waiting


def _recorded(outcome: trials.TrialOutcome, proposal: trials.Proposal) -> trials.Recorded:
    value = outcome.score if outcome.state == "complete" else None
    return trials.Recorded(proposal.point, value, outcome.constraint_values, proposal.system_attrs)


def sweep_plan(plan: Plan) -> SweepPlan:
    return SweepPlan(
        windows=len(plan.windows),
        planned=[plan.planned(i) for i in range(len(plan.windows))],
        sequential=plan.points is None and plan.method not in (GRID, RANDOM),
        covers_space=plan.points is not None or (plan.method == GRID and plan.budget.max_trials >= plan.candidates),
        max_duration_seconds=plan.budget.max_duration_seconds,
        early_stop_score=plan.budget.early_stop_score,
        maximize=plan.maximize,
    )


def _planned(space: Any, parameters: dict[str, Any]) -> trials.Proposal:
    return trials.Proposal(parameters, {d.name: parameters[d.name] for d in space.dimensions}, {})


def _row(batch: BatchInput, outcome: trials.TrialOutcome, proposal: trials.Proposal) -> dict[str, Any]:
    blocks = {"sums": outcome.block_sums, "squares": outcome.block_squares} if outcome.block_sums is not None else None
    return {
        "job_id": batch.job_id,
        "window": batch.window,
        "number": outcome.number,
        "batch": batch.batch,
        "state": outcome.state,
        "parameters": outcome.parameters,
        "point": proposal.point,
        "score": outcome.score,
        "feasible": outcome.feasible,
        "violations": outcome.violations,
        "constraint_values": outcome.constraint_values,
        "metrics": outcome.metrics,
        "test_metrics": outcome.test_metrics,
        "error": outcome.error,
        "blocks": blocks,
        "system_attrs": proposal.system_attrs,
    }


# The JSON columns of a trial's row.
_TRIAL_JSON = [column.name for column in _TRIALS.columns if isinstance(column.type, JSON)]


async def _insert_trials(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """The rows in one executemany of the dialect's own INSERT, their JSON encoded here at once: SQLAlchemy's
    processing of each value took three times as long as the database, while a batch's result waits for it."""
    statement = _TRIALS.insert().compile(dialect=connection.dialect)
    encoded = [{**row, **{name: json_text(row[name]) for name in _TRIAL_JSON}} for row in rows]
    if statement.positional:
        order = statement.positiontup or []
        await connection.exec_driver_sql(statement.string, [tuple(row[name] for name in order) for row in encoded])
    else:
        await connection.exec_driver_sql(statement.string, encoded)


def _progress(job_id: str, window: int, count: int, best: trials.TrialOutcome | None, maximize: bool) -> Any:
    """The sweep's count of trials, and its best when the batch beat it."""
    values: dict[str, Any] = {"trials_done": _SWEEPS.c.trials_done + count, "updated_at": utcnow()}
    if best is not None and best.score is not None:
        beaten = _SWEEPS.c.best_score.is_(None) | (
            (_SWEEPS.c.best_score < best.score) if maximize else (_SWEEPS.c.best_score > best.score)
        )
        values["best_score"] = case((beaten, best.score), else_=_SWEEPS.c.best_score)
        values["best_trial"] = case((beaten, trial_id(window, best.number)), else_=_SWEEPS.c.best_trial)
    return update(_SWEEPS).where(_SWEEPS.c.job_id == job_id).values(values)


def _done_fraction(job_id: str) -> Any:
    fraction = _SWEEPS.c.trials_done * 1.0 / _SWEEPS.c.trials_planned
    return select(case((fraction > 1.0, 1.0), else_=fraction)).where(_SWEEPS.c.job_id == job_id)
