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
hit_q - mean over the baseline runs of hit_q; v_query = var(d_q) / Q, df_query = Q - 1. Recall@1 only.

Interval: se^2 = v_seed + v_query, df by Welch-Satterthwaite over the two parts, d ± t_{0.975,df} se.
The sum counts the seed x query interaction twice (once in each part), so the interval is slightly wide
rather than narrow.

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

    def with_queries(self, v_query: float, df_query: float) -> Estimate:
        """This estimate with the query sample's variance added (Welch-Satterthwaite df)."""
        if not math.isfinite(self.df) or not math.isfinite(v_query):
            return self
        v_seed = self.se**2
        total = v_seed + v_query
        if total == 0:
            return Estimate(self.diff, 0.0, self.df, self.method + "+queries")
        denom = (v_seed**2 / self.df if v_seed else 0.0) + (v_query**2 / df_query if v_query else 0.0)
        return Estimate(self.diff, math.sqrt(total), total**2 / denom, self.method + "+queries")


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


def query_variance(hits_new: np.ndarray, hits_base: np.ndarray) -> tuple[float, float]:
    """(v_query, df_query) from (runs x queries) hit matrices of the two sides over the same queries.

    >>> query_variance(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 0, 1]]))   # d_q = 0, 1, 0, -1
    (0.16666666666666666, 3.0)
    """
    d_q = hits_new.mean(axis=0) - hits_base.mean(axis=0)
    q = len(d_q)
    if q < 2:
        return math.nan, math.nan
    return float(d_q.var(ddof=1) / q), float(q - 1)


def p_value(est: Estimate) -> float:
    """Two-sided p of d = 0 under the estimate's t distribution (NaN when there is no interval)."""
    if not (math.isfinite(est.se) and math.isfinite(est.df)):
        return math.nan
    if est.se == 0:
        return 0.0 if est.diff != 0 else 1.0
    return float(2 * stats.t.sf(abs(est.diff) / est.se, est.df))
