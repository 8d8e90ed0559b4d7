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
# A sweep whose points are known in advance (grid, random) runs in batches of at most PLANNED_BATCH trials,
# up to PLANNED_PARALLEL at once: spread over the workers of the task queue and their process pools. A batch is
# large enough that its round trip through Temporal costs little beside its trials (a process pool cuts it in
# chunks), so a sweep of a few hundred trials is one batch.
PLANNED_PARALLEL = 4
PLANNED_BATCH = 500
# A sampler's batches run one after the other in one activity for about this long, the sampler's history kept
# in the worker between them, so that a batch costs no round trip through Temporal.
SEGMENT_SECONDS = 5.0
# Activities a workflow run takes before it continues as new, keeping its history short.
BATCHES_PER_RUN = 200

# Stop reasons, as the reference names them.
EXHAUSTED, MAX_TRIALS, MAX_DURATION, EARLY_STOP = (
    "parameter_space_exhausted",
    "max_trials_reached",
    "max_duration_reached",
    "early_stop_score_reached",
)
CANCELLED = "cancelled"


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


def one_batch(plan: SweepPlan) -> bool:
    """Whether the sweep is one batch: one window of points known in advance, no more than a batch holds. Such a
    sweep runs in the activity that prepares it, as a backtest runs in the one that claims its slot, sparing
    it a round trip through Temporal."""
    return not plan.sequential and plan.windows == 1 and plan.planned[0] <= PLANNED_BATCH


def budget_spent(plan: SweepPlan, best: float | None, elapsed_seconds: float) -> str | None:
    """What ends a sweep before its planned trials, if anything: its best reached the early-stop score, or its
    time ran out. Deterministic, for the workflow, and the same for the activities that end a sweep."""
    target = plan.early_stop_score
    if target is not None and best is not None and (best >= target if plan.maximize else best <= target):
        return EARLY_STOP
    if elapsed_seconds >= plan.max_duration_seconds:
        return MAX_DURATION
    return None


def ran_out(plan: SweepPlan) -> str:
    """Why a sweep that ran every planned trial stopped: the space (a whole grid) or the trial budget."""
    return EXHAUSTED if plan.covers_space else MAX_TRIALS


def ending(plan: SweepPlan, *, exhausted: bool, best: float | None, elapsed_seconds: float) -> str:
    """Why a sweep stops after its last batch, as the workflow tells it: no feasible point left, the budget, or
    every planned trial run."""
    return EXHAUSTED if exhausted else budget_spent(plan, best, elapsed_seconds) or ran_out(plan)


@dataclass
class Prepared:
    claim: Claim
    plan: SweepPlan | None = None
    ran: BatchOutcome | None = None  # a sweep of one batch runs where it is prepared (see one_batch)


@dataclass
class SweepEnd:
    """Given to a batch that ends the sweep alone (the last of its last window, with none beside it): once its
    trials are recorded it builds the result, saving the sweep a round trip through Temporal."""

    plan: SweepPlan
    started_at: float  # the sweep's start, seconds since the epoch
    best: float | None  # the window's best before the batch


@dataclass
class BatchInput:
    job_id: str
    window: int
    batch: int
    first: int  # the batch's first trial number in its window
    count: int
    ends_sweep: SweepEnd | None = None


@dataclass
class BatchOutcome:
    evaluated: int  # trials recorded (fewer than asked when the space has no more feasible points)
    best_score: float | None
    best_number: int | None
    exhausted: bool = False
    ended: JobOutcome | None = None  # the job's outcome, when the batch ended the sweep


@dataclass
class SegmentInput:
    """Batches of a sampler from ``first`` (batch number ``batch``) towards ``planned`` trials, within the budget."""

    job_id: str
    window: int
    batch: int
    first: int
    planned: int
    started_at: float  # the sweep's start, seconds since the epoch
    plan: SweepPlan  # its budget


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
    ended: JobOutcome | None = None  # set when the last batch built the result


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
        sweep's bars into the store and check every window has enough, and answer the sweep's plan. A sweep of
        one batch then runs here, to its result."""
        raise NotImplementedError

    @activity.defn(name=BATCH_ACTIVITY)
    async def run_batch(self, batch: BatchInput) -> BatchOutcome:
        """A batch's points (asked of the sampler, or known in advance), their backtests in the process pool,
        and the batch's trials recorded in one transaction; a batch already recorded is not run again. A batch
        that ends the sweep then builds the result, as ``finish`` does."""
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
