"""Strategies (reference §2.3): a user's templates with validated parameters and a lifecycle."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AccessDenied, AppError, Conflict
from db.models import Strategy, User
from domain import strategies as rules
from services import backtests
from services.platform import Platform
from services.schemas.strategies import ExecutionCheckOut, TemplateOut


def invalid_parameters(error: rules.ParameterError) -> AppError:
    return AppError(
        "invalid strategy parameters", code="STRATEGY_INVALID_PARAMETERS", status=422, details=error.problems
    )


def _validated(template: str, parameters: dict[str, Any]) -> dict[str, Any]:
    try:
        return rules.validate_parameters(template, parameters)
    except rules.ParameterError as error:
        raise invalid_parameters(error) from None


async def create(platform: Platform, user: User, name: str, template: str, parameters: dict[str, Any]) -> Strategy:
    values = _validated(template, parameters)
    strategy = Strategy(
        id=f"{user.id}-{uuid.uuid4()}", user_id=user.id, name=name, template=template, parameters=values
    )
    async with platform.db.session() as session:
        session.add(strategy)
    return strategy


async def get(platform: Platform, user: User, strategy_id: str) -> Strategy:
    async with platform.db.session() as session:
        strategy = await session.get(Strategy, strategy_id)
    if strategy is None or strategy.user_id != user.id:
        raise AccessDenied("strategy")
    return strategy


async def _locked(session: AsyncSession, strategy_id: str) -> Strategy:
    """The strategy's row, locked for the rest of the transaction; its owner was checked by `get`."""
    strategy = await session.get(Strategy, strategy_id, with_for_update=True)
    if strategy is None:  # deleted since
        raise AccessDenied("strategy")
    return strategy


async def list_strategies(
    platform: Platform, user: User, *, status: str | None, search: str | None, page: int, page_size: int
) -> tuple[list[Strategy], int]:
    conditions = [Strategy.user_id == user.id]
    if status:
        conditions.append(Strategy.status == status)
    if search:
        conditions.append(func.lower(Strategy.name).contains(search.lower(), autoescape=True))
    async with platform.db.session() as session:
        total = await session.scalar(select(func.count()).select_from(Strategy).where(*conditions))
        rows = await session.scalars(
            select(Strategy)
            .where(*conditions)
            .order_by(Strategy.created_at.desc(), Strategy.id)
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        return list(rows), int(total or 0)


async def update(
    platform: Platform, user: User, strategy_id: str, *, name: str | None, parameters: dict[str, Any] | None
) -> Strategy:
    """Rename or re-parameterize; new parameters are checked against the template again."""
    await get(platform, user, strategy_id)
    async with platform.db.session() as session:
        strategy = await _locked(session, strategy_id)
        if strategy.status == rules.ARCHIVED:
            raise Conflict("an archived strategy cannot change", code="STRATEGY_ARCHIVED")
        if name is not None:
            strategy.name = name
        if parameters is not None:
            strategy.parameters = _validated(strategy.template, parameters)
    return strategy


async def transition(platform: Platform, user: User, strategy_id: str, target: str) -> Strategy:
    await get(platform, user, strategy_id)
    async with platform.db.session() as session:
        strategy = await _locked(session, strategy_id)
        if not rules.can_transition(strategy.status, target):
            raise Conflict(f"a {strategy.status} strategy cannot become {target}", code="STRATEGY_INVALID_TRANSITION")
        strategy.status = target
    return strategy


def check_execution(strategy: Strategy, parameters: dict[str, Any] | None) -> ExecutionCheckOut:
    """Whether ``parameters`` (or the stored ones) would run with this strategy's template."""
    try:
        values = rules.validate_parameters(
            strategy.template, parameters if parameters is not None else strategy.parameters
        )
    except rules.ParameterError as error:
        return ExecutionCheckOut(valid=False, errors=error.problems, parameters=None, template=strategy.template)
    return ExecutionCheckOut(valid=True, errors=[], parameters=values, template=strategy.template)


def templates() -> list[TemplateOut]:
    """The templates as the front end lists them."""
    return [_template_out(template) for template in rules.TEMPLATES.values()]


def _template_out(template: rules.Template) -> TemplateOut:
    def bounds(p: rules.Parameter) -> dict[str, Any]:
        return {"type": p.kind.__name__, "min": p.minimum, "max": p.maximum}

    return TemplateOut(
        id=template.id,
        template_id=template.id,
        name=template.name,
        description=template.description,
        required_parameters={p.name: bounds(p) for p in template.parameters},
        parameters={
            p.name: {**bounds(p), "default": p.kind(p.default), "description": p.description}
            for p in template.parameters
        },
        defaults={p.name: p.kind(p.default) for p in template.parameters},
        constraints=[f"{a} < {b}" for a, b in template.ordering],
    )


async def delete(platform: Platform, user: User, strategy_id: str) -> None:
    """Deletes the strategy and its finished backtests; refused while one of them is pending or running."""
    await get(platform, user, strategy_id)
    async with platform.db.session() as session:
        strategy = await backtests.locked_strategy(session, strategy_id)
        if strategy is None:  # deleted by a concurrent request since it was read
            raise AccessDenied("strategy")
        active = await backtests.running_count(session, strategy_id)
        if active:
            raise Conflict(f"{active} backtests of this strategy are pending or running", code="STRATEGY_IN_USE")
        await session.delete(strategy)
