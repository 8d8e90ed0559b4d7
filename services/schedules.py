"""Recurring jobs (reference §2.5): a user's interval and cron schedules, each a Temporal Schedule that
starts real jobs of the registry; the system schedule templates; and the runtime view for operators."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import func, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from core.errors import AccessDenied, AppError, Conflict
from db.base import new_id, utcnow
from db.models import Job, JobSchedule, User
from domain import jobs as lifecycle
from domain import schedules as rules
from services import jobs
from services.platform import Platform
from services.schemas.jobs import (
    ExecutionOut,
    ExecutorOut,
    PollerOut,
    RecoveryOut,
    RuntimeOut,
    ScheduleOut,
    SchedulerOut,
    SystemTemplateOut,
)
from services.users import require_admin
from workflows import scheduling
from workflows.scheduled_job import ScheduledJob


def _template_view(state: scheduling.SystemScheduleState) -> SystemTemplateOut:
    template = state.template
    return SystemTemplateOut(
        template_id=template.id,
        schedule_id=template.schedule_id,
        task_type=template.task_type,
        schedule_type=template.schedule_type,
        expression=template.expression,
        description=template.description,
        task_type_available=lifecycle.task_type(template.task_type) is not None,
        exists=state.exists,
        paused=state.paused,
        next_runs=state.next_runs,
        recreated=state.recreated,
    )


async def create(
    platform: Platform, user: User, task_type: str, schedule_type: str, expression: str, payload: dict[str, Any]
) -> ScheduleOut:
    """The schedule row and its Temporal Schedule, together: a spec Temporal refuses leaves no row."""
    payload = jobs.normalize_payload(user, task_type, payload, jobs.validation_limits(platform))
    async with platform.db.session() as session:
        await _check_room(session, user)
        row = JobSchedule(
            id=new_id(),
            user_id=user.id,
            namespace=rules.user_namespace(user.id),
            task_type=task_type,
            schedule_type=schedule_type,
            expression=expression,
            payload=payload,
        )
        session.add(row)
        await session.flush()
        await _create_temporal_schedule(platform, row)
    return await get(platform, user, row.id)


async def _create_temporal_schedule(platform: Platform, row: JobSchedule) -> None:
    job = ScheduledJob(schedule_id=row.id, task_type=row.task_type, user_id=row.user_id, payload=row.payload)
    temporal_id = rules.schedule_workflow_id(row.id)
    schedule = scheduling.schedule_of(
        job, temporal_id, row.schedule_type, row.expression, task_queue=platform.settings.task_queue, note=None
    )
    try:
        await scheduling.create(platform.temporal, temporal_id, schedule)
    except scheduling.InvalidSchedule as refused:
        raise AppError(f"invalid schedule: {refused}", code="SCHEDULE_INVALID_EXPRESSION", status=422) from None


async def _check_room(session, user: User) -> None:
    active = await session.scalar(
        select(func.count())
        .select_from(JobSchedule)
        .where(JobSchedule.user_id == user.id, JobSchedule.status == rules.ACTIVE)
    )
    if active >= rules.MAX_ACTIVE_PER_USER:
        raise Conflict(
            f"at most {rules.MAX_ACTIVE_PER_USER} active schedules; stop one first", code="SCHEDULE_LIMIT_EXCEEDED"
        )


async def _owned(platform: Platform, user: User, schedule_id: str) -> JobSchedule:
    async with platform.db.session() as session:
        row = await session.get(JobSchedule, schedule_id)
    if row is None or row.namespace != rules.user_namespace(user.id):
        raise AccessDenied("schedule")
    return row


async def _view(platform: Platform, row: JobSchedule) -> ScheduleOut:
    temporal_id = rules.schedule_workflow_id(row.id)
    described = None
    if row.status == rules.ACTIVE:
        described = await scheduling.describe(platform.temporal, temporal_id)
    async with platform.db.session() as session:
        started = await session.scalar(select(func.count()).select_from(Job).where(Job.schedule_id == row.id))
    return ScheduleOut(
        id=row.id,
        schedule_id=temporal_id,
        namespace=row.namespace,
        task_type=row.task_type,
        schedule_type=row.schedule_type,
        expression=row.expression,
        payload=row.payload,
        status=row.status,
        next_runs=scheduling.next_runs(described),
        jobs_started=int(started or 0),
        created_at=row.created_at,
        stopped_at=row.stopped_at,
    )


async def get(platform: Platform, user: User, schedule_id: str) -> ScheduleOut:
    return await _view(platform, await _owned(platform, user, schedule_id))


async def list_schedules(
    platform: Platform, user: User, *, status: str | None, page: int, page_size: int
) -> tuple[list[ScheduleOut], int]:
    conditions = [JobSchedule.namespace == rules.user_namespace(user.id)]
    if status:
        conditions.append(JobSchedule.status == status)
    async with platform.db.session() as session:
        total = await session.scalar(select(func.count()).select_from(JobSchedule).where(*conditions))
        rows = list(
            await session.scalars(
                select(JobSchedule)
                .where(*conditions)
                .order_by(JobSchedule.created_at.desc(), JobSchedule.id)
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
        )
    return [await _view(platform, row) for row in rows], int(total or 0)


async def stop(platform: Platform, user: User, schedule_id: str) -> ScheduleOut:
    """Deletes its Temporal Schedule (no more firings) and keeps the row, stopped, with its jobs."""
    await _owned(platform, user, schedule_id)
    async with platform.db.session() as session:
        row = await session.get_one(JobSchedule, schedule_id, with_for_update=True)
        if row.status == rules.STOPPED:
            raise Conflict("the schedule is already stopped", code="SCHEDULE_ALREADY_STOPPED")
        row.status, row.stopped_at = rules.STOPPED, utcnow()
        await scheduling.delete(platform.temporal, rules.schedule_workflow_id(row.id))
    return await get(platform, user, schedule_id)


async def system_templates(platform: Platform, admin: User) -> list[SystemTemplateOut]:
    require_admin(admin)
    states = [await scheduling.system_schedule_state(platform.temporal, t) for t in rules.SYSTEM_TEMPLATES]
    return [_template_view(state) for state in states]


async def recover_system_templates(platform: Platform, admin: User) -> list[SystemTemplateOut]:
    require_admin(admin)
    states = await scheduling.ensure_system_schedules(platform.temporal, platform.settings.task_queue)
    return [_template_view(state) for state in states]


async def runtime(platform: Platform, admin: User) -> RuntimeOut:
    """What operators read: the pollers Temporal sees on our task queue, every schedule and its next runs,
    job counts, and the reconciler that repairs and restarts jobs."""
    require_admin(admin)
    return RuntimeOut(
        executor=await _executor(platform),
        scheduler=await _scheduler(platform, admin),
        execution=await _execution(platform),
        recovery=await _recovery(platform),
    )


async def _pollers(platform: Platform, kind: TaskQueueType.ValueType) -> list[PollerOut]:
    described = await platform.temporal.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=platform.temporal.namespace,
            task_queue=TaskQueue(name=platform.settings.task_queue),
            task_queue_type=kind,
        )
    )
    return [
        PollerOut(
            identity=poller.identity,
            last_access_time=poller.last_access_time.ToDatetime(tzinfo=UTC)
            if poller.HasField("last_access_time")
            else None,
            rate_per_second=poller.rate_per_second,
        )
        for poller in described.pollers
    ]


async def _executor(platform: Platform) -> ExecutorOut:
    settings = platform.settings
    return ExecutorOut(
        name="temporal",
        mode="workers",
        temporal_address=settings.temporal_address,
        namespace=platform.temporal.namespace,
        task_queue=settings.task_queue,
        workflow_pollers=await _pollers(platform, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        activity_pollers=await _pollers(platform, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    )


async def _scheduler(platform: Platform, admin: User) -> SchedulerOut:
    async with platform.db.session() as session:
        counts = dict(
            (await session.execute(select(JobSchedule.status, func.count()).group_by(JobSchedule.status))).all()
        )
    return SchedulerOut(
        running=True,  # Temporal fires schedules; there is no scheduler process of ours to be down
        user_schedules_total=sum(counts.values()),
        user_schedules_active=counts.get(rules.ACTIVE, 0),
        system_schedules=await system_templates(platform, admin),
    )


async def _execution(platform: Platform) -> ExecutionOut:
    async with platform.db.session() as session:
        by_status = dict((await session.execute(select(Job.status, func.count()).group_by(Job.status))).all())
        scheduled = await session.scalar(select(func.count()).select_from(Job).where(Job.schedule_id.is_not(None)))
        last_dispatched = await session.scalar(select(func.max(Job.created_at)))
        last_finished = await session.scalar(select(func.max(Job.finished_at)))
        last_error = await session.scalar(
            select(Job.error_code).where(Job.status == lifecycle.FAILED).order_by(Job.finished_at.desc()).limit(1)
        )
    return ExecutionOut(
        dispatched=sum(by_status.values()),
        by_status={status: by_status.get(status, 0) for status in lifecycle.STATUSES},
        scheduled=int(scheduled or 0),
        last_dispatched_at=last_dispatched,
        last_finished_at=last_finished,
        last_error_code=last_error,
    )


async def _recovery(platform: Platform) -> RecoveryOut:
    schedule_id = rules.reconciler_schedule_id(platform.settings.task_queue)
    described = await scheduling.describe(platform.temporal, schedule_id)
    recent = described.info.recent_actions if described is not None else []
    return RecoveryOut(
        reconciler_schedule_id=schedule_id,
        reconcile_interval_seconds=platform.settings.job_reconcile_interval_seconds,
        reconciler_running=described is not None and not described.schedule.state.paused,
        last_reconciled_at=recent[-1].started_at if recent else None,
        next_reconcile_at=next(iter(scheduling.next_runs(described, 1)), None),
    )
