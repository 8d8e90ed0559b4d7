"""A backtest's activities: claim the user's slot and bring the bars into the store, then run the engine in the
worker's process pool and store the result as the job finishes.

Heartbeats come from the work itself (each fetch and stored chunk, each page of bars read, each second an
engine run waits for a process or runs, each second of a wait for a slot): they carry its progress, and their
answers carry a cancel request, which stops the activity and drops an engine run still waiting for a process.
Work that ends within a second sends none: it would cost the server a write per backtest.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple, cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.jobs import (
    JobActivities,
    activity_error,
    append_log,
    claim_slot,
    locked_job,
    record_success,
    set_progress,
)
from activities.market_data import MarketDataActivities, heartbeating
from db.base import json_text
from db.engine import Database
from db.models import Backtest, Job
from domain import backtest as backtests
from domain import jobs as job_states
from domain.backtest import BacktestConfig, BarArrays, InsufficientData, ResultJson
from workflows.steps import (
    CLAIMED,
    COMPUTE_ACTIVITY,
    LOAD_BARS_ACTIVITY,
    NOT_RUNNABLE,
    PREPARE_ACTIVITY,
    RUN_ACTIVITY,
    RUN_IN_SLOT_ACTIVITY,
    BacktestSteps,
    Claim,
    ClaimInput,
    ComputeInput,
    FinishInput,
    JobOutcome,
)

# A run that has not ended after this long (waiting for a process of a busy pool, or running) heartbeats.
ENGINE_BEAT_SECONDS = 1.0


class BacktestActivities(BacktestSteps):
    def __init__(self, db: Database, market: MarketDataActivities, jobs: JobActivities, engines: Executor) -> None:
        self._db = db
        self._market = market
        self._jobs = jobs
        self._engines = engines  # the worker's process pool

    @activity.defn(name=RUN_IN_SLOT_ACTIVITY)
    async def run_in_slot(self, claim: ClaimInput) -> Claim:
        lines: list[str] = []  # the loading's, written with the job's last transaction
        loaded: tuple[BacktestRow, BacktestConfig, int | None] | None = None

        async def attempt() -> Claim:
            nonlocal loaded
            claimed, loaded = await self._claimed_and_loaded(claim, lines)
            return claimed

        try:
            claimed = await self._jobs.claimed_here(claim.workflow_id, attempt)
            if claimed.state != CLAIMED or claimed.outcome is not None:
                return claimed
            assert loaded is not None  # claimed, so loaded
            backtest, config, count = loaded
            outcome = await self._finished(claim.job_id, backtest, config, lines, count)
        except ApplicationError as error:
            if not (error.non_retryable and error.type and error.type.isupper()):
                raise  # retried, or failed by the workflow once retries run out
            # A failure we named and no retry can fix (too few bars, a deleted backtest): the job ends here,
            # in this activity, with its loading lines.
            outcome = JobOutcome("failed", error.type, error.message)
            await self._jobs.finish(FinishInput(claim.job_id, outcome, None, lines))
        return Claim(CLAIMED, outcome=outcome)

    @activity.defn(name=PREPARE_ACTIVITY)
    async def claim_and_load(self, claim: ClaimInput) -> Claim:
        return (await self._claimed_and_loaded(claim, []))[0]

    async def _claimed_and_loaded(
        self, claim: ClaimInput, lines: list[str]
    ) -> tuple[Claim, tuple[BacktestRow, BacktestConfig, int | None] | None]:
        """The claim, and once claimed the backtest, its config and, when the claim's transaction counted them,
        the count of its bars in the store."""
        stored: int | None = None
        async with self._db.session() as session:
            job, state = await claim_slot(session, claim.job_id, claim.workflow_id, claim.run_id)
            claimed = job if state == CLAIMED else None
            backtest = await backtest_row(session, claimed.payload["backtestId"]) if claimed is not None else None
            config = _config_or_none(backtest)
            if config is not None and config.prices is None:
                # Usually the store has the bars already: the claim's transaction then checks and counts them.
                stored = await self._market.stored_if_covered(session, config.span().symbol, config.as_sync(), lines)
        if state == NOT_RUNNABLE and job is not None and job.run_id == claim.run_id:
            # Claimed by this run and finished by an earlier attempt whose answer was lost: that outcome stands.
            return Claim(CLAIMED, outcome=JobOutcome(job.status, job.error_code, job.error_message)), None
        if state != CLAIMED:
            return Claim(state), None
        backtest, config = _checked(backtest, config)
        if config.prices is not None:
            bars = len(config.prices)
        else:
            bars = stored if stored is not None else await self._synced(claim.job_id, config, lines)
        _check_bar_count(backtest, config, bars)
        return Claim(CLAIMED, lines), (backtest, config, stored)

    @activity.defn(name=COMPUTE_ACTIVITY)
    async def compute_and_finish(self, compute: ComputeInput) -> JobOutcome:
        job, backtest, config = await self._rows(compute.job_id)
        if job.status != job_states.RUNNING:  # finished by an earlier attempt, or cancelled meanwhile
            return JobOutcome(job.status, job.error_code, job.error_message)
        return await self._finished(compute.job_id, backtest, config, compute.log_lines)

    async def _finished(
        self, job_id: str, backtest: BacktestRow, config: BacktestConfig, lines: list[str], count: int | None = None
    ) -> JobOutcome:
        """The engine over the stored bars (``count`` of them, when the claim counted them); the result and the
        job's success in one transaction."""
        bars = await self._bars(config, count)
        computed = await self._computed(bars, backtest, config)
        lines = [*lines, _summary(config, backtest, len(bars), computed.metrics)]
        result = {"backtestId": backtest.id, "metrics": computed.metrics}
        async with self._db.session() as session:
            ran, waiting = await record_success(session, job_id, result, lines)
            if ran is None:  # cancelled while the engine ran, or deleted with its user: nothing is stored
                job = await locked_job(session, job_id)
            else:
                await _store(session, backtest.id, job_id, computed)
        if ran is None:
            if job is None:
                raise activity_error("JOB_NOT_FOUND", "the job was deleted", retryable=False)
            return JobOutcome(job.status, job.error_code, job.error_message)
        await self._jobs.hand_over(waiting)
        return JobOutcome(job_states.SUCCEEDED)

    async def _synced(self, job_id: str, config: BacktestConfig, lines: list[str] | None = None) -> int:
        """Bars of the config's range in the store, after syncing what it lacked."""
        item = await self._market.sync_symbol(
            job_id, config.span().symbol, config.as_sync(), lines=lines, on_progress=activity.heartbeat
        )
        if item["status"] != "ok":
            raise activity_error(
                "BACKTEST_HISTORY_UNAVAILABLE",
                f"no bars for {config.symbol} ({item['errorCode']})",
                retryable=item["retryable"],
            )
        return item["rowCount"]

    async def _bars(self, config: BacktestConfig, count: int | None = None) -> BarArrays:
        inline = config.inline_bars()  # an inline series replaces the provider's bars, never mixes with them
        if inline is not None:
            return BarArrays.of(inline)
        span = config.span()
        return await self._market.stored_arrays(
            span.symbol,
            span.timeframe,
            config.as_sync(),
            lambda read: activity.heartbeat(f"read {read} bars"),
            count,
        )

    async def _computed(self, bars: BarArrays, backtest: BacktestRow, config: BacktestConfig) -> ResultJson:
        header = _header(backtest, config)
        run = self._engines.submit(backtests.run_as_json, bars, backtest.template, backtest.parameters, config, header)
        computed = asyncio.wrap_future(run)
        try:
            while not (await asyncio.wait({computed}, timeout=ENGINE_BEAT_SECONDS))[0]:
                # Still waiting for a process (the pool is busy), or running: the heartbeat's answer may
                # bring a cancel request.
                activity.heartbeat(f"engine over {len(bars)} bars")
            return computed.result()
        except asyncio.CancelledError:
            # A run still waiting for a process never starts; one already running is bounded by MAX_BARS.
            run.cancel()
            raise
        except InsufficientData as error:
            raise activity_error("BACKTEST_INSUFFICIENT_DATA", str(error), retryable=False) from None
        except BrokenProcessPool:  # a pool process died (killed, out of memory): the next attempt gets a new one
            raise activity_error("ENGINE_UNAVAILABLE", "the engine process stopped", retryable=True) from None

    async def _rows(self, job_id: str) -> tuple[Job, BacktestRow, BacktestConfig]:
        async with self._db.reading() as session:
            job = await session.get_one(Job, job_id)
            backtest = await backtest_row(session, job.payload["backtestId"])
        return job, *_checked(backtest, _config_or_none(backtest))

    # --- the steps of BacktestWorkflow runs, started before slots were handed over by signal -------------

    @activity.defn(name=LOAD_BARS_ACTIVITY)
    async def load_bars(self, job_id: str) -> dict[str, Any]:
        """Sync what the store lacks of the backtest's range, and check there are bars enough to trade."""
        async with heartbeating("loading bars"):
            _, backtest, config = await self._rows(job_id)
            bars = len(config.prices) if config.prices is not None else await self._synced(job_id, config)
            _check_bar_count(backtest, config, bars)
            await set_progress(self._db, job_id, 0.4)
            return {"backtestId": backtest.id, "barCount": bars}

    @activity.defn(name=RUN_ACTIVITY)
    async def run(self, job_id: str) -> dict[str, Any]:
        """The engine over the stored bars; the result is stored before the job can succeed."""
        async with heartbeating("running"):
            _, backtest, config = await self._rows(job_id)
            bars = await self._bars(config)
            computed = await self._computed(bars, backtest, config)
            async with self._db.session() as session:
                job = await session.get_one(Job, job_id, with_for_update=True)
                if job.status == job_states.RUNNING:  # not cancelled meanwhile
                    await _store(session, backtest.id, job_id, computed)
            await append_log(self._db, job_id, _summary(config, backtest, len(bars), computed.metrics))
            return {"backtestId": backtest.id, "metrics": computed.metrics}


class BacktestRow(NamedTuple):
    """What a run reads of its backtest's row."""

    id: str
    strategy_id: str
    template: str
    parameters: dict[str, Any]
    config: dict[str, Any]


_BACKTESTS = cast(Table, Backtest.__table__)
_BACKTEST = select(*(_BACKTESTS.c[name] for name in BacktestRow._fields)).where(
    _BACKTESTS.c.id == bindparam("backtest_id")
)


# (Bound names other than the columns': an UPDATE reserves those for what it sets.)
_STORE = update(_BACKTESTS).where(_BACKTESTS.c.id == bindparam("backtest"), _BACKTESTS.c.job_id == bindparam("job"))


async def backtest_row(session: AsyncSession, backtest_id: str) -> BacktestRow | None:
    row = (await (await session.connection()).execute(_BACKTEST, {"backtest_id": backtest_id})).first()
    return None if row is None else BacktestRow(*row)


def _checked(backtest: BacktestRow | None, config: BacktestConfig | None) -> tuple[BacktestRow, BacktestConfig]:
    """The backtest and its config (as ``_config_or_none`` read it), or the failure that ends its job."""
    if backtest is None:
        raise activity_error("BACKTEST_NOT_FOUND", "the backtest was deleted", retryable=False)
    try:
        if config is None:
            config = BacktestConfig.model_validate(backtest.config)  # raises, saying why
        config.span()  # our engine runs only a config that names its symbol
    except ValueError as error:  # pydantic's ValidationError included
        raise activity_error("BACKTEST_INVALID_CONFIG", str(error), retryable=False) from None
    return backtest, config


def _config_or_none(backtest: BacktestRow | None) -> BacktestConfig | None:
    """The backtest's config, or None when there is none to read (``_checked`` then says why)."""
    if backtest is None:
        return None
    try:
        return BacktestConfig.model_validate(backtest.config)
    except ValidationError:
        return None


def _check_bar_count(backtest: BacktestRow, config: BacktestConfig, bars: int) -> None:
    needed = backtests.minimum_bars(backtest.template, backtest.parameters)
    if bars < needed:
        raise activity_error(
            "BACKTEST_INSUFFICIENT_DATA",
            f"{bars} {config.timeframe} bars of {config.symbol} in range; {backtest.template} needs {needed}",
            retryable=False,
        )
    if bars > backtests.MAX_BARS:
        raise activity_error(
            "BACKTEST_INVALID_CONFIG",
            f"{bars} bars in range, at most {backtests.MAX_BARS}: shorten the range or use a longer timeframe",
            retryable=False,
        )


async def _store(session: AsyncSession, backtest_id: str, job_id: str, computed: ResultJson) -> None:
    """The result on the backtest, unless it was deleted or another run superseded this job (a retry)."""
    values = {"result": json_text(computed.body, session), "metrics": computed.metrics}
    await (await session.connection()).execute(_STORE.values(values), {"backtest": backtest_id, "job": job_id})


def _header(backtest: BacktestRow, config: BacktestConfig) -> dict[str, Any]:
    """The result body's fields that say what was run; the engine's process adds what it computed."""
    span = config.span()
    return {
        "taskId": backtest.id,
        "strategyId": backtest.strategy_id,
        "template": backtest.template,
        "parameters": backtest.parameters,
        "symbol": span.symbol,
        "timeframe": span.timeframe,
        "startDate": span.start_date.isoformat(),
        "endDate": span.end_date.isoformat(),
        "config": backtest.config,
    }


def _summary(config: BacktestConfig, backtest: BacktestRow, bar_count: int, metrics: dict[str, Any]) -> str:
    return (
        f"{config.symbol} {backtest.template}: {bar_count} bars, {metrics['tradeCount']} trades, "
        f"return {metrics['returnRate']:.4%}"
    )
