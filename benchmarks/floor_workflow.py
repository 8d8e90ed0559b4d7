"""Temporal's floor for benchmarks/backtests_e2e.py: a workflow whose only step is one activity that does
nothing. A module of its own because the workflow sandbox re-imports a workflow's module, and the benchmark
script imports the whole platform; so its top-level imports stay temporalio and the standard library.

Run as a script, it is the floor's worker, a process of its own as the platform's worker is:

    .venv/bin/python benchmarks/floor_workflow.py --address HOST:PORT --task-queue QUEUE

It serves the task queue until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():  # the worker's side: never used inside the sandbox
    from temporalio.client import Client
    from temporalio.worker import Worker


@activity.defn(name="bench_noop")
async def noop() -> None:
    return None


@workflow.defn(name="BenchFloorWorkflow")
class FloorWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))


async def serve(address: str, task_queue: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from core.temporal import DATA_CONVERTER

    # The same data converter as the platform's client, so both pay the same (de)serialisation.
    client = await Client.connect(address, data_converter=DATA_CONVERTER)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[FloorWorkflow], activities=[noop]):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="The floor's worker: serves FloorWorkflow until SIGTERM.")
    parser.add_argument("--address", required=True, help="Temporal's host:port")
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
