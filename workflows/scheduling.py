"""How recurring jobs become Temporal Schedules: a user's interval or cron schedule, and the platform's
system templates (created once, recreated if deleted, paused while no worker runs their task type).

Not a workflow module: workflow code never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from core.temporal import KIND, USER_ID
from domain import jobs as registry
from domain import schedules as rules
from workflows.scheduled_job import ScheduledJob, ScheduledJobWorkflow

# A stack that was down does not make up every missed firing at once: one late firing at most.
CATCHUP_WINDOW = timedelta(minutes=1)
KIND_SCHEDULED = "scheduled_job"


class InvalidSchedule(ValueError):
    """Temporal refused the schedule's spec (a cron expression it cannot read)."""


def spec_of(schedule_type: str, expression: str) -> ScheduleSpec:
    if schedule_type == rules.INTERVAL:
        return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=int(expression)))])
    return ScheduleSpec(cron_expressions=[expression])


def schedule_of(
    job: ScheduledJob, schedule_id: str, schedule_type: str, expression: str, *, task_queue: str, note: str | None
) -> Schedule:
    pairs = [SearchAttributePair(KIND, KIND_SCHEDULED)]
    if job.user_id is not None:
        pairs.append(SearchAttributePair(USER_ID, job.user_id))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ScheduledJobWorkflow.run,
            job,
            id=schedule_id,
            task_queue=task_queue,
            typed_search_attributes=TypedSearchAttributes(pairs),
        ),
        spec=spec_of(schedule_type, expression),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
        state=ScheduleState(paused=note is not None, note=note or ""),
    )


async def create(client: Client, schedule_id: str, schedule: Schedule) -> None:
    try:
        await client.create_schedule(schedule_id, schedule)
    except RPCError as error:
        if error.status == RPCStatusCode.INVALID_ARGUMENT:
            raise InvalidSchedule(error.message) from None
        raise


async def delete(client: Client, schedule_id: str) -> None:
    try:
        await client.get_schedule_handle(schedule_id).delete()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise


async def describe(client: Client, schedule_id: str) -> ScheduleDescription | None:
    try:
        return await client.get_schedule_handle(schedule_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def next_runs(description: ScheduleDescription | None, count: int = 3) -> list[datetime]:
    if description is None or description.schedule.state.paused:
        return []
    return list(description.info.next_action_times[:count])


@dataclass
class SystemScheduleState:
    template: rules.SystemTemplate
    exists: bool
    paused: bool
    next_runs: list[datetime]
    recreated: bool = False


def _system_note(template: rules.SystemTemplate) -> str | None:
    if registry.task_type(template.task_type) is None:
        return f"paused: no worker runs {template.task_type} yet"
    return None


async def ensure_system_schedules(client: Client, task_queue: str) -> list[SystemScheduleState]:
    """Every system template as its Temporal Schedule: created when missing (first start, or deleted since),
    left as it is when present."""
    states = []
    for template in rules.SYSTEM_TEMPLATES:
        job = ScheduledJob(schedule_id=f"system:{template.id}", task_type=template.task_type)
        schedule = schedule_of(
            job,
            template.schedule_id,
            template.schedule_type,
            template.expression,
            task_queue=task_queue,
            note=_system_note(template),
        )
        try:
            await client.create_schedule(template.schedule_id, schedule)
            recreated = True
        except ScheduleAlreadyRunningError:
            recreated = False
        state = await system_schedule_state(client, template)
        if state.paused and _system_note(template) is None:  # its task type has arrived since
            await client.get_schedule_handle(template.schedule_id).unpause(note="its task type is served now")
            state = await system_schedule_state(client, template)
        state.recreated = recreated
        states.append(state)
    return states


async def system_schedule_state(client: Client, template: rules.SystemTemplate) -> SystemScheduleState:
    description = await describe(client, template.schedule_id)
    paused = description is not None and description.schedule.state.paused
    return SystemScheduleState(template, description is not None, paused, next_runs(description))
