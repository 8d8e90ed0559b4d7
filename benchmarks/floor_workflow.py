"""Temporal's floor for benchmarks/backtests_e2e.py: a workflow whose only step is one activity that does
nothing. A module of its own because the workflow sandbox re-imports a workflow's module, and the benchmark
script imports the whole platform."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def noop() -> None:
    return None


@workflow.defn(name="BenchFloorWorkflow")
class FloorWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
