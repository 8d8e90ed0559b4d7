"""Deflated Sharpe ratio and probability of backtest overfitting (domain/overfitting.py) on hand-computed cases.

The expected values are worked out in the comments from the papers' formulas, not taken from the module.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from domain import overfitting
from domain.overfitting import BlockStats

LN3 = math.log(3)

# --- Deflated Sharpe ratio ---------------------------------------------------------------------------------------

# x = [4, -1, 2, 0, 1, 0] in percent. Sharpe ratio, skewness and kurtosis are scale-free, so work in x:
#   mean = 6 / 6 = 1, deviations d = [3, -2, 1, -1, 0, -1]
#   Σd² = 9 + 4 + 1 + 1 + 0 + 1 = 16,  Σd³ = 27 - 8 + 1 - 1 + 0 - 1 = 18,  Σd⁴ = 81 + 16 + 1 + 1 + 0 + 1 = 100
#   std (ddof=1) = sqrt(16 / 5) = 4 / √5, so SR = 1 / (4 / √5) = √5 / 4 = 0.5590169943749475
#   biased moments m2 = 16/6 = 8/3, m3 = 18/6 = 3, m4 = 100/6 = 50/3
#   skewness = m3 / m2^1.5 = 3 (3/8)^1.5 = 9√6 / 32 = 0.6889189901577688
#   kurtosis = m4 / m2² = (50/3) / (64/9) = 75/32 = 2.34375
#   PSR's radicand 1 - γ3 SR + (γ4 - 1)/4 SR² = 1 - (9√6/32)(√5/4) + (43/32)/4 (5/16)
#                                           = 1 - 9√30/128 + 215/2048 = 0.7198630455041801, sqrt = 0.8484474323752651
#   T = 6, sqrt(T - 1) = √5
SIX_RETURNS = np.array([0.04, -0.01, 0.02, 0.0, 0.01, 0.0])


def test_expected_maximum_sharpe_of_one_trial_is_zero():
    assert overfitting.expected_maximum_sharpe(1, 1.0) == 0.0
    assert overfitting.expected_maximum_sharpe(1, 0.25) == 0.0


def test_expected_maximum_sharpe_of_ten_trials():
    # sqrt(V) ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))), γ = 0.5772156649015329, N = 10, V = 1:
    #   Φ⁻¹(1 - 1/10) = NormalDist().inv_cdf(0.9) = 1.2815515655446008
    #   1/(10 e) = 0.036787944117144235, Φ⁻¹(1 - 0.036787944117144235) = 1.7892417645816279
    #   (1 - γ) 1.2815515655446008 = 0.42278433509846713 × 1.2815515655446008 = 0.5418199265331737
    #   γ 1.7892417645816279 = 1.0327783748125763
    #   sum = 1.57459830134575
    assert overfitting.expected_maximum_sharpe(10, 1.0) == pytest.approx(1.57459830134575, abs=1e-9)
    # V = 4 scales it by sqrt(4) = 2.
    assert overfitting.expected_maximum_sharpe(10, 4.0) == pytest.approx(2 * 1.57459830134575, abs=1e-9)


def test_probabilistic_sharpe_ratio_of_normal_returns():
    # SR = 0.1, SR* = 0, T = 101, γ3 = 0, γ4 = 3: Φ(0.1 × sqrt(100) / sqrt(1 - 0 + (3 - 1)/4 × 0.01))
    #   = Φ(1 / sqrt(1.005)) = Φ(0.9975093361076329) = 0.8407413278013518
    psr = overfitting.probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0)
    assert psr == pytest.approx(0.8407413278013518, abs=1e-9)


def test_deflated_sharpe_ratio_of_six_returns():
    # trials = 10, sharpe_variance = 0.01: SR* = sqrt(0.01) × 1.57459830134575 = 0.157459830134575
    #   (SR - SR*) √5 = 0.40155716424037247 × 2.23606797749979 = 0.8979091160935205
    #   z = 0.8979091160935205 / 0.8484474323752651 = 1.0582966979813768, DSR = Φ(z) = 0.855039901058904
    result = overfitting.deflated_sharpe_ratio(SIX_RETURNS, trials=10, sharpe_variance=0.01)
    assert result is not None
    assert result.sharpe == pytest.approx(math.sqrt(5) / 4, abs=1e-12)
    assert result.skewness == pytest.approx(9 * math.sqrt(6) / 32, abs=1e-12)
    assert result.kurtosis == pytest.approx(75 / 32, abs=1e-12)
    assert result.benchmark_sharpe == pytest.approx(0.157459830134575, abs=1e-12)
    assert result.deflated_sharpe == pytest.approx(0.855039901058904, abs=1e-9)
    assert (result.observations, result.trials) == (6, 10)


def test_deflated_sharpe_ratio_of_one_trial_is_psr_against_zero():
    # SR* = 0: z = SR √5 / 0.8484474323752651 = (√5/4) √5 / ... = 1.25 / 0.8484474323752651 = 1.4732792537312198
    #   PSR = Φ(1.4732792537312198) = 0.9296621237959284
    result = overfitting.deflated_sharpe_ratio(SIX_RETURNS, trials=1, sharpe_variance=0.01)
    assert result is not None
    assert result.benchmark_sharpe == 0.0
    assert result.deflated_sharpe == pytest.approx(0.9296621237959284, abs=1e-9)
    psr = overfitting.probabilistic_sharpe_ratio(math.sqrt(5) / 4, 0.0, 6, 9 * math.sqrt(6) / 32, 75 / 32)
    assert result.deflated_sharpe == pytest.approx(psr, abs=1e-12)


def test_deflated_sharpe_ratio_falls_as_trials_grow():
    # E[max SR] grows with N (Φ⁻¹(1 - 1/N) does), so the hurdle rises and the probability falls.
    values = []
    for trials in (1, 2, 10, 100, 1000):
        result = overfitting.deflated_sharpe_ratio(SIX_RETURNS, trials=trials, sharpe_variance=0.01)
        assert result is not None
        values.append(result.deflated_sharpe)
    assert all(later < earlier for earlier, later in itertools.pairwise(values))


def test_deflated_sharpe_ratio_undefined_cases():
    assert overfitting.deflated_sharpe_ratio(np.array([0.01, 0.02]), trials=5, sharpe_variance=0.01) is None
    assert overfitting.deflated_sharpe_ratio(np.full(10, 0.01), trials=5, sharpe_variance=0.01) is None  # flat
    assert overfitting.deflated_sharpe_ratio(np.zeros(10), trials=5, sharpe_variance=0.01) is None
    assert overfitting.deflated_sharpe_ratio(np.array([0.01, np.nan, 0.02]), trials=5, sharpe_variance=0.01) is None


def test_input_errors_of_the_deflated_sharpe_ratio():
    with pytest.raises(ValueError):
        overfitting.expected_maximum_sharpe(0, 1.0)
    with pytest.raises(ValueError):
        overfitting.expected_maximum_sharpe(10, -0.1)
    with pytest.raises(ValueError):  # 1 - 3 × 1 + (1 - 1)/4 × 1 = -2 under the square root
        overfitting.probabilistic_sharpe_ratio(1.0, 0.0, 10, 3.0, 1.0)
    with pytest.raises(ValueError):
        overfitting.probabilistic_sharpe_ratio(1.0, 0.0, 1, 0.0, 3.0)


# --- Probability of backtest overfitting --------------------------------------------------------------------------
#
# With T = 4 rows and S = 4 blocks each block is one row and each half two rows a, b, whose Sharpe ratio is
#   mean / std(ddof=1) = ((a + b)/2) / (|a - b| / √2) = k / √2,   k = (a + b) / |a - b|.
# The common factor 1/√2 changes neither ranks, signs nor the regression slope, so the comments work with k.
# The 6 in-sample row sets J in itertools.combinations order: {0,1} {0,2} {0,3} {1,2} {1,3} {2,3}.
# With N = 3 trials ω̄ = rank / 4: rank 1 → λ = ln(1/3) = -ln 3, rank 2 → ln 1 = 0, rank 3 → ln 3.


def test_pbo_of_a_mixed_sweep():
    # Columns (in percent): A = [-3, 1, -2, 3], B = [0, 2, 1, 5], C = [-3, 0, 1, 4].
    #   J      IS k of A, B, C           n*  OOS rows  OOS k of A, B, C      n*'s OOS rank
    #   {0,1}  -2/4, 2/2, -3/3 = -.5 1 -1  B   {2,3}     1/5, 6/4, 5/3         2 (1/5 < 3/2 < 5/3)
    #   {0,2}  -5/1, 1/1, -2/4             B   {1,3}     4/2, 7/3, 4/4         3
    #   {0,3}   0/6, 5/5, 1/7              B   {1,2}     -1/3, 3/1, 1/1        3
    #   {1,2}  -1/3, 3/1, 1/1              B   {0,3}     0/6, 5/5, 1/7         3
    #   {1,3}   4/2, 7/3, 4/4              B   {0,2}     -5/1, 1/1, -2/4       3
    #   {2,3}   1/5, 6/4, 5/3              C   {0,1}     -2/4, 2/2, -3/3       1 (-1 < -1/2 < 1)
    # logits [0, ln3, ln3, ln3, ln3, -ln3]; λ <= 0 twice: PBO = 2/6 = 1/3; median of sorted
    # [-ln3, 0, ln3, ln3, ln3, ln3] = ln3. n*'s OOS k < 0 only for {2,3}: probability of loss 1/6.
    # Regression of OOS k on IS k of n*: x = [1, 1, 1, 3, 7/3, 5/3], y = [3/2, 7/3, 3, 1, 1, -1]
    #   Σx = 10, Σy = 47/6, Σxy = 3/2 + 7/3 + 3 + 3 + 7/3 - 5/3 = 21/2, Σx² = 1 + 1 + 1 + 9 + 49/9 + 25/9 = 182/9
    #   slope = (6 Σxy - Σx Σy) / (6 Σx² - (Σx)²) = (63 - 470/6) / (364/3 - 100) = (-46/3) / (64/3) = -23/32
    matrix = np.array([[-3, 0, -3], [1, 2, 0], [-2, 1, 1], [3, 5, 4]]) / 100
    result = overfitting.pbo_of_returns(matrix, blocks=4)
    assert result is not None
    assert result.pbo == 1 / 3
    assert result.logits == pytest.approx([0.0, LN3, LN3, LN3, LN3, -LN3], abs=1e-12)
    assert result.median_logit == pytest.approx(LN3, abs=1e-12)
    assert result.probability_of_loss == 1 / 6
    assert result.performance_degradation == pytest.approx(-23 / 32, abs=1e-9)
    assert (result.combinations, result.blocks, result.trials) == (6, 4, 3)


def test_pbo_is_one_when_the_in_sample_best_is_always_out_of_sample_worst():
    # X = [1, 2, 4, -7] (percent) sums to 0, so each half's sum is minus the other half's; Y = -X.
    # No two rows of X sum to 0 (pair sums 3, 5, -6, 6, -5, -3), so every half's mean is non-zero.
    # In sample the winner is whichever of X, Y has the positive half sum; out of sample its sum is negative and
    # the other's positive, so with N = 2 it ranks 1: ω̄ = 1/3, λ = ln((1/3)/(2/3)) = -ln 2 every time.
    x = np.array([1, 2, 4, -7]) / 100
    result = overfitting.pbo_of_returns(np.column_stack([x, -x]), blocks=4)
    assert result is not None
    assert result.pbo == 1.0
    assert result.logits == pytest.approx([-math.log(2)] * 6, abs=1e-12)
    assert result.probability_of_loss == 1.0


def test_a_trial_flat_on_a_half_has_sharpe_zero():
    # The previous X and -X plus a constant 1% trial: flat on every half, so Sharpe 0 by convention (its sum of
    # squared deviations, 0.0002 - 0.02²/2, is only rounding). The winner has a positive IS Sharpe (> 0) and a
    # negative OOS one (< 0 < the other's), so it ranks 1 of 3: ω̄ = 1/4, λ = -ln 3, PBO 1. Were the flat trial's
    # ratio huge instead, it would win in sample and rank 3 out of sample every time, PBO 0.
    x = np.array([1, 2, 4, -7]) / 100
    result = overfitting.pbo_of_returns(np.column_stack([x, -x, np.full(4, 0.01)]), blocks=4)
    assert result is not None
    assert result.pbo == 1.0
    assert result.logits == pytest.approx([-LN3] * 6, abs=1e-12)


# A = [10, 11, 12, 13] has k >= (10 + 13)/3 = 23/3 ≈ 7.7 on every half (the other pairs: 21, 11, 23, 12, 25);
# B = [1, -1, 2, -2] has k in {0, 3, -1/3, 1/3, -3, 0} and C = [3, 1, -1, 2] has k in {2, 1/2, 5, 0, 3, 1/3}.
DOMINANT = np.array([[10, 1, 3], [11, -1, 1], [12, 2, -1], [13, -2, 2]]) / 100


def test_pbo_is_zero_when_one_trial_dominates():
    # A wins in sample and ranks 3 of 3 out of sample every time: ω̄ = 3/4, λ = ln 3, PBO 0, never a loss.
    result = overfitting.pbo_of_returns(DOMINANT, blocks=4)
    assert result is not None
    assert result.pbo == 0.0
    assert result.logits == pytest.approx([LN3] * 6, abs=1e-12)
    assert result.median_logit == pytest.approx(LN3, abs=1e-12)
    assert result.probability_of_loss == 0.0


def test_out_of_sample_ties_take_the_average_rank():
    # A twice and B: the first A wins in sample (first of equals); out of sample both A tie at the top, ranks 2
    # and 3, average 2.5, ahead of B's 1. ω̄ = 2.5/4 = 5/8, λ = ln((5/8)/(3/8)) = ln(5/3) > 0: PBO 0.
    matrix = DOMINANT[:, [0, 0, 1]]
    result = overfitting.pbo_of_returns(matrix, blocks=4)
    assert result is not None
    assert result.pbo == 0.0
    assert result.logits == pytest.approx([math.log(5 / 3)] * 6, abs=1e-12)


def test_block_statistics_of_one_row_blocks_are_the_rows():
    stats = overfitting.block_statistics(DOMINANT, 4)
    assert stats.counts.tolist() == [1, 1, 1, 1]
    assert np.array_equal(stats.sums, DOMINANT)
    assert np.array_equal(stats.squares, DOMINANT**2)


def test_uneven_blocks_follow_array_split():
    # 10 rows in 4 blocks: 10 = 3 + 3 + 2 + 2, the first 10 mod 4 = 2 blocks one row longer.
    counts, sums, squares = overfitting.trial_block_statistics(np.arange(10.0), 4)
    assert counts.tolist() == [3, 3, 2, 2] == overfitting.block_counts(10, 4).tolist()
    assert sums.tolist() == [0 + 1 + 2, 3 + 4 + 5, 6 + 7, 8 + 9]
    assert squares.tolist() == [0 + 1 + 4, 9 + 16 + 25, 36 + 49, 64 + 81]


def sharpe_of_columns(rows: np.ndarray) -> np.ndarray:
    deviation = rows.std(axis=0, ddof=1)
    return np.where(deviation == 0, 0.0, rows.mean(axis=0) / np.where(deviation == 0, 1.0, deviation))


def brute_force_pbo(matrix: np.ndarray, blocks: int) -> tuple[list[float], list[float], list[float]]:
    """CSCV straight from the paper: slice M's rows for every combination. Returns logits, IS and OOS of n*."""
    trials = matrix.shape[1]
    parts = np.array_split(np.arange(len(matrix)), blocks)
    logits, in_sample, out_of_sample = [], [], []
    for chosen in itertools.combinations(range(blocks), blocks // 2):
        rows_in = np.concatenate([parts[block] for block in chosen])
        rows_out = np.concatenate([parts[block] for block in range(blocks) if block not in chosen])
        sharpe_in, sharpe_out = sharpe_of_columns(matrix[rows_in]), sharpe_of_columns(matrix[rows_out])
        best = int(np.argmax(sharpe_in))
        rank = 1 + int(np.argsort(np.argsort(sharpe_out))[best])  # no ties in continuous random data
        relative = rank / (trials + 1)
        logits.append(math.log(relative / (1 - relative)))
        in_sample.append(float(sharpe_in[best]))
        out_of_sample.append(float(sharpe_out[best]))
    return logits, in_sample, out_of_sample


@pytest.mark.parametrize("periods", [200, 203])
def test_pbo_matches_brute_force_slicing(periods: int):
    matrix = np.random.default_rng(7).normal(0.0005, 0.01, size=(periods, 20))
    result = overfitting.pbo_of_returns(matrix, blocks=8)
    logits, in_sample, out_of_sample = brute_force_pbo(matrix, 8)
    assert result is not None
    assert result.combinations == math.comb(8, 4) == 70
    assert result.logits == pytest.approx(logits, abs=1e-9)
    assert result.pbo == sum(logit <= 0 for logit in logits) / 70
    assert result.median_logit == pytest.approx(float(np.median(logits)), abs=1e-9)
    assert result.probability_of_loss == sum(value < 0 for value in out_of_sample) / 70
    assert result.performance_degradation == pytest.approx(np.polyfit(in_sample, out_of_sample, 1)[0], abs=1e-9)


def test_stacked_trial_statistics_equal_the_matrix_statistics():
    matrix = np.random.default_rng(11).normal(0.0, 0.01, size=(50, 5))
    per_trial = [overfitting.trial_block_statistics(matrix[:, trial], 6) for trial in range(5)]
    stacked = BlockStats.stack(per_trial[0][0], [sums for _, sums, _ in per_trial], [sq for _, _, sq in per_trial])
    whole = overfitting.block_statistics(matrix, 6)
    assert np.array_equal(stacked.counts, whole.counts)
    assert np.allclose(stacked.sums, whole.sums, rtol=0, atol=1e-15)
    assert np.allclose(stacked.squares, whole.squares, rtol=0, atol=1e-15)
    from_stacked, from_matrix = (
        overfitting.probability_of_backtest_overfitting(stacked),
        overfitting.pbo_of_returns(matrix, 6),
    )
    assert from_stacked is not None and from_matrix is not None
    assert from_stacked.pbo == from_matrix.pbo
    assert from_stacked.logits == pytest.approx(from_matrix.logits, abs=1e-12)
    assert from_stacked.performance_degradation == pytest.approx(from_matrix.performance_degradation, abs=1e-12)


def test_undefined_pbo():
    matrix = np.random.default_rng(3).normal(0.0, 0.01, size=(40, 4))
    assert overfitting.pbo_of_returns(matrix, blocks=5) is None  # odd S
    assert overfitting.pbo_of_returns(matrix, blocks=0) is None
    assert overfitting.pbo_of_returns(matrix[:, :1], blocks=4) is None  # N < 2
    assert overfitting.pbo_of_returns(matrix[:3], blocks=4) is None  # T < S: an empty block
    assert overfitting.pbo_of_returns(matrix[:3], blocks=2) is None  # blocks of 2 and 1 rows: a one-row half
    assert overfitting.pbo_of_returns(matrix[:4], blocks=2) is not None
    counts, sums, squares = overfitting.trial_block_statistics(matrix[:, 0], 4)
    assert overfitting.probability_of_backtest_overfitting(BlockStats.stack(counts, [sums], [squares])) is None
    assert overfitting.probability_of_backtest_overfitting(BlockStats.stack(counts, [], [])) is None
    nan_sums = np.column_stack([sums, sums])
    nan_sums[0, 0] = np.nan
    stats = BlockStats(counts, nan_sums, np.column_stack([squares, squares]))
    assert overfitting.probability_of_backtest_overfitting(stats) is None  # non-finite


def test_input_errors_of_the_pbo():
    with pytest.raises(ValueError, match="48620 combinations"):  # C(18, 9) > 20,000
        overfitting.pbo_of_returns(np.zeros((36, 2)), blocks=18)
    with pytest.raises(ValueError):
        overfitting.block_statistics(np.zeros(10), 2)  # not periods × trials
    with pytest.raises(ValueError):
        BlockStats.stack(np.array([5, 5]), [np.zeros(2)], [np.zeros(3)])


@pytest.mark.parametrize("blocks", [2, 4, 8, 12, 16])
def test_each_combination_is_the_complement_of_its_mirror(blocks):
    # CSCV computes each half's Sharpe ratios once and reads the out-of-sample ones from the mirror row.
    masks = overfitting._combination_masks(blocks)
    assert np.array_equal(masks[::-1], 1.0 - masks)
