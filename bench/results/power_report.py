"""The report's power section: how precisely the collected results pin Recall@1 down, and the MDE a
`compare` against them would have.

Per cell (configuration without its seed) of each dataset, Emb Recall@1 x100: mean, n seeds, the
standard errors over seeds (s/sqrt(n)) and over queries (sd of the per-query hit rate averaged over
the seeds / sqrt(Q), from query_hits.npz), and the 95% interval counting both. Then, for every pair of
cells that differ in one config key (e.g. two losses), the paired-by-seed comparison `compare` makes
(`estimate_cell`), whose MDE (80% power, 5% two-sided) is what a new loss like these would be held to.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from tabulate import tabulate

from dmlbench.results import power
from dmlbench.results.collect import config_columns
from dmlbench.results.compare import Hits, estimate_cell, hit_matrix
from dmlbench.results.tables import short_key


def power_markdown(frame: pd.DataFrame, hits: Mapping[str, Mapping[str, np.ndarray]], layer: str = "emb") -> str:
    """The report section (Markdown); empty when there is no recall@1 of `layer`."""
    rows = frame[(frame["metric"] == "recall") & (frame["k"] == 1) & (frame["layer"] == layer)]
    if rows.empty:
        return ""
    keys = [c for c in config_columns(rows) if rows[c].astype(str).nunique() > 1]
    lines = [
        "## Power (Recall@1, layer emb, values x100)",
        "",
        "Table intervals count seeds only. Here: se over seeds (s/√n), se over queries (of the mean of "
        "per-query hit rates averaged over seeds, clustered by the queries' class; needs query_hits.npz), "
        "the 95% interval counting both (their seed x query interaction once), and per pair "
        "of cells the paired-by-seed comparison `dmlbench compare` makes, with its MDE (80% power, 5% "
        "two-sided): a new loss run with these seeds is compared at about that resolution.",
        "",
    ]
    for dataset, part in rows.groupby("dataset", sort=True):
        groups = {k if isinstance(k, tuple) else (k,): g for k, g in part.groupby(keys, sort=True)} if keys else {(): part}
        body = []
        for key, runs in groups.items():
            values = runs["value"].to_numpy()  # fractions; shown x100
            n = len(values)
            est = power.Estimate(float(values.mean()), math.nan, math.nan, "seeds")
            if n >= 2:
                est = power.Estimate(est.diff, float(values.std(ddof=1) / math.sqrt(n)), float(n - 1), "seeds")
            se_seed, se_query = est.se, math.nan
            matrix = hit_matrix(runs, hits, layer)
            if matrix is not None:  # the cell against a constant: its own query part
                part = power.query_variance(matrix.hits, np.zeros_like(matrix.hits), clusters=matrix.classes)
                se_query = math.sqrt(part.variance)
                est = est.with_queries(part)
            low, high = est.interval()
            body.append(
                [*key, f"{values.mean() * 100:.2f}", n, _fmt(se_seed * 100), _fmt(se_query * 100),
                 f"[{low * 100:.2f}, {high * 100:.2f}]"]
            )  # fmt: skip
        headers = [short_key(k) for k in keys] + ["R@1", "n", "se seeds", "se queries", "95% CI (seeds+queries)"]
        lines += [f"**{dataset}**", "", tabulate(body, headers, tablefmt="pipe", disable_numparse=True), ""]
        pairs = []
        for (ka, a), (kb, b) in itertools.combinations(groups.items(), 2):
            if sum(x != y for x, y in zip(ka, kb, strict=True)) != 1:
                continue
            est = estimate_cell(a, b, layer=layer, with_queries=True, hits_new=hits, hits_base=hits)
            low, high = est.interval()
            pairs.append(
                [" vs ".join(("/".join(map(str, ka)), "/".join(map(str, kb)))), est.method,
                 f"{est.diff * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}]", f"{est.mde * 100:.2f}"]
            )  # fmt: skip
        if pairs:
            mdes = [float(p[-1]) for p in pairs]
            lines += [
                tabulate(pairs, ["pair", "test", "diff [95% CI]", "MDE"], tablefmt="pipe", disable_numparse=True),
                "",
                f"MDE of a paired comparison with these seeds: median {np.median(mdes):.2f}, max {max(mdes):.2f} points.",
                "",
            ]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.2f}"


__all__ = ["Hits", "power_markdown"]
