"""The seeds x queries variance of `dmlbench.results.power`: a hand-computed interaction, and by simulation
that the combined estimator is unbiased for a crossed random-effects mean (the old sum of the two parts
was not) and that its 95% intervals cover the true difference about 95% of the time with binary hits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dmlbench.results import power


def test_interaction_known_answer_and_overlap_subtracted_once() -> None:
    # Two seeds x four queries, paired. D = new - base:
    #   [[1, 0, 0, -1],
    #    [0, 1, 0, -1]]
    # row means 0, 0; column means 0.5, 0.5, 0, -1; grand 0
    # residuals: [[+0.5, -0.5, 0, 0], [-0.5, +0.5, 0, 0]]: sum of squares 1, df (2-1)(4-1) = 3 -> MS 1/3
    new = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=float)
    base = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], dtype=float)
    assert power.interaction_ms(new - base) == pytest.approx(1 / 3)
    part = power.query_variance(new, base, paired=True)
    # d_q = 0.5, 0.5, 0, -1: mean 0, var (0.25 + 0.25 + 0 + 1) / 3 = 0.5 -> v_query 0.5 / 4
    assert part.variance == pytest.approx(0.125) and part.df == 3
    assert part.overlap == pytest.approx((1 / 3) / 8)
    seeds = power.paired(new.mean(axis=1), base.mean(axis=1))  # d_s = 0, 0: v_seed 0
    est = seeds.with_queries(part)
    assert est.se == pytest.approx(math.sqrt(0.125))  # 0 + 0.125 - 0.0417 is below the query part: floored there
    # Unpaired, each side's own interaction is subtracted: new's MS is 1/3 (same pattern), base's 0.
    unpaired = power.query_variance(new, base, paired=False)
    assert unpaired.overlap == pytest.approx((1 / 3) / 8 + 0.0)


def _crossed(rng: np.random.Generator, s: int, q: int, sd_seed: float, sd_query: np.ndarray, sd_e: float) -> np.ndarray:
    return rng.normal(0, sd_seed, (s, 1)) + sd_query + rng.normal(0, sd_e, (s, q))


@pytest.mark.parametrize("paired", [True, False])
def test_combined_variance_is_unbiased_for_a_crossed_design(paired: bool) -> None:
    """hit = a_seed + b_query + e: Var(d) = sa^2/S + sb^2/Q + se^2/(SQ). The estimate averages to it."""
    rng = np.random.default_rng(0)
    s, q, sa, sb, se_ = 10, 200, 0.15, 0.3, 1.0
    # Two sides of the same law; paired, they also share a seed effect and half the query effect, which the
    # difference loses (what remains of the seed effect is each side's own, sd sa).
    true_var = 2 * (sa**2 / s + sb**2 / q + se_**2 / (s * q))
    if paired:
        true_var = 2 * (sa**2 / s + (sb**2 / 2) / q + se_**2 / (s * q))
    new_estimates, old_estimates, diffs = [], [], []
    for _ in range(600):
        if paired:
            shared = rng.normal(0, 1.0, (s, 1)) + rng.normal(0, sb / math.sqrt(2), (1, q))
            new = shared + _crossed(rng, s, q, sa, rng.normal(0, sb / math.sqrt(2), (1, q)), se_)
            base = shared + _crossed(rng, s, q, sa, rng.normal(0, sb / math.sqrt(2), (1, q)), se_)
            seeds = power.paired(new.mean(axis=1), base.mean(axis=1))
        else:
            new = _crossed(rng, s, q, sa, rng.normal(0, sb, (1, q)), se_)
            base = _crossed(rng, s, q, sa, rng.normal(0, sb, (1, q)), se_)
            seeds = power.welch(new.mean(axis=1), base.mean(axis=1))
        part = power.query_variance(new, base, paired=paired)
        new_estimates.append(seeds.with_queries(part).se ** 2)
        old_estimates.append(seeds.se**2 + part.variance)
        diffs.append(new.mean() - base.mean())
    assert np.mean(new_estimates) == pytest.approx(true_var, rel=0.05)
    assert np.var(diffs) == pytest.approx(true_var, rel=0.15)  # the simulation itself follows the law above
    assert np.mean(old_estimates) > 1.15 * true_var  # what counting the interaction twice used to give


def test_no_seed_effect_errs_on_the_wide_side() -> None:
    """Paired with no seed effect left (the fast tier's case): the estimate is floored at the query part,
    which is then about the whole variance, so it errs wide by a little, never narrow."""
    rng = np.random.default_rng(3)
    s, q, sb, se_ = 10, 200, 0.3, 1.0
    true_var = 2 * (sb**2 / q + se_**2 / (s * q))
    estimates = []
    for _ in range(600):
        new = _crossed(rng, s, q, 0.0, rng.normal(0, sb, (1, q)), se_)
        base = _crossed(rng, s, q, 0.0, rng.normal(0, sb, (1, q)), se_)
        part = power.query_variance(new, base, paired=True)
        estimates.append(power.paired(new.mean(axis=1), base.mean(axis=1)).with_queries(part).se ** 2)
    assert true_var <= np.mean(estimates) <= 1.2 * true_var


def test_intervals_cover_with_binary_hits() -> None:
    """Recall@1 hits are 0/1: a query's chance differs by query and a little by seed. The 95% interval of
    a paired comparison of two losses covers their true difference in about 95% of 400 simulated studies."""
    rng = np.random.default_rng(1)
    s, q = 20, 400
    logit_base = rng.normal(-0.5, 1.5, q)  # the query population is fixed; each study draws q of them anew
    covered = 0
    reps = 400
    for _ in range(reps):
        pick = rng.integers(0, q, q)
        lb = logit_base[pick]
        ln = lb + 0.2 + rng.normal(0, 0.6, q)  # the new loss: a little better on average, query by query not
        seed_shift = rng.normal(0, 0.1, (s, 1))
        p_new = 1 / (1 + np.exp(-(ln + seed_shift)))
        p_base = 1 / (1 + np.exp(-(lb + seed_shift)))
        new = (rng.uniform(size=(s, q)) < p_new).astype(float)
        base = (rng.uniform(size=(s, q)) < p_base).astype(float)
        est = power.paired(new.mean(axis=1), base.mean(axis=1)).with_queries(power.query_variance(new, base, paired=True))
        low, high = est.interval()
        covered += low <= TRUE_DIFF <= high
    assert 0.92 <= covered / reps <= 0.98


def _true_diff() -> float:
    """The population difference of the binary study above, by a large Monte Carlo over its own law."""
    rng = np.random.default_rng(1)
    lb = rng.normal(-0.5, 1.5, 400)
    big = np.random.default_rng(2)
    pick = big.integers(0, 400, 400_000)
    base = lb[pick]
    new = base + 0.2 + big.normal(0, 0.6, len(pick))
    shift = big.normal(0, 0.1, len(pick))
    return float(np.mean(1 / (1 + np.exp(-(new + shift))) - 1 / (1 + np.exp(-(base + shift)))))


TRUE_DIFF = _true_diff()


def test_query_noise_clustered_by_class_is_unbiased() -> None:
    """Queries of one class share its effect: the iid var(d_q)/Q misses that, the class-clustered one does not."""
    rng = np.random.default_rng(4)
    classes, per_class = 150, 4
    q = classes * per_class
    cluster = np.repeat(np.arange(classes), per_class)
    clustered, iid, diffs = [], [], []
    for _ in range(800):
        d_q = rng.normal(0, 0.3, classes)[cluster] + rng.normal(0, 0.3, q)  # class effect + query effect
        new = d_q[None, :] + 0.5
        base = np.full_like(new, 0.5)
        clustered.append(power.query_variance(new, base, clusters=cluster).variance)
        iid.append(power.query_variance(new, base).variance)
        diffs.append(d_q.mean())
    true_var = 0.3**2 / classes + 0.3**2 / q
    assert np.var(diffs) == pytest.approx(true_var, rel=0.15)
    assert np.mean(clustered) == pytest.approx(true_var, rel=0.05)
    assert np.mean(iid) < 0.55 * true_var  # iid queries would claim ~2.5x the power there is
