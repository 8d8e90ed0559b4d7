"""Job commands (`quantpoly jobs ...`) and the market-data commands that start jobs."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from api.deps import MAX_PAGE
from cli import context
from cli.output import command_runner, emit, fail
from core.errors import NotFound
from domain import jobs as lifecycle
from domain.schedules import ACTIVE, CRON, INTERVAL, STOPPED
from services import accounts, jobs, schedules
from services.platform import Platform
from services.schemas.jobs import JobOut

POLL_SECONDS = 0.5

user_option = click.option(
    "--user",
    "user_email",
    envvar="QUANTPOLY_USER",
    required=True,
    help="Email of the account to act for [env QUANTPOLY_USER].",
)
wait_option = click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")


async def find_user(platform: Platform, email: str):
    async with platform.db.session() as session:
        user = await accounts.find_by_email(session, email)
    if user is None:
        raise NotFound(f"no account {email}", code="USER_NOT_FOUND")
    return user


def job_view(job, logs=None) -> dict:
    return JobOut.of(job, logs).model_dump(mode="json", exclude_none=logs is None)


async def follow(platform: Platform, user, job_id: str) -> dict:
    """Show a progress bar until the job ends; a failed or cancelled job exits with status 1."""
    with click.progressbar(length=100, label="job", file=sys.stderr) as bar:
        shown = 0
        while True:
            job = await jobs.get(platform, user, job_id)
            done = round(job.progress * 100)
            bar.label = f"{job.task_type} {job.status}"
            bar.update(done - shown)
            shown = done
            if job.status in (lifecycle.SUCCEEDED, lifecycle.FAILED, lifecycle.CANCELLED):
                break
            await asyncio.sleep(POLL_SECONDS)
    view = job_view(job, await jobs.logs(platform, job.id))
    if job.status != lifecycle.SUCCEEDED:
        emit(view)
        fail(job.error_code or "JOB_" + job.status.upper(), job.error_message or f"job {job.status}")
    return view


@click.group("jobs")
def jobs_group() -> None:
    """Long operations run by Temporal workflows."""


@jobs_group.command("list")
@user_option
@click.option("--status", type=click.Choice(lifecycle.STATUSES), default=None)
@click.option("--task-type", default=None)
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--page-size", default=20, show_default=True, type=click.IntRange(1, 200))
@command_runner
async def jobs_list(user_email, status, task_type, page, page_size) -> None:
    """List the account's jobs, newest first."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        rows, total = await jobs.list_jobs(
            platform, user, status=status, task_type=task_type, page=page, page_size=page_size
        )
    emit({"items": [job_view(j) for j in rows], "total": total, "page": page, "page_size": page_size})


@jobs_group.command("show")
@user_option
@click.argument("job_id")
@command_runner
async def jobs_show(user_email, job_id) -> None:
    """One job with its execution log."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        job = await jobs.get(platform, user, job_id)
        emit(job_view(job, await jobs.logs(platform, job.id)))


@jobs_group.command("logs")
@user_option
@click.argument("job_id")
@command_runner
async def jobs_logs(user_email, job_id) -> None:
    """The job's execution log lines."""
    async with context.platform(need_temporal=False) as platform:
        user = await find_user(platform, user_email)
        job = await jobs.get(platform, user, job_id)
        lines = await jobs.logs(platform, job.id)
    emit([{"at": line.at, "level": line.level, "message": line.message} for line in lines])


@jobs_group.command("cancel")
@user_option
@click.argument("job_id")
@command_runner
async def jobs_cancel(user_email, job_id) -> None:
    """Cancel a queued or running job through Temporal."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        emit(job_view(await jobs.cancel(platform, user, job_id)))


@jobs_group.command("retry")
@user_option
@wait_option
@click.argument("job_id")
@command_runner
async def jobs_retry(user_email, wait, job_id) -> None:
    """Run a failed job again."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        job = await jobs.retry(platform, user, job_id)
        emit(await follow(platform, user, job.id) if wait else job_view(job))


@jobs_group.command("types")
def jobs_types() -> None:
    """The registered task types and their SLA tiers."""
    emit(jobs.task_types())


payload_option = click.option(
    "--payload", default="{}", show_default=True, help="The job's payload as JSON, checked like POST /jobs."
)


def parsed_payload(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--payload") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload")
    return value


@jobs_group.command("schedule-interval")
@user_option
@click.argument("task_type")
@click.option("--every", "every_seconds", required=True, type=click.IntRange(1), help="Seconds between jobs.")
@payload_option
@command_runner
async def jobs_schedule_interval(user_email, task_type, every_seconds, payload) -> None:
    """Start a TASK_TYPE job every --every seconds, as a Temporal Schedule."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        emit(await schedules.create(platform, user, task_type, INTERVAL, str(every_seconds), parsed_payload(payload)))


@jobs_group.command("schedule-cron")
@user_option
@click.argument("task_type")
@click.option("--cron", "cron_expr", required=True, help='A cron expression, e.g. "0 2 * * *" (UTC).')
@payload_option
@command_runner
async def jobs_schedule_cron(user_email, task_type, cron_expr, payload) -> None:
    """Start a TASK_TYPE job on a cron expression, as a Temporal Schedule."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        emit(await schedules.create(platform, user, task_type, CRON, cron_expr.strip(), parsed_payload(payload)))


@jobs_group.command("schedules")
@user_option
@click.option("--status", type=click.Choice([ACTIVE, STOPPED]), default=None)
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1, max=MAX_PAGE))
@click.option("--page-size", default=20, show_default=True, type=click.IntRange(1, 200))
@command_runner
async def jobs_schedules(user_email, status, page, page_size) -> None:
    """The account's schedules, newest first, with their next runs."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        rows, total = await schedules.list_schedules(platform, user, status=status, page=page, page_size=page_size)
    emit({"items": rows, "total": total, "page": page, "page_size": page_size})


@jobs_group.command("schedule-stop")
@user_option
@click.argument("schedule_id")
@command_runner
async def jobs_schedule_stop(user_email, schedule_id) -> None:
    """Stop a schedule: no more jobs; the ones it started stay."""
    async with context.platform() as platform:
        user = await find_user(platform, user_email)
        emit(await schedules.stop(platform, user, schedule_id))


@jobs_group.command("runtime")
@user_option
@command_runner
async def jobs_runtime(user_email) -> None:
    """Admin: pollers on the task queue, schedules and their next runs, job counts, the reconciler."""
    async with context.platform() as platform:
        admin = await find_user(platform, user_email)
        emit(await schedules.runtime(platform, admin))


@jobs_group.command("templates")
@user_option
@click.option("--recover", is_flag=True, help="Create the system schedules that are missing.")
@command_runner
async def jobs_templates(user_email, recover) -> None:
    """Admin: the system schedule templates and their Temporal Schedules."""
    async with context.platform() as platform:
        admin = await find_user(platform, user_email)
        found = schedules.recover_system_templates if recover else schedules.system_templates
        emit(await found(platform, admin))


def register(cli: click.Group) -> None:
    cli.add_command(jobs_group)
