"""Jobs: the lifecycle every long operation shares, and the registry of task types with their SLA tiers
(reference §2.5)."""

from __future__ import annotations

from dataclasses import dataclass

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, CANCELLED})
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED}),
    FAILED: frozenset({QUEUED, CANCELLED}),
    SUCCEEDED: frozenset(),
    CANCELLED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


@dataclass(frozen=True)
class SlaTier:
    name: str
    priority: int
    timeout_seconds: int
    max_retries: int
    concurrency_limit: int

    @property
    def priority_key(self) -> int:
        """Temporal's task priority (1 is served first, 5 last) for the reference's 100/50/10."""
        return 1 if self.priority >= 100 else 3 if self.priority >= 50 else 5


INTERACTIVE = SlaTier("interactive", priority=100, timeout_seconds=1800, max_retries=1, concurrency_limit=1)
BATCH = SlaTier("batch", priority=50, timeout_seconds=1800, max_retries=0, concurrency_limit=2)
MAINTENANCE = SlaTier("maintenance", priority=10, timeout_seconds=900, max_retries=0, concurrency_limit=1)


@dataclass(frozen=True)
class TaskType:
    name: str
    tier: SlaTier
    description: str


# Only task types that a worker can actually run are registered; each later capability adds its own.
REGISTRY: dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType("market_data_sync", BATCH, "Fetch missing bars for symbols into the bar store."),
        TaskType("market_indicators_calculate", BATCH, "Compute technical indicators over stored bars."),
        TaskType("backtest_run", INTERACTIVE, "Backtest a strategy over stored bars, syncing what is missing."),
    )
}


def task_type(name: str) -> TaskType | None:
    return REGISTRY.get(name)
