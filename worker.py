"""One worker process: connects to Temporal, registers every workflow and activity, serves the task queue.

Run as ``python worker.py`` or ``quantpoly worker``. SIGINT/SIGTERM shut it down gracefully.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.worker import Worker

from activities.auth import AuthActivities
from activities.backtests import BacktestActivities
from activities.broker import BrokerActivities
from activities.jobs import JobActivities
from activities.market_data import MarketDataActivities
from activities.performance import PerformanceActivities
from activities.portfolios import PortfolioActivities
from activities.research import ResearchActivities
from activities.schedules import ScheduleActivities
from activities.trading import TradingActivities
from core.logging import configure_logging
from core.runtime import frozen_startup_heap, pool_process
from core.settings import Settings, get_settings
from core.temporal import connect_temporal
from db.engine import Database
from domain.schedules import reconciler_schedule_id
from integrations.mail import Mailer, mailer_from_settings
from integrations.market_data import provider_from_settings
from integrations.optuna_storage import mirror_for, storage_url
from workflows.auth_token import AuthTokenWorkflow
from workflows.backtest import BacktestWorkflowV3
from workflows.backtest_earlier import BacktestWorkflow, BacktestWorkflowV2
from workflows.broker_order import BrokerOrderWorkflow
from workflows.job import JobReconcilerWorkflow, JobWorkflow, JobWorkflowV2
from workflows.research import ResearchWorkflow
from workflows.scheduled_job import ScheduledJobWorkflow
from workflows.scheduling import ensure_system_schedules

log = logging.getLogger("quantpoly.worker")
P = ParamSpec("P")
T = TypeVar("T")

WORKFLOWS: Sequence[type] = (
    AuthTokenWorkflow,
    JobWorkflow,  # kept for runs started before JobWorkflowV2
    JobWorkflowV2,
    JobReconcilerWorkflow,
    BacktestWorkflow,  # kept for runs started before BacktestWorkflowV2
    BacktestWorkflowV2,  # kept for runs started before BacktestWorkflowV3
    BacktestWorkflowV3,
    BrokerOrderWorkflow,
    ResearchWorkflow,
    ScheduledJobWorkflow,
)
# How soon a heartbeat reaches the server at most, and so how soon a running activity learns of a cancel.
HEARTBEAT_THROTTLE = timedelta(seconds=0.5)


BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class ProcessPool(Executor):
    """The worker's processes for CPU-bound activity work (backtest engines, later research sweeps): threads
    would share the GIL with the event loop that serves Temporal. Processes start with the pool, forked from a
    server that has imported the engine once; a pool broken by a process that died is replaced."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        # One BLAS thread per pool process (the server started later inherits this environment): the pool
        # already has a process per core, and OpenBLAS's threads spin while they wait, taking the cores from the
        # pool's other processes; a CSCV's matrix products cost twice the CPU for no gain in time.
        for variable in BLAS_THREADS:
            os.environ.setdefault(variable, "1")
        context = multiprocessing.get_context("forkserver")
        # Optuna's importance evaluators import scipy and scikit-learn (a second or more): once, in the server.
        context.set_forkserver_preload(
            ["domain.backtest", "domain.trials", "domain.research_result", "optuna.importance"]
        )
        executor = ProcessPoolExecutor(
            self._processes, mp_context=context, initializer=pool_process, initargs=(os.getpid(),)
        )
        # Every process started now, by a no-op each, rather than as the first jobs arrive: those jobs then
        # neither wait for them nor run on fewer.
        for _ in range(self._processes):
            executor.submit(int)
        return executor

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        try:
            return self._executor.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            self._executor = self._new()
            return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait, cancel_futures=cancel_futures)


@functools.cache
def process_pool(processes: int) -> ProcessPool:
    """One pool per process, however many workers it builds (tests build many)."""
    return ProcessPool(processes)


def build_worker(
    client: Client, settings: Settings, db: Database, *, mailer: Mailer | None = None, task_queue: str | None = None
) -> Worker:
    auth = AuthActivities(db, mailer or mailer_from_settings(settings), settings)
    jobs = JobActivities(db, client, settings)
    scheduled = ScheduleActivities(db, client, settings)
    provider = provider_from_settings(settings)
    market = MarketDataActivities(db, provider, settings)
    backtests = BacktestActivities(db, market, jobs, process_pool(settings.worker_processes))
    portfolios = PortfolioActivities(db)
    pool = process_pool(settings.worker_processes)
    optuna = mirror_for(storage_url(settings.db_url))
    research = ResearchActivities(db, market, jobs, pool, settings.worker_processes, optuna)
    performance = PerformanceActivities(db, market, settings.research_default_symbol)
    trading = TradingActivities(db, provider, client, settings)
    broker_orders = BrokerActivities(db, settings)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=[
            auth.deliver_token,
            auth.settle_token,
            jobs.claim_slot,
            jobs.finish,
            jobs.start_job,
            jobs.finish_job,
            jobs.reconcile_jobs,
            scheduled.start_scheduled_job,
            market.sync,
            market.indicators,
            backtests.run_in_slot,
            backtests.claim_and_load,
            backtests.compute_and_finish,
            backtests.load_bars,
            backtests.run,
            portfolios.evaluate,
            portfolios.rebalance,
            research.claim_and_prepare,
            research.run_batch,
            research.run_batches,
            research.finish,
            research.mirror,
            performance.analyze,
            trading.refresh_prices,
            trading.process_pending,
            trading.daily_stats,
            trading.batch_execute,
            trading.risk_monitor,
            trading.account_cleanup,
            broker_orders.submit,
            broker_orders.poll,
            broker_orders.cancel,
            broker_orders.settle,
        ],
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """The recurring work of this task queue, as Temporal Schedules (created once, kept by the server): the
    job reconciler, and the system schedule templates (recreated if deleted)."""
    await ensure_system_schedules(client, settings.task_queue)
    schedule_id = reconciler_schedule_id(settings.task_queue)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            JobReconcilerWorkflow.run, id=f"{schedule_id}-run", task_queue=settings.task_queue
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.job_reconcile_interval_seconds))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        pass


async def run(settings: Settings) -> None:
    client = await connect_temporal(settings)
    db = Database.from_settings(settings)
    worker = build_worker(client, settings, db)
    await ensure_schedules(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
    with frozen_startup_heap():
        async with worker:
            await stop.wait()
            log.info("worker shutting down")
    process_pool(settings.worker_processes).shutdown(cancel_futures=True)
    await db.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
