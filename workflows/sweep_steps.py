"""What a research sweep's workflow and its activities share: inputs, outputs and the activities' declarations
(implemented by ``activities.research.ResearchActivities``). Imported passed through the sandbox, like
``workflows.steps``: deterministic, with no state at module level."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity

from workflows.steps import Claim, ClaimInput, JobInput, JobOutcome

PREPARE_ACTIVITY = "research_claim_and_prepare"
BATCH_ACTIVITY = "research_run_batch"
SEGMENT_ACTIVITY = "research_run_batches"
FINISH_ACTIVITY = "research_finish"
MIRROR_ACTIVITY = "research_mirror"

# Trials a sequential sampler (TPE, CMA-ES) asks at once: fixed, since a batch's points depend on its size.
# Sixteen asked together (the constant liar spreading them) cost TPE no more than sixteen asked one by one.
SAMPLER_BATCH = 16
# A sweep whose points are known in advance (grid, random) runs this many batches at once, each of at most
# PLANNED_BATCH trials: spread over the workers of the task queue and their process pools.
PLANNED_PARALLEL = 4
PLANNED_BATCH = 250
# A sampler's batches run one after the other in one activity for about this long, the sampler's history kept
# in the worker between them, so that a batch costs no round trip through Temporal.
SEGMENT_SECONDS = 5.0
# Activities a workflow run takes before it continues as new, keeping its history short.
BATCHES_PER_RUN = 200


@dataclass
class SweepPlan:
    """What the workflow needs of a sweep: its windows and, per window, the trials planned."""

    windows: int
    planned: list[int]  # trials per window
    sequential: bool  # asked batch by batch (TPE, CMA-ES), or known in advance (grid, random)
    covers_space: bool  # every feasible point is planned (a grid within the trial budget)
    max_duration_seconds: float
    early_stop_score: float | None
    maximize: bool


@dataclass
class Prepared:
    claim: Claim
    plan: SweepPlan | None = None


@dataclass
class BatchInput:
    job_id: str
    window: int
    batch: int
    first: int  # the batch's first trial number in its window
    count: int


@dataclass
class BatchOutcome:
    evaluated: int  # trials recorded (fewer than asked when the space has no more feasible points)
    best_score: float | None
    best_number: int | None
    exhausted: bool = False


@dataclass
class SegmentInput:
    """Batches of a sampler from ``first`` (batch number ``batch``) towards ``planned`` trials, within the budget."""

    job_id: str
    window: int
    batch: int
    first: int
    planned: int
    started_at: float  # the sweep's start, seconds since the epoch
    max_duration_seconds: float
    early_stop_score: float | None
    maximize: bool


@dataclass
class SegmentOutcome:
    evaluated: int
    best_score: float | None
    best_number: int | None
    next_number: int
    next_batch: int
    exhausted: bool


@dataclass
class SweepState:
    """Where a sweep stands, carried across continue-as-new."""

    plan: SweepPlan
    started_at: float  # workflow time, seconds since the epoch
    window: int = 0
    next_number: int = 0  # in the current window
    batch: int = 0  # in the current window
    done: int = 0  # trials recorded in every window
    best: list[float | None] = field(default_factory=list)  # per window
    stop_reason: str | None = None


@dataclass
class SweepInput(JobInput):
    """A sweep's workflow input: the job's, and where the sweep stands when a run continues as new (a
    second argument would not do: a workflow started with one argument decodes it untyped)."""

    state: SweepState | None = None


@dataclass
class FinishSweep:
    job_id: str
    stop_reason: str
    used_duration_ms: int
    cancelled: bool = False


class ResearchSteps:
    @activity.defn(name=PREPARE_ACTIVITY)
    async def claim_and_prepare(self, claim: ClaimInput) -> Prepared:
        """Claim the user's slot (queued → running) or report that the job waits; once claimed, bring the
        sweep's bars into the store and check every window has enough, and answer the sweep's plan."""
        raise NotImplementedError

    @activity.defn(name=BATCH_ACTIVITY)
    async def run_batch(self, batch: BatchInput) -> BatchOutcome:
        """A batch's points (asked of the sampler, or known in advance), their backtests in the process pool,
        and the batch's trials recorded in one transaction; a batch already recorded is not run again."""
        raise NotImplementedError

    @activity.defn(name=SEGMENT_ACTIVITY)
    async def run_batches(self, segment: SegmentInput) -> SegmentOutcome:
        """A sampler's batches one after the other, each asked from the trials recorded before it, evaluated
        and recorded in one transaction, until the window is done, the budget ends or the segment's time."""
        raise NotImplementedError

    @activity.defn(name=FINISH_ACTIVITY)
    async def finish(self, finish: FinishSweep) -> JobOutcome:
        """The sweep's result from its recorded trials (best candidates, out-of-sample figures, importances,
        overfitting figures), stored with the job's outcome in one transaction."""
        raise NotImplementedError

    @activity.defn(name=MIRROR_ACTIVITY)
    async def mirror(self, job_id: str) -> int:
        """What optuna's storage lacks of the sweep's recorded trials, written once the job has ended (an
        export for optuna-dashboard: the job does not wait for it)."""
        raise NotImplementedError
