"""The life of one order of a broker account (workflow id ``broker-order-<order id>``).

It sends the order to the broker (an activity that first looks the order up by our id, so a retry never places a
second one), then polls it, at growing intervals, until the broker's status is terminal, and finally writes the
ledger once (``domain.ledger.settlement``) in a transaction that first checks the order is still pending: a
worker killed at any point leaves a step that is simply done again. A ``cancel`` signal has the broker cancel
the order (asked again while an order in flight refuses it), or, when it comes before the order was sent, has
the order not sent at all; the order ends as the broker says (a fill that came first stands). A long wait
continues as new every ``POLLS_PER_RUN`` polls, so the history stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.broker import BrokerOrderState

SUBMIT_ACTIVITY = "broker_submit_order"
POLL_ACTIVITY = "broker_poll_order"
CANCEL_ACTIVITY = "broker_cancel_order"
SETTLE_ACTIVITY = "broker_settle_order"
CANCEL_SIGNAL = "cancel"
WORKFLOW_ID_PREFIX = "broker-order-"

FIRST_POLL_SECONDS = 0.5
LAST_POLL_SECONDS = 30.0
POLL_GROWTH = 1.5
POLLS_PER_RUN = 500
# Alpaca's statuses of an order whose cancel it has taken; another answer to a cancel is asked again, this often.
CANCEL_TAKEN = frozenset({"pending_cancel", "canceled"})
MAX_CANCELS = 10
# The broker and the database are retried until they answer: an accepted order is never dropped. A failing
# step shows in the Web UI as its attempts.
CALL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
CALL_TIMEOUT = timedelta(minutes=2)


def workflow_id(order_id: str) -> str:
    return WORKFLOW_ID_PREFIX + order_id


@dataclass
class BrokerOrderInput:
    order_id: str
    heartbeat_timeout_seconds: float = 60.0
    # Carried into a continued run: a cancel asked for and not yet sent, the last state and poll interval.
    cancel_requested: bool = False
    state: BrokerOrderState | None = None
    poll_seconds: float = FIRST_POLL_SECONDS


@dataclass
class BrokerCall:
    order_id: str
    broker_order_id: str | None
    # False when a cancel came before the order was sent: only an earlier attempt's order is looked for.
    send: bool = True


@dataclass
class Settle:
    order_id: str
    state: BrokerOrderState


@workflow.defn
class BrokerOrderWorkflow:
    def __init__(self) -> None:
        self._cancel_requested = False
        self._cancel_sent = False
        self._cancel_retry = False
        self._stage = "submitting"

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        self._cancel_requested = True

    @workflow.query
    def stage(self) -> str:
        return self._stage

    @workflow.run
    async def run(self, params: BrokerOrderInput) -> str:
        self._cancel_requested = self._cancel_requested or params.cancel_requested
        submit = BrokerCall(params.order_id, None, send=not self._cancel_requested)
        state = params.state or await self._call(SUBMIT_ACTIVITY, submit, params)
        delay, polls, cancels = params.poll_seconds, 0, 0
        while not state.terminal:
            self._stage = f"following: {state.status}"
            if self._cancel_due():
                state = await self._call(CANCEL_ACTIVITY, BrokerCall(params.order_id, state.broker_order_id), params)
                cancels, delay = cancels + 1, FIRST_POLL_SECONDS
                # An order in flight may refuse a cancel for a moment: asked again after the next poll.
                taken = state.terminal or state.status in CANCEL_TAKEN or cancels >= MAX_CANCELS
                self._cancel_sent, self._cancel_retry = taken, not taken
                continue
            try:  # a cancel asked for meanwhile is sent at once
                await workflow.wait_condition(self._cancel_due, timeout=delay)
                continue
            except TimeoutError:
                pass
            state = await self._call(POLL_ACTIVITY, BrokerCall(params.order_id, state.broker_order_id), params)
            delay, polls = min(delay * POLL_GROWTH, LAST_POLL_SECONDS), polls + 1
            if self._cancel_retry and not state.terminal:
                self._cancel_sent, self._cancel_retry = False, False
            if polls >= POLLS_PER_RUN and not state.terminal:
                workflow.continue_as_new(
                    BrokerOrderInput(
                        params.order_id,
                        params.heartbeat_timeout_seconds,
                        cancel_requested=self._cancel_requested and not self._cancel_sent,
                        state=state,
                        poll_seconds=delay,
                    )
                )
        self._stage = "settling"
        outcome = await workflow.execute_activity(
            SETTLE_ACTIVITY,
            Settle(params.order_id, state),
            result_type=str,
            start_to_close_timeout=CALL_TIMEOUT,
            heartbeat_timeout=timedelta(seconds=params.heartbeat_timeout_seconds),
            retry_policy=CALL_RETRY,
        )
        self._stage = outcome
        return outcome

    def _cancel_due(self) -> bool:
        return self._cancel_requested and not self._cancel_sent and not self._cancel_retry

    async def _call(self, activity: str, call: BrokerCall, params: BrokerOrderInput) -> BrokerOrderState:
        return await workflow.execute_activity(
            activity,
            call,
            result_type=BrokerOrderState,
            start_to_close_timeout=CALL_TIMEOUT,
            heartbeat_timeout=timedelta(seconds=params.heartbeat_timeout_seconds),
            retry_policy=CALL_RETRY,
        )
