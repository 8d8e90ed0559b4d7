"""A schedule's firing becomes a job of the registry, started like any other."""

from __future__ import annotations

import logging

from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client

from activities.jobs import activity_error
from core.settings import Settings
from db.engine import Database
from db.models import Job, JobLogLine, JobSchedule
from domain import jobs as registry
from domain import schedules as rules
from workflows import dispatch
from workflows.scheduled_job import START_SCHEDULED_JOB_ACTIVITY, ScheduledFiring, ScheduledOutcome

log = logging.getLogger(__name__)


class ScheduleActivities:
    def __init__(self, db: Database, temporal: Client, settings: Settings) -> None:
        self._db = db
        self._temporal = temporal
        self._settings = settings

    @activity.defn(name=START_SCHEDULED_JOB_ACTIVITY)
    async def start_scheduled_job(self, firing: ScheduledFiring) -> ScheduledOutcome:
        """The firing's job, written once (keyed by the firing), then its workflow started if not yet."""
        if registry.task_type(firing.job.task_type) is None:
            raise activity_error("TASK_TYPE_UNAVAILABLE", f"no worker runs {firing.job.task_type}", retryable=False)
        job, created = await self._job_of(firing)
        if job is None:
            return ScheduledOutcome(job_id=None)
        task_queue = self._settings.task_queue
        heartbeat = self._settings.job_heartbeat_timeout_seconds
        if created:
            await dispatch.start(
                self._temporal, job, task_queue=task_queue, heartbeat_timeout_seconds=heartbeat, supersede=False
            )
        else:  # an earlier attempt wrote the job: start it only if that attempt did not
            await dispatch.recover(self._temporal, job, task_queue=task_queue, heartbeat_timeout_seconds=heartbeat)
        return ScheduledOutcome(job_id=job.id)

    async def _job_of(self, firing: ScheduledFiring) -> tuple[Job | None, bool]:
        spec, key = firing.job, f"scheduled:{firing.firing_id}"
        async with self._db.session() as session:
            if spec.user_id is not None:
                schedule = await session.get(JobSchedule, spec.schedule_id)
                if schedule is None or schedule.status != rules.ACTIVE:
                    return None, False  # stopped after this firing was due
            existing = await session.scalar(
                select(Job).where(Job.idempotency_key == key, Job.schedule_id == spec.schedule_id)
            )
            if existing is not None:
                return existing, False
            job = Job(
                user_id=spec.user_id,
                task_type=spec.task_type,
                payload=spec.payload,
                idempotency_key=key,
                schedule_id=spec.schedule_id,
            )
            session.add(job)
            await session.flush()
            job.dispatch_id = dispatch.workflow_id(job)
            session.add(JobLogLine(job_id=job.id, message=f"queued {spec.task_type} by schedule {spec.schedule_id}"))
        return job, True
