"""The life of one mailed token (password reset or email verification).

Workflow id ``reset-token-<id>`` or ``verify-token-<id>``. It has the token drawn and mailed by an activity,
then sleeps on a durable timer until the token's deadline, or less if the token is consumed (signal
``consumed``). Either way it settles the token: an unused token is marked expired at its deadline, a used
reset token gets its "password changed" notice. Because the timer lives in Temporal, expiry survives any
restart of the API, the worker or the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"
WORKFLOW_ID_PREFIX = {PASSWORD_RESET: "reset-token-", EMAIL_VERIFICATION: "verify-token-"}
# The audit event of a request by address; the worker records its outcome once it knows the account.
REQUEST_EVENT = {PASSWORD_RESET: "password_reset_request", EMAIL_VERIFICATION: "verify_email_resend"}

# Activity names, shared with activities/auth.py (kept as strings so this module stays free of the database).
DELIVER_ACTIVITY = "deliver_auth_token"
SETTLE_ACTIVITY = "settle_auth_token"


def workflow_id(purpose: str, token_id: str) -> str:
    return WORKFLOW_ID_PREFIX[purpose] + token_id


@dataclass
class AuthTokenInput:
    token_id: str
    purpose: str
    expires_at: datetime


@workflow.defn
class AuthTokenWorkflow:
    def __init__(self) -> None:
        self._consumed = False
        self._stage = "delivering"

    @workflow.run
    async def run(self, params: AuthTokenInput) -> str:
        if await self._deliver(params):
            self._stage = "waiting"
            remaining = self._remaining(params)
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(lambda: self._consumed, timeout=remaining)
                except TimeoutError:
                    pass
        self._stage = "settling"
        outcome = await workflow.execute_activity(
            SETTLE_ACTIVITY,
            params.token_id,
            result_type=str,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
        )
        self._stage = outcome
        return outcome

    async def _deliver(self, params: AuthTokenInput) -> bool:
        """Draw and mail the token, retrying delivery until the token's own deadline."""
        try:
            return await workflow.execute_activity(
                DELIVER_ACTIVITY,
                params.token_id,
                result_type=bool,
                start_to_close_timeout=timedelta(minutes=1),
                schedule_to_close_timeout=max(self._remaining(params), timedelta(minutes=1)),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=2)),
            )
        except ActivityError:
            workflow.logger.warning("token %s was never delivered", params.token_id)
            return False

    @staticmethod
    def _remaining(params: AuthTokenInput) -> timedelta:
        return params.expires_at - workflow.now()

    @workflow.signal
    def consumed(self) -> None:
        self._consumed = True

    @workflow.query
    def stage(self) -> str:
        return self._stage
