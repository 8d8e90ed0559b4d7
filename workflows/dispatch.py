"""How a job's workflow is started: by the API once the job is written, and by whoever later finds a job
whose start was lost (a process killed between the two). Every kind starts the same way, from its entry in
the registry of task types. Likewise the workflow that follows a broker account's order (``follow_order``).

Not a workflow module: workflow code never imports it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    Priority,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from core.settings import Settings
from core.temporal import KIND, USER_ID
from domain import jobs as registry
from workflows import broker_order
from workflows.broker_order import BrokerOrderInput, BrokerOrderWorkflow
from workflows.steps import JobInput


class JobRecord(Protocol):
    id: str
    task_type: str
    user_id: str | None  # None for the platform's own jobs
    payload: dict[str, Any]
    created_at: datetime


def workflow_id(job: JobRecord) -> str:
    return registry.REGISTRY[job.task_type].workflow_id(job.id, job.payload)


async def start(
    client: Client, job: JobRecord, *, task_queue: str, heartbeat_timeout_seconds: int, supersede: bool
) -> None:
    """Start the job's workflow. ``supersede`` (a rerun) ends a run of the same id that is still winding
    down; otherwise a run already there is this job's, started by someone else, and is kept."""
    kind = registry.REGISTRY[job.task_type]
    await client.start_workflow(
        kind.workflow,
        JobInput(
            job_id=job.id,
            task_type=job.task_type,
            timeout_seconds=kind.tier.timeout_seconds,
            max_retries=kind.tier.max_retries,
            heartbeat_timeout_seconds=heartbeat_timeout_seconds,
        ),
        id=workflow_id(job),
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=(
            WorkflowIDConflictPolicy.TERMINATE_EXISTING if supersede else WorkflowIDConflictPolicy.USE_EXISTING
        ),
        # Interactive work is dispatched before batch and maintenance work on a busy task queue.
        priority=Priority(priority_key=kind.tier.priority_key),
        search_attributes=search_attributes(job),
    )


def search_attributes(job: JobRecord) -> TypedSearchAttributes:
    pairs = [SearchAttributePair(KIND, job.task_type)]
    if job.user_id is not None:
        pairs.append(SearchAttributePair(USER_ID, job.user_id))
    for field, attribute in registry.REGISTRY[job.task_type].search_attributes:
        if field in job.payload:
            pairs.append(SearchAttributePair(SearchAttributeKey.for_keyword(attribute), job.payload[field]))
    return TypedSearchAttributes(pairs)


async def was_lost(client: Client, job: JobRecord) -> bool:
    """Whether a queued job has no run of its own: its workflow id is unknown, or its last run is closed
    and began before the job existed (a rerun's earlier run)."""
    try:
        description = await client.get_workflow_handle(workflow_id(job)).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    closed = description.status != WorkflowExecutionStatus.RUNNING
    return closed and description.start_time is not None and description.start_time < job.created_at


async def recover(client: Client, job: JobRecord, *, task_queue: str, heartbeat_timeout_seconds: int) -> bool:
    """Start a queued job's workflow if its start was lost; True when it did."""
    if not await was_lost(client, job):
        return False
    await start(
        client, job, task_queue=task_queue, heartbeat_timeout_seconds=heartbeat_timeout_seconds, supersede=False
    )
    return True


BROKER_ORDER_KIND = "broker_order"


async def follow_order(
    client: Client, settings: Settings, order_id: str, user_id: str, *, cancel: bool = False
) -> None:
    """Start the workflow that sends a broker account's order and writes its end to the ledger; one already
    running is kept (and, with ``cancel``, told to cancel the order: a signal-with-start, so a cancel reaches
    the order even when its workflow had not started)."""
    await client.start_workflow(
        BrokerOrderWorkflow.run,
        BrokerOrderInput(order_id, settings.job_heartbeat_timeout_seconds),
        id=broker_order.workflow_id(order_id),
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=broker_order.CANCEL_SIGNAL if cancel else None,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(KIND, BROKER_ORDER_KIND), SearchAttributePair(USER_ID, user_id)]
        ),
    )
