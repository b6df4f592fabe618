"""The statistics of `compare`: paired t / Welch intervals over seeds, the query sample's noise, and the MDE.

d = mean_new - mean_base of a cell's metric (fractions; tables show x100).

Seeds (what a rerun with other seeds would change):
- paired, when both sides hold runs of the same seeds: per-seed differences d_s = new_s - base_s over the
  n shared seeds; v_seed = s_d^2 / n, df_seed = n - 1 (paired t). Same seed = same initialisation and the
  same batches, so the variance the two sides share cancels;
- Welch otherwise: v_seed = s_new^2 / n_new + s_base^2 / n_base, Welch-Satterthwaite df_seed; with n = 1
  on one side the other side's variance stands for both (v = s^2 (1/n_new + 1/n_base), df = n_other - 1).

Queries (what another draw of the query set would change), when every run of both sides saved its
per-query Recall@1 hits (query_hits.npz) for the same queries: per query q, d_q = mean over the new runs of
hit_q - mean over the baseline runs of hit_q; v_query is the variance of their mean over another draw of
the queries. The queries of one item (class) are not independent draws -- an item that one loss handles
badly takes all its queries with it -- so the draw is of classes: with G classes holding the queries,
v_query = G/(G-1) sum_g (sum_{q in g} (d_q - mean d))^2 / Q^2, df_query = G - 1 (the cluster-robust
variance of a mean). Without classes (hits saved before they were): var(d_q) / Q, df = Q - 1. Recall@1 only.

Both parts together: the hits form a crossed seeds x queries design, hit = mu + a_seed + b_query + e, with
e the seed x query interaction (a query that one seed gets right and another wrong). The variance of d is
s_a^2/S + s_b^2/Q + s_e^2/(SQ); v_seed estimates s_a^2/S + s_e^2/(SQ) and v_query s_b^2/Q + s_e^2/(SQ),
so their sum counts the interaction twice. It is subtracted once, estimated by the residual mean square
of the two-way table (of the per-seed differences when paired; of each side over its own runs when not):
se^2 = v_seed + v_query - v_overlap, never below the larger part (each part alone is a lower bound of the
true variance); df by Welch-Satterthwaite over the two parts. This is the unbiased variance of a crossed
random-effects mean (checked by simulation in tests/results/test_power.py).

Interval: d ± t_{0.975,df} se.

MDE (minimum detectable effect): the smallest true |difference| this comparison finds significant with
80% power at 5% two-sided, (t_{0.975,df} + t_{0.80,df}) se.

>>> round(mde(se=1.0, df=1e9), 3)   # z_0.975 + z_0.8 = 1.960 + 0.842
2.802
>>> r = paired([0.5, 0.6, 0.7], [0.4, 0.4, 0.6])   # d_s = 0.1, 0.2, 0.1: mean 0.1333, s_d 0.0577
>>> round(r.diff, 4), round(r.se, 4), r.df
(0.1333, 0.0333, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# The sd of a difference of means that comes from the two sides running in different environments
# (another machine, thread count or library build: the fast tier's frozen features differ in their last
# bits, which every run of that environment shares). A fraction (x100: points). Provisional: sqrt(0.115^2 -
# 0.095^2) points, from issue 24's seven same-machine feature sets perturbed by 1e-6; the cross-environment
# reruns that should set it (thread count, 1e-6, 1e-3) are not measured yet (docs/regression.md).
# `compare` adds it whenever the two sides' fingerprints differ or one side records none.
BETWEEN_ENV_SD = 0.00065


@dataclass(frozen=True)
class Estimate:
    """A difference of means with its standard error and degrees of freedom (df = nan: no interval)."""

    diff: float
    se: float
    df: float
    method: str  # paired | welch | pooled-one | none

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        if not math.isfinite(self.df) or not math.isfinite(self.se):
            return math.nan, math.nan
        if self.se == 0:
            return self.diff, self.diff
        half = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.diff - half, self.diff + half

    @property
    def mde(self) -> float:
        return mde(self.se, self.df)

    def with_queries(self, part: QueryPart) -> Estimate:
        """This estimate with the query sample's variance added, the interaction counted once (module docstring)."""
        if not math.isfinite(self.df) or not math.isfinite(part.variance):
            return self
        v_seed, v_query = self.se**2, part.variance
        total = max(v_seed + v_query - part.overlap, v_seed, v_query)
        if total == 0:
            return Estimate(self.diff, 0.0, self.df, self.method + "+queries")
        denom = (v_seed**2 / self.df if v_seed else 0.0) + (v_query**2 / part.df if v_query else 0.0)
        return Estimate(self.diff, math.sqrt(total), total**2 / denom, self.method + "+queries")

    def with_environment(self, variance: float) -> Estimate:
        """This estimate plus a between-environment variance taken as known (its df does not change the
        Welch-Satterthwaite df of the parts that are estimated)."""
        if not math.isfinite(self.df) or not math.isfinite(self.se) or variance <= 0:
            return Estimate(self.diff, self.se, self.df, self.method + "+env")
        total = self.se**2 + variance
        df = total**2 / (self.se**4 / self.df) if self.se > 0 else 1e6
        return Estimate(self.diff, math.sqrt(total), df, self.method + "+env")


@dataclass(frozen=True)
class QueryPart:
    """The query sample's share of a difference's variance: var(d_q)/Q with its df, and the seed x query
    interaction that this part and the seed part both hold (subtracted once by `Estimate.with_queries`)."""

    variance: float
    df: float
    overlap: float


def mde(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a two-sided t test: (t_{1-alpha/2,df} + t_{power,df}) se."""
    if not (math.isfinite(se) and math.isfinite(df)) or df <= 0:
        return math.nan
    return float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se


def paired(new: Sequence[float], base: Sequence[float]) -> Estimate:
    """Paired t over per-seed differences (`new[i]` and `base[i]` share a seed)."""
    d = np.asarray(new, dtype=float) - np.asarray(base, dtype=float)
    if len(d) < 2:
        return Estimate(float(d.mean()) if len(d) else math.nan, math.nan, math.nan, "none")
    return Estimate(float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), float(len(d) - 1), "paired")


def welch(new: Sequence[float], base: Sequence[float]) -> Estimate:
    """Welch's unequal-variance t (see the module docstring for n = 1 on one side).

    >>> r = welch([0.6, 0.61, 0.59], [0.5, 0.51, 0.49])
    >>> round(r.diff, 4), round(r.se, 5), round(r.df, 3)
    (0.1, 0.00816, 4.0)
    """
    a, b = np.asarray(new, dtype=float), np.asarray(base, dtype=float)
    diff = float(a.mean() - b.mean())
    n1, n2 = len(a), len(b)
    if n1 >= 2 and n2 >= 2:
        v1, v2 = a.var(ddof=1) / n1, b.var(ddof=1) / n2
        se = math.sqrt(v1 + v2)
        df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1)) if se else float(min(n1, n2) - 1)
        return Estimate(diff, se, float(df), "welch")
    if n1 >= 2 or n2 >= 2:
        s, df = (a.std(ddof=1), n1 - 1) if n1 >= 2 else (b.std(ddof=1), n2 - 1)
        return Estimate(diff, float(s * math.sqrt(1 / n1 + 1 / n2)), float(df), "pooled-one")
    return Estimate(diff, math.nan, math.nan, "none")


def interaction_ms(hits: np.ndarray) -> float:
    """Residual mean square of a (runs x queries) table without replication: the seed x query interaction.

    >>> round(interaction_ms(np.array([[1, 0, 1], [0, 1, 1]])), 4)   # residuals +-0.5 in two columns, 0 in one
    0.5
    """
    s, q = hits.shape
    if s < 2 or q < 2:
        return 0.0
    resid = hits - hits.mean(axis=1, keepdims=True) - hits.mean(axis=0, keepdims=True) + hits.mean()
    return float((resid**2).sum() / ((s - 1) * (q - 1)))


def query_variance(
    hits_new: np.ndarray, hits_base: np.ndarray, paired: bool = False, clusters: np.ndarray | None = None
) -> QueryPart:
    """The query part from (runs x queries) hit matrices of the two sides over the same queries.

    `paired`: row i of both matrices comes from the same seed (the interaction is that of the differences).
    `clusters`: each query's class; the query draw is then a draw of classes (module docstring).

    >>> part = query_variance(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 1]]))   # d_q = 0, 1, 0, -1
    >>> part.variance, part.df, part.overlap   # one run a side: no interaction to estimate
    (0.16666666666666666, 3.0, 0.0)
    >>> part = query_variance(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 1]]), clusters=np.array([7, 7, 9, 9]))
    >>> part.variance, part.df   # class sums of d_q - 0: 1 and -1 -> 2/1 * (1 + 1) / 16
    (0.25, 1.0)
    """
    d_q = hits_new.mean(axis=0) - hits_base.mean(axis=0)
    q = len(d_q)
    if q < 2:
        return QueryPart(math.nan, math.nan, 0.0)
    if paired and hits_new.shape == hits_base.shape:
        overlap = interaction_ms(hits_new - hits_base) / hits_new.size
    else:
        overlap = interaction_ms(hits_new) / hits_new.size + interaction_ms(hits_base) / hits_base.size
    if clusters is None:
        return QueryPart(float(d_q.var(ddof=1) / q), float(q - 1), overlap)
    _, group = np.unique(np.asarray(clusters), return_inverse=True)
    g = int(group.max()) + 1
    if g < 2:
        return QueryPart(math.nan, math.nan, 0.0)
    sums = np.bincount(group.reshape(-1), weights=d_q - d_q.mean(), minlength=g)
    return QueryPart(float(g / (g - 1) * (sums**2).sum() / q**2), float(g - 1), overlap)


def p_value(est: Estimate) -> float:
    """Two-sided p of d = 0 under the estimate's t distribution (NaN when there is no interval)."""
    if not (math.isfinite(est.se) and math.isfinite(est.df)):
        return math.nan
    if est.se == 0:
        return 0.0 if est.diff != 0 else 1.0
    return float(2 * stats.t.sf(abs(est.diff) / est.se, est.df))
