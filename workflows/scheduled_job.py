"""A schedule's firing: started by a Temporal Schedule (a user's ``schedule-<id>`` or a system
``system-<template>``), it turns the firing into a job of the registry and starts that job's workflow.

One activity does both, keyed by this run's workflow id (which carries the firing's time), so a retried
activity or a replayed firing never makes a second job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

START_SCHEDULED_JOB_ACTIVITY = "start_scheduled_job"


@dataclass
class ScheduledJob:
    """What a schedule fires: carried in the schedule's action, so a firing needs no lookup to know it."""

    schedule_id: str  # a user's schedule id, or "system:<template>"
    task_type: str
    user_id: str | None = None  # None for the platform's own jobs
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScheduledFiring:
    job: ScheduledJob
    firing_id: str  # this run's workflow id: unique per firing


@dataclass
class ScheduledOutcome:
    job_id: str | None  # None when the schedule had been stopped meanwhile


@workflow.defn
class ScheduledJobWorkflow:
    @workflow.run
    async def run(self, job: ScheduledJob) -> ScheduledOutcome:
        return await workflow.execute_activity(
            START_SCHEDULED_JOB_ACTIVITY,
            ScheduledFiring(job=job, firing_id=workflow.info().workflow_id),
            result_type=ScheduledOutcome,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=20),
        )
