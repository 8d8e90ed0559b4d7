"""Running a sweep's trials: the points a sampler proposes, and each trial's backtest. Both run in a worker's
process pool, so their inputs and outputs are plain data.

Reproducible by construction: a batch's proposals depend only on the trials recorded before it, the request's
seed and the batch's number. The study is rebuilt from the recorded trials for every batch, with a sampler
seeded from (seed, batch), whether or not the sweep was interrupted in between; a batch is recorded whole or
not at all, so a resumed sweep asks the same batch again and gets the same points.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from domain import backtest as backtests
from domain import metrics as measures
from domain import overfitting, signals
from domain.backtest import BacktestConfig, BarArrays, InsufficientData
from domain.research import BAYESIAN, CMAES, Dimension, SearchSpace, violations

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)

# Optuna's constrained samplers read a trial's constraint values under this system attribute.
CONSTRAINTS_KEY = "constraints"
# Proposals the template refuses (short window not below long, ...) are asked again, this many times a trial.
MAX_REJECTIONS = 200
# Blocks of a trial's returns kept for the probability of backtest overfitting (CSCV).
CSCV_BLOCKS = 12  # C(12, 6) = 924 combinations: cheap beside the sweep, as with 16 (12,870) it was not


# --- trials -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Bars and the backtest config of one period of a window."""

    config: BacktestConfig
    bars: BarArrays


@dataclass(frozen=True)
class TrialBatch:
    template: str
    train: Period
    test: Period | None
    trials: list[tuple[int, dict[str, Any]]]  # (number, parameters)
    metric: str
    constraints: dict[str, float]


@dataclass
class TrialOutcome:
    number: int
    parameters: dict[str, Any]
    state: str  # "complete", or "failed" (too few bars for the parameters' warm-up)
    score: float | None = None  # None also when the metric is undefined (a Sharpe ratio without trades)
    feasible: bool = False
    violations: list[str] = field(default_factory=list)
    constraint_values: list[float] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    test_metrics: dict[str, Any] | None = None
    error: str | None = None
    block_sums: list[float] | None = None
    block_squares: list[float] | None = None


def evaluate_batch(batch: TrialBatch) -> list[TrialOutcome]:
    """Each trial's backtest over the train period (its score, constraints and the block statistics of its
    returns) and, when the window has one, over the test period (shown, never given to the sampler). The
    batch's backtests run together (see ``backtest.evaluate_many``), sharing their indicators."""
    outcomes = [TrialOutcome(number, parameters, "complete") for number, parameters in batch.trials]
    with signals.indicators_shared():
        runnable, short = _split(batch.train, batch.template, outcomes)
        for outcome, shortage in short:
            outcome.state, outcome.error = "failed", str(shortage)
        train = _evaluations(batch.train, batch.template, runnable)
        for outcome, ran in zip(runnable, train, strict=True):
            _score(outcome, ran.metrics, batch)
        _block_statistics(runnable, train)
        if batch.test is not None:
            tested, short = _split(batch.test, batch.template, runnable)
            for outcome, ran in zip(tested, _evaluations(batch.test, batch.template, tested), strict=True):
                outcome.test_metrics = ran.metrics
            for outcome, shortage in short:
                outcome.test_metrics = {"error": str(shortage)}
    return outcomes


def _split(
    period: Period, template: str, outcomes: list[TrialOutcome]
) -> tuple[list[TrialOutcome], list[tuple[TrialOutcome, InsufficientData]]]:
    """The trials the period has enough bars for, and the others with why."""
    runnable, short = [], []
    for outcome in outcomes:
        shortage = backtests.insufficient(period.bars, template, outcome.parameters)
        if shortage is None:
            runnable.append(outcome)
        else:
            short.append((outcome, shortage))
    return runnable, short


def _evaluations(period: Period, template: str, outcomes: list[TrialOutcome]) -> list[backtests.Evaluation]:
    return backtests.evaluate_many(period.bars, template, [outcome.parameters for outcome in outcomes], period.config)


def _score(outcome: TrialOutcome, found: dict[str, Any], batch: TrialBatch) -> None:
    outcome.metrics = found
    value = found.get(batch.metric)
    outcome.score = None if value is None else float(value)
    outcome.violations, outcome.constraint_values = violations(found, batch.constraints)
    outcome.feasible = outcome.score is not None and not outcome.violations


def _block_statistics(outcomes: list[TrialOutcome], runs: list[backtests.Evaluation]) -> None:
    """Each trial's per-block sums and squares of its returns, for CSCV: of all the batch's at once."""
    if not runs:
        return
    returns = measures.returns_of(np.array([ran.outcome.equity for ran in runs]))
    if returns.shape[1] < CSCV_BLOCKS:
        return
    stats = overfitting.block_statistics(returns.T, CSCV_BLOCKS)  # periods × trials
    sums, squares = stats.sums.T.tolist(), stats.squares.T.tolist()
    for outcome, trial_sums, trial_squares in zip(outcomes, sums, squares, strict=True):
        outcome.block_sums, outcome.block_squares = trial_sums, trial_squares


# --- proposals ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """A recorded trial as a sampler sees it: its point in the searched dimensions and its train score."""

    point: dict[str, Any]
    value: float | None  # None: failed or undefined, which samplers skip
    constraint_values: list[float]
    system_attrs: dict[str, Any]


@dataclass(frozen=True)
class Proposal:
    parameters: dict[str, Any]  # the whole parameter set of the trial
    point: dict[str, Any]  # the searched dimensions' values
    system_attrs: dict[str, Any]  # what the sampler keeps on the trial (CMA-ES's state), recorded with it


@dataclass(frozen=True)
class Ask:
    space: SearchSpace
    method: str
    maximize: bool
    seed: int
    batch: int
    history: list[Recorded]
    count: int
    constrained: bool


def propose(ask: Ask) -> list[Proposal]:
    """The next ``count`` points: asked together, with the batch's earlier points pending (TPE's constant
    liar), so that a batch evaluated in parallel spreads out. Points the template refuses are told failed and
    asked again; fewer than ``count`` come back when the space yields no more feasible points."""
    study = study_of(ask.space, ask.history, ask.maximize, sampler(ask.method, batch_seed(ask.seed, ask.batch), ask))
    distributions = distributions_of(ask.space)
    proposals: list[Proposal] = []
    rejected = 0
    while len(proposals) < ask.count and rejected < MAX_REJECTIONS * ask.count:
        trial = study.ask(distributions)
        parameters = ask.space.feasible(trial.params)
        if parameters is None:
            study.tell(trial, state=TrialState.FAIL)
            rejected += 1
            continue
        attrs = study._storage.get_trial_system_attrs(trial._trial_id)
        proposals.append(Proposal(parameters, dict(trial.params), _plain(attrs)))
    return proposals


@dataclass(frozen=True)
class AskAndRun:
    """A sampler's batch: its points asked, then their backtests, in one call to the pool."""

    ask: Ask
    template: str
    train: Period
    test: Period | None
    metric: str
    constraints: dict[str, float]
    first: int  # the batch's first trial number


def propose_and_evaluate(run: AskAndRun) -> tuple[list[Proposal], list[TrialOutcome]]:
    proposals = propose(run.ask)
    numbered = [(run.first + i, proposal.parameters) for i, proposal in enumerate(proposals)]
    return proposals, evaluate_batch(
        TrialBatch(run.template, run.train, run.test, numbered, run.metric, run.constraints)
    )


def batch_seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def sampler(method: str, seed: int, ask: Ask | None = None) -> optuna.samplers.BaseSampler:
    constrained = ask is not None and ask.constrained
    constraints = _recorded_constraints if constrained else None
    if method == BAYESIAN:
        return optuna.samplers.TPESampler(
            seed=seed, constant_liar=True, multivariate=True, constraints_func=constraints
        )
    if method == CMAES:
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)


def _recorded_constraints(trial: FrozenTrial) -> list[float]:
    return list(trial.system_attrs.get(CONSTRAINTS_KEY, []))


def distributions_of(space: SearchSpace) -> dict[str, BaseDistribution]:
    return {d.name: _distribution(d) for d in space.dimensions}


def _distribution(dimension: Dimension) -> BaseDistribution:
    if dimension.choices is not None:
        return CategoricalDistribution(dimension.choices)
    if dimension.kind is int:
        return IntDistribution(int(dimension.low), int(dimension.high), step=int(dimension.step or 1))
    return FloatDistribution(dimension.low, dimension.high, step=dimension.step)


def study_of(
    space: SearchSpace, history: list[Recorded], maximize: bool, chosen: optuna.samplers.BaseSampler | None = None
) -> optuna.Study:
    """An in-memory study holding the recorded trials, in their order."""
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=chosen)
    distributions = distributions_of(space)
    now = datetime.now()
    study.add_trials(
        [
            _KeptTrial(
                number=-1,
                trial_id=-1,
                state=TrialState.COMPLETE if recorded.value is not None else TrialState.FAIL,
                value=recorded.value,
                values=None,
                datetime_start=now,
                datetime_complete=now,
                params=recorded.point,
                distributions=distributions,
                user_attrs={},
                # Without constraints no trial carries the key: TPE then skips its feasibility pass.
                system_attrs={**recorded.system_attrs, CONSTRAINTS_KEY: recorded.constraint_values}
                if recorded.constraint_values
                else recorded.system_attrs,
                intermediate_values={},
            )
            for recorded in history
        ]
    )
    return study


class _KeptTrial(FrozenTrial):
    """A recorded trial given to an in-memory study. The storage deep-copies every trial it takes: about half a
    millisecond a trial, most of it the distributions, which made rebuilding a 1,000-trial study cost more than
    the sampler. These trials are built for the study alone, and nothing changes a finished trial or a
    distribution, so copying the mappings is as safe. Nor are they validated again: each was a point the
    sampler asked within these distributions, recorded with a finite score or none, and checking every one
    at every rebuild cost a third of it."""

    def _validate(self) -> None:
        return None

    def __deepcopy__(self, memo: dict[int, Any]) -> _KeptTrial:
        return _KeptTrial(
            number=self.number,
            trial_id=self._trial_id,
            state=self.state,
            value=None,
            values=list(self.values) if self.values is not None else None,
            datetime_start=self.datetime_start,
            datetime_complete=self.datetime_complete,
            params=dict(self.params),
            distributions=dict(self.distributions),
            user_attrs=dict(self.user_attrs),
            system_attrs=dict(self.system_attrs),
            intermediate_values=dict(self.intermediate_values),
        )


def importances(space: SearchSpace, history: list[Recorded], maximize: bool) -> dict[str, float]:
    """Optuna's PED-ANOVA importances of the searched parameters over the trials with a score; empty when
    there are too few to tell (PED-ANOVA reads the top trials against all, so it is fast on large sweeps)."""
    scored = [recorded for recorded in history if recorded.value is not None]
    if len(space.dimensions) < 2 or len(scored) < 4:
        return {}
    study = study_of(space, scored, maximize)
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        )
    except (ValueError, RuntimeError):  # a space whose scores do not vary
        return {}
    return {name: float(value) for name, value in found.items()}


def _plain(attrs: dict[str, Any]) -> dict[str, Any]:
    """System attributes that JSON can carry (the sampler's own keys: strings, numbers, lists of them)."""
    return {key: value for key, value in attrs.items() if key != CONSTRAINTS_KEY}


def random_point(space: SearchSpace, seed: int, number: int) -> dict[str, Any] | None:
    """Trial ``number`` of a random sweep: a feasible point drawn from the space's lattice with a generator
    seeded by (seed, number), so that every trial is independent of the others and can run anywhere."""
    generator = np.random.default_rng([seed, number])
    for _ in range(MAX_REJECTIONS):
        point = {d.name: d.values[int(generator.integers(len(d.values)))] for d in space.dimensions}
        parameters = space.feasible(point)
        if parameters is not None:
            return parameters
    return None
