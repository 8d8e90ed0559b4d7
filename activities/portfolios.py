"""The portfolio tasks: ``portfolio_evaluate`` and ``portfolio_rebalance``, each the one activity of its
job's JobWorkflowV2, taking the job id and reading the rest from the job's row.

Each reads the portfolio as it is when the task runs (its owner still the job's user), with each member's
latest completed backtest, and returns what the job stores as its result. A rebalance with ``apply`` writes
the target weights and increments the portfolio's version in one transaction under the portfolio's row lock,
and only when a weight changes: run again (a lost worker), it proposes the same weights and changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.jobs import activity_error, append_log, job_payload
from db.engine import Database
from db.models import Portfolio
from db.models.portfolios import latest_results, members_of
from domain import portfolios as rules

P = TypeVar("P", bound=BaseModel)


class PortfolioActivities:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="portfolio_evaluate")
    async def evaluate(self, job_id: str) -> dict[str, Any]:
        user_id, payload = await self._job(job_id, rules.EvaluatePayload)
        async with self._db.reading() as session:
            state, runs = await _loaded(session, user_id, payload.portfolio_id)
        result = await asyncio.to_thread(rules.evaluation, state, runs)
        await append_log(
            self._db,
            job_id,
            f"evaluated version {state.version}: {len(runs)} of {len(state.holdings)} members with a completed "
            f"backtest, risk {result['riskSummary']['status']}",
        )
        return result

    @activity.defn(name="portfolio_rebalance")
    async def rebalance(self, job_id: str) -> dict[str, Any]:
        user_id, payload = await self._job(job_id, rules.RebalancePayload)
        if not payload.apply:
            async with self._db.reading() as session:
                state, runs = await _loaded(session, user_id, payload.portfolio_id)
            proposal = await asyncio.to_thread(_proposal, state, runs, payload)
            await append_log(self._db, job_id, f"proposed {payload.method} weights for version {state.version}")
            return proposal
        async with self._db.session() as session:
            state, runs = await _loaded(session, user_id, payload.portfolio_id, lock=True)
            if state.status == rules.ARCHIVED:
                raise activity_error("PORTFOLIO_ARCHIVED", "an archived portfolio cannot change", retryable=False)
            proposal = await asyncio.to_thread(_proposal, state, runs, payload)
            changed = await _apply(session, state, proposal["targetWeights"])
            proposal["applied"] = True
            proposal["appliedVersion"] = state.version + 1 if changed else state.version
        outcome = f"applied as version {proposal['appliedVersion']}" if changed else "already in place"
        await append_log(self._db, job_id, f"{payload.method} weights for version {state.version} {outcome}")
        return proposal

    async def _job(self, job_id: str, model: type[P]) -> tuple[str, P]:
        job, payload = await job_payload(self._db, job_id, model)
        if job.user_id is None:  # only a portfolio's route starts these jobs, for its owner
            raise activity_error("PORTFOLIO_ACCESS_DENIED", "portfolio not found or access denied", retryable=False)
        return job.user_id, payload


async def _loaded(
    session: AsyncSession, user_id: str, portfolio_id: str, *, lock: bool = False
) -> tuple[rules.PortfolioState, dict[str, rules.MemberRun]]:
    """The portfolio as it is now, if it is still the user's, and its members' latest completed runs."""
    portfolio = await session.get(Portfolio, portfolio_id, with_for_update=lock)
    if portfolio is None or portfolio.user_id != user_id:
        raise activity_error("PORTFOLIO_ACCESS_DENIED", "portfolio not found or access denied", retryable=False)
    members = await members_of(session, portfolio_id)
    results = await latest_results(session, user_id, [m.strategy_id for m in members])
    runs = {strategy_id: rules.MemberRun.of(backtest_id, body) for strategy_id, (backtest_id, body) in results.items()}
    return rules.PortfolioState.of(portfolio, members), runs


def _proposal(state: rules.PortfolioState, runs: dict[str, rules.MemberRun], payload: Any) -> dict[str, Any]:
    try:
        return rules.rebalance(state, runs, payload.method, payload.target_weights)
    except rules.PortfolioRuleError as error:  # a named member left the portfolio since the request
        raise activity_error(error.code, str(error), retryable=False) from None


async def _apply(session: AsyncSession, state: rules.PortfolioState, targets: dict[str, float]) -> bool:
    """The target weights on the members, and one new version, if any weight changes."""
    members = {m.strategy_id: m for m in await members_of(session, state.id)}
    if all(members[key].weight == weight for key, weight in targets.items()):
        return False
    try:
        rules.check_weights(targets, state.constraints)
    except rules.PortfolioRuleError as error:  # a projection never leaves the constraints; refuse if it did
        raise activity_error(error.code, str(error), retryable=False) from None
    for key, weight in targets.items():
        members[key].weight = weight
    portfolio = await session.get_one(Portfolio, state.id)
    portfolio.version += 1
    return True
