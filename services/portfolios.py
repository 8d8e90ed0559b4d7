"""Portfolios (reference §2.3): a user's strategies at weights under constraints, their read model from the
members' latest completed backtests, and the ``portfolio_evaluate`` and ``portfolio_rebalance`` jobs.

Every change runs in one transaction under the portfolio's row lock (FOR UPDATE; on SQLite the transaction's
write lock) and increments its version once, so concurrent changes are serialized and each version names one
state of the portfolio and its members.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AccessDenied, AppError, Conflict, NotFound
from db.base import utcnow
from db.models import Job, Portfolio, PortfolioMember, Strategy, User
from db.models.portfolios import latest_results, members_of
from domain import portfolios as rules
from services import jobs
from services.platform import Platform
from services.schemas.portfolios import (
    ConstraintsOut,
    ConstraintsPatch,
    MemberOut,
    PortfolioOut,
    ReadModelOut,
)

EVALUATE, REBALANCE = "portfolio_evaluate", "portfolio_rebalance"


def rule_error(error: rules.PortfolioRuleError) -> AppError:
    """422 with the rule's code, naming each problem."""
    return AppError(str(error), code=error.code, status=422, details=error.problems)


def _archived() -> Conflict:
    return Conflict("an archived portfolio cannot change", code="PORTFOLIO_ARCHIVED")


def view(portfolio: Portfolio, members: Sequence[PortfolioMember]) -> PortfolioOut:
    return PortfolioOut(
        id=portfolio.id,
        user_id=portfolio.user_id,
        name=portfolio.name,
        status=portfolio.status,
        version=portfolio.version,
        constraints=ConstraintsOut(
            max_total_weight=portfolio.max_total_weight, max_single_weight=portfolio.max_single_weight
        ),
        members=[MemberOut.model_validate(m) for m in members],
        total_weight=rules.total_weight([m.weight for m in members]),
        created_at=portfolio.created_at,
        updated_at=portfolio.updated_at,
    )


def _constraints(portfolio: Portfolio) -> rules.Constraints:
    return rules.Constraints(portfolio.max_total_weight, portfolio.max_single_weight)


def _checked(constraints: rules.Constraints, weights: dict[str, float]) -> None:
    try:
        constraints.check()
        rules.check_weights(weights, constraints)
    except rules.PortfolioRuleError as error:
        raise rule_error(error) from None


async def _own_strategies(session: AsyncSession, user: User, strategy_ids: Sequence[str]) -> None:
    """403 STRATEGY_ACCESS_DENIED unless every strategy exists and is the caller's."""
    if not strategy_ids:
        return
    rows = await session.execute(select(Strategy.id, Strategy.user_id).where(Strategy.id.in_(strategy_ids)))
    owners = {strategy_id: owner for strategy_id, owner in rows}
    if any(owners.get(strategy_id) != user.id for strategy_id in strategy_ids):
        raise AccessDenied("strategy")


async def create(
    platform: Platform,
    user: User,
    name: str,
    constraints: rules.Constraints,
    members: Sequence[tuple[str, float]],
) -> PortfolioOut:
    """A draft portfolio at version 1 with its members, all in one transaction."""
    weights = dict(members)
    if len(weights) != len(members):
        raise rule_error(rules.InvalidWeights(["a strategy is listed more than once"]))
    _checked(constraints, weights)
    portfolio = Portfolio(
        id=f"{user.id}-portfolio-{uuid.uuid4()}",
        user_id=user.id,
        name=name,
        status=rules.DRAFT,
        version=1,
        max_total_weight=constraints.max_total_weight,
        max_single_weight=constraints.max_single_weight,
    )
    # Members are listed in the order they joined: those of one request a microsecond apart, in its order.
    now = utcnow()
    rows = [
        PortfolioMember(
            portfolio_id=portfolio.id,
            strategy_id=s,
            weight=w,
            created_at=now + timedelta(microseconds=i),
            updated_at=now + timedelta(microseconds=i),
        )
        for i, (s, w) in enumerate(weights.items())
    ]
    try:
        async with platform.db.session() as session:
            await _own_strategies(session, user, list(weights))
            session.add(portfolio)
            await session.flush()  # the portfolio's row first: its members reference it
            session.add_all(rows)
    except IntegrityError:  # a member's strategy was deleted meanwhile
        raise AccessDenied("strategy") from None
    return view(portfolio, rows)


async def _owned(session: AsyncSession, user: User, portfolio_id: str, *, lock: bool = False) -> Portfolio:
    portfolio = await session.get(Portfolio, portfolio_id, with_for_update=lock)
    if portfolio is None or portfolio.user_id != user.id:
        raise AccessDenied("portfolio")
    return portfolio


async def get(platform: Platform, user: User, portfolio_id: str) -> PortfolioOut:
    async with platform.db.reading() as session:
        portfolio = await _owned(session, user, portfolio_id)
        return view(portfolio, await members_of(session, portfolio_id))


async def list_portfolios(
    platform: Platform, user: User, *, status: str | None, page: int, page_size: int
) -> tuple[list[PortfolioOut], int]:
    """A page of the user's portfolios, newest first, each with its members."""
    conditions = [Portfolio.user_id == user.id]
    if status:
        conditions.append(Portfolio.status == status)
    async with platform.db.reading() as session:
        total = await session.scalar(select(func.count()).select_from(Portfolio).where(*conditions))
        portfolios = list(
            await session.scalars(
                select(Portfolio)
                .where(*conditions)
                .order_by(Portfolio.created_at.desc(), Portfolio.id)
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
        )
        members: dict[str, list[PortfolioMember]] = {p.id: [] for p in portfolios}
        if portfolios:
            rows = await session.scalars(
                select(PortfolioMember)
                .where(PortfolioMember.portfolio_id.in_(list(members)))
                .order_by(PortfolioMember.created_at, PortfolioMember.strategy_id)
            )
            for row in rows:
                members[row.portfolio_id].append(row)
    return [view(p, members[p.id]) for p in portfolios], int(total or 0)


async def update(
    platform: Platform,
    user: User,
    portfolio_id: str,
    *,
    name: str | None = None,
    status: str | None = None,
    constraints: ConstraintsPatch | None = None,
) -> PortfolioOut:
    """Rename, move through the lifecycle (draft ↔ active, either → archived) or change the constraints,
    which the members' weights must still respect. One new version when anything changed."""
    async with platform.db.session() as session:
        portfolio = await _owned(session, user, portfolio_id, lock=True)
        members = await members_of(session, portfolio_id)
        changed = False
        if status is not None and status != portfolio.status:
            if not rules.can_transition(portfolio.status, status):
                raise Conflict(
                    f"a {portfolio.status} portfolio cannot become {status}", code="PORTFOLIO_INVALID_TRANSITION"
                )
        current = _constraints(portfolio)
        wanted = current
        if constraints is not None:
            wanted = rules.Constraints(
                current.max_total_weight if constraints.max_total_weight is None else constraints.max_total_weight,
                current.max_single_weight if constraints.max_single_weight is None else constraints.max_single_weight,
            )
        renamed = name is not None and name != portfolio.name
        if portfolio.status == rules.ARCHIVED and (renamed or wanted != current):
            raise _archived()
        if wanted != current:
            _checked(wanted, {m.strategy_id: m.weight for m in members})
            portfolio.max_total_weight, portfolio.max_single_weight = wanted.max_total_weight, wanted.max_single_weight
            changed = True
        if renamed:
            portfolio.name, changed = name or portfolio.name, True
        if status is not None and status != portfolio.status:
            portfolio.status, changed = status, True
        if changed:
            portfolio.version += 1
            await session.flush()  # the new updatedAt
        return view(portfolio, members)


async def delete(platform: Platform, user: User, portfolio_id: str) -> None:
    """The portfolio and its members (its finished jobs stay, as every job does)."""
    async with platform.db.session() as session:
        await session.delete(await _owned(session, user, portfolio_id, lock=True))


async def put_member(
    platform: Platform, user: User, portfolio_id: str, strategy_id: str, weight: float
) -> PortfolioOut:
    """Add a strategy at a weight, or change a member's weight; the weights must respect the constraints."""
    try:
        async with platform.db.session() as session:
            portfolio = await _owned(session, user, portfolio_id, lock=True)
            if portfolio.status == rules.ARCHIVED:
                raise _archived()
            await _own_strategies(session, user, [strategy_id])
            members = await members_of(session, portfolio_id)
            member = next((m for m in members if m.strategy_id == strategy_id), None)
            if member is None and len(members) >= rules.MAX_MEMBERS:
                raise AppError(
                    f"a portfolio has at most {rules.MAX_MEMBERS} members",
                    code="PORTFOLIO_TOO_MANY_MEMBERS",
                    status=422,
                )
            weights = {m.strategy_id: m.weight for m in members}
            weights[strategy_id] = weight
            _checked(_constraints(portfolio), weights)
            if member is None:
                member = PortfolioMember(portfolio_id=portfolio_id, strategy_id=strategy_id, weight=weight)
                session.add(member)
                members.append(member)
            elif member.weight == weight:
                return view(portfolio, members)  # nothing changes, and neither does the version
            else:
                member.weight = weight
            portfolio.version += 1
            await session.flush()
            return view(portfolio, members)
    except IntegrityError:  # the strategy was deleted meanwhile
        raise AccessDenied("strategy") from None


async def remove_member(platform: Platform, user: User, portfolio_id: str, strategy_id: str) -> PortfolioOut:
    async with platform.db.session() as session:
        portfolio = await _owned(session, user, portfolio_id, lock=True)
        if portfolio.status == rules.ARCHIVED:
            raise _archived()
        members = await members_of(session, portfolio_id)
        member = next((m for m in members if m.strategy_id == strategy_id), None)
        if member is None:
            raise NotFound("the strategy is not a member of this portfolio", code="PORTFOLIO_MEMBER_NOT_FOUND")
        await session.delete(member)
        portfolio.version += 1
        await session.flush()
        return view(portfolio, [m for m in members if m is not member])


# --- the read model, and the jobs that evaluate and rebalance ----------------------------------------------


async def read_model(platform: Platform, user: User, portfolio_id: str) -> ReadModelOut:
    """The portfolio combined from each member's latest completed backtest (what ``portfolio_evaluate``
    computes too, without its risk summary)."""
    async with platform.db.reading() as session:
        portfolio = await _owned(session, user, portfolio_id)
        members = await members_of(session, portfolio_id)
        results = await latest_results(session, user.id, [m.strategy_id for m in members])
    state = rules.PortfolioState.of(portfolio, members)
    model = await asyncio.to_thread(
        lambda: rules.read_model(state, {s: rules.MemberRun.of(b, body) for s, (b, body) in results.items()})
    )
    return ReadModelOut.model_validate(model)


async def evaluate(platform: Platform, user: User, portfolio_id: str, idempotency_key: str | None) -> tuple[Job, bool]:
    """A ``portfolio_evaluate`` job (True), or the job this key already made for the same request (False)."""
    await get(platform, user, portfolio_id)
    payload = rules.EvaluatePayload(portfolio_id=portfolio_id)
    return await _submit(platform, user, EVALUATE, payload, idempotency_key)


async def rebalance(
    platform: Platform,
    user: User,
    portfolio_id: str,
    *,
    target_weights: dict[str, float] | None,
    method: str | None,
    apply: bool,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """A ``portfolio_rebalance`` job; explicit target weights are checked against the members first."""
    chosen = method or ("target" if target_weights is not None else "score")
    if (chosen == "target") != (target_weights is not None):
        raise AppError(
            "targetWeights go with method 'target' (or no method), and only then",
            code="VALIDATION_ERROR",
            status=422,
            details=[{"field": "targetWeights", "message": "give targetWeights with method 'target', or a method"}],
        )
    portfolio = await get(platform, user, portfolio_id)
    if apply and portfolio.status == rules.ARCHIVED:
        raise _archived()
    if target_weights is not None:
        try:
            rules.check_targets({m.strategy_id: m.weight for m in portfolio.members}, target_weights)
        except rules.PortfolioRuleError as error:
            raise rule_error(error) from None
    payload = rules.RebalancePayload(
        portfolio_id=portfolio_id,
        method=chosen,
        target_weights=target_weights,
        apply=apply,
    )
    return await _submit(platform, user, REBALANCE, payload, idempotency_key)


async def _submit(
    platform: Platform, user: User, task_type: str, payload: BaseModel, idempotency_key: str | None
) -> tuple[Job, bool]:
    document = payload.model_dump(mode="json", by_alias=True)
    message = f"queued {task_type} of portfolio {document['portfolioId']}"
    return await jobs.submit_for_record(platform, user, task_type, document, idempotency_key, message)
