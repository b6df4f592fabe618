"""`dmlbench compare NEW BASELINE`: per matching cell, the difference of means, its 95% interval and its MDE.

NEW and BASELINE are results folders: a tree of run folders (collected on the fly) or a collected
folder holding results.csv (such as the committed results/baseline), or a results.csv/.parquet itself.
A *cell* is a configuration without its seed: runs of a cell that differ only by seed are its samples.

Matching. Cells are matched on every config key the two sides share (dataset always), except:
- the keys given with `--by` (what you changed, e.g. `loss.name` when comparing a new loss to BDL), and
- keys whose values do not overlap at all between the sides (found automatically and reported), so a new
  loss with its own parameters still meets the baseline cells of the same dataset, sampler, backbone ...
Each output row names the baseline cell it was matched with; cells of either side that matched nothing
are listed below the table, never dropped silently.

Estimator (d = mean_new - mean_base):
- paired t over per-seed differences when both cells hold runs of the same seeds (n >= 2): the seed's
  shared initialisation and batches cancel; Welch's t otherwise (different seeds);
- plus the query sample's noise for recall@1 when every run saved its per-query hits (query_hits.npz):
  the variance of the mean per-query difference, clustered by the queries' class (queries of one item
  are not independent draws), minus the seed x query interaction that both parts hold (counted once;
  `dmlbench.results.power`); Welch-Satterthwaite df;
- n = 1 on both sides: no interval, verdict `n/a` (never counted as a regression).
MDE: the smallest true difference found significant with 80% power at the same level (5% two-sided,
or 5%/m), (t_{1-alpha/2,df} + t_{0.8,df}) se. A `same` verdict could have missed anything below it.
Several baselines: when one new cell meets m > 1 baseline cells (e.g. four baseline losses), the m
comparisons form a family: intervals, verdicts and MDEs use alpha = 5%/m (Bonferroni). `--reference NAME`
instead compares with the one baseline cell whose --by value is NAME.
Verdict: `worse` when the whole interval lies below -min_diff, `better` when above +min_diff, else `same`.
The exit code is 1 only when a cell is significantly `worse`, 2 when nothing matched, else 0.

>>> lo, hi = welch_interval(0.6, 0.01, 3, 0.5, 0.01, 3)
>>> round(lo, 4), round(hi, 4), verdict(lo, hi)
(0.0773, 0.1227, 'better')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from dmlbench.errors import UsageError
from dmlbench.results import power
from dmlbench.results.collect import config_columns, metric_key, split_metric
from dmlbench.results.tables import short_key

# Never matched away automatically: comparing across datasets is never meaningful.
STRICT_KEYS = frozenset({"dataset", "data.dataset"})
EXIT_WORSE = 1
EXIT_NO_MATCH = 2


def welch_interval(
    mean_new: float,
    std_new: float,
    n_new: int,
    mean_base: float,
    std_base: float,
    n_base: int,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Confidence interval of mean_new - mean_base (see the module docstring); (nan, nan) when unknowable."""
    diff = mean_new - mean_base
    q = 0.5 + confidence / 2
    if n_new >= 2 and n_base >= 2:
        v1, v2 = std_new**2 / n_new, std_base**2 / n_base
        se = math.sqrt(v1 + v2)
        if se == 0:
            return diff, diff
        df = (v1 + v2) ** 2 / (v1**2 / (n_new - 1) + v2**2 / (n_base - 1))
    elif n_new >= 2 or n_base >= 2:
        std, df = (std_new, n_new - 1) if n_new >= 2 else (std_base, n_base - 1)
        se = std * math.sqrt(1 / n_new + 1 / n_base)
        if se == 0:
            return diff, diff
    else:
        return math.nan, math.nan
    half = float(stats.t.ppf(q, df)) * se
    return diff - half, diff + half


def verdict(low: float, high: float, min_diff: float = 0.0) -> str:
    """better / same / worse from a difference interval; n/a when there is none.

    >>> verdict(0.01, 0.03), verdict(-0.01, 0.02), verdict(-0.05, -0.01), verdict(float("nan"), float("nan"))
    ('better', 'same', 'worse', 'n/a')
    """
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    if high < -min_diff:
        return "worse"
    if low > min_diff:
        return "better"
    return "same"


def canonical_key(value: Any) -> str:
    """A matching key that survives a CSV round trip: 2, 2.0 and "2.0" all become "2".

    >>> canonical_key(2), canonical_key(2.0), canonical_key("2.0"), canonical_key(None), canonical_key(True)
    ('2', '2', '2', '', 'true')
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    text = str(value)
    if text in ("True", "False"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return str(int(number)) if number.is_integer() else repr(number)


@dataclass
class Comparison:
    cells: pd.DataFrame  # one row per matched (new cell, baseline cell)
    match_keys: list[str]
    by_keys: list[str]
    auto_by: list[str] = field(default_factory=list)
    metric: str = "recall@1"
    layer: str = "emb"
    unmatched_new: list[str] = field(default_factory=list)  # new cells that met no baseline cell
    unmatched_base: list[str] = field(default_factory=list)
    reference: str | None = None
    min_diff: float = 0.0

    @property
    def any_worse(self) -> bool:
        return bool((self.cells["verdict"] == "worse").any()) if not self.cells.empty else False

    def exit_code(self) -> int:
        if self.cells.empty:
            return EXIT_NO_MATCH
        return EXIT_WORSE if self.any_worse else 0


def _select(frame: pd.DataFrame, metric: str, k: int | None, layer: str) -> pd.DataFrame:
    sel = (frame["metric"] == metric) & (frame["layer"] == layer)
    sel &= frame["k"].isna() if k is None else frame["k"] == k
    return frame[sel.fillna(False)]


Hits = Mapping[str, Mapping[str, np.ndarray]]  # run_id -> {"positions", "classes", <layer>: hits}


@dataclass(frozen=True)
class HitMatrix:
    """A cell's per-query hits: the queries (dataset positions), their classes when saved, runs x queries."""

    positions: np.ndarray
    classes: np.ndarray | None
    hits: np.ndarray


def hit_matrix(runs: pd.DataFrame, hits: Hits | None, layer: str) -> HitMatrix | None:
    """The hits of a cell's runs in row order, or None unless every run has them for the same queries."""
    if hits is None:
        return None
    rows: list[np.ndarray] = []
    first: Mapping[str, np.ndarray] | None = None
    for run in runs["run_id"]:
        entry = hits.get(str(run))
        if entry is None or layer not in entry:
            return None
        if first is None:
            first = entry
        elif not np.array_equal(first["positions"], entry["positions"]):
            return None
        rows.append(entry[layer].astype(float))
    if first is None:
        return None
    return HitMatrix(first["positions"], first.get("classes"), np.vstack(rows))


def estimate_cell(
    new_runs: pd.DataFrame,
    base_runs: pd.DataFrame,
    *,
    layer: str = "emb",
    with_queries: bool = False,
    hits_new: Hits | None = None,
    hits_base: Hits | None = None,
) -> power.Estimate:
    """Paired t when both cells hold the same seeds (n >= 2), else Welch; plus query noise (module docstring)."""
    new_seeds, base_seeds = new_runs["seed"].tolist(), base_runs["seed"].tolist()
    same_seeds = (
        len(new_seeds) >= 2
        and sorted(new_seeds) == sorted(base_seeds)
        and len(set(new_seeds)) == len(new_seeds)
        and not any(pd.isna(s) for s in new_seeds)
    )
    if same_seeds:  # row i of both sides (values and hit matrices) is then seed i
        new_runs, base_runs = new_runs.sort_values("seed"), base_runs.sort_values("seed")
        est = power.paired(new_runs["value"].to_numpy(), base_runs["value"].to_numpy())
    else:
        est = power.welch(new_runs["value"].to_numpy(), base_runs["value"].to_numpy())
    if with_queries:
        new_m, base_m = hit_matrix(new_runs, hits_new, layer), hit_matrix(base_runs, hits_base, layer)
        if new_m is not None and base_m is not None and np.array_equal(new_m.positions, base_m.positions):
            clusters = new_m.classes if new_m.classes is not None else base_m.classes
            est = est.with_queries(power.query_variance(new_m.hits, base_m.hits, paired=same_seeds, clusters=clusters))
    return est


def compare_frames(
    new: pd.DataFrame,
    base: pd.DataFrame,
    *,
    metric: str = "recall@1",
    layer: str = "emb",
    by: Sequence[str] = (),
    min_diff: float = 0.0,
    hits_new: Hits | None = None,
    hits_base: Hits | None = None,
    reference: str | None = None,
) -> Comparison:
    """Match cells of `new` and `base` and give each pair an interval, an MDE and a verdict.

    `min_diff` is a fraction (the CLI's --min-diff is in table units, x100). `reference`: keep only the
    baseline cells whose compared (--by) value equals it.
    """
    name, k = split_metric(metric)
    new, base = _select(new, name, k, layer), _select(base, name, k, layer)
    by = [("loss.name" if b == "loss" else "sampler.name" if b == "sampler" else b) for b in by]
    new_keys = ["dataset", *config_columns(new)]
    base_keys = ["dataset", *config_columns(base)]
    # Canonical string copies of every key column: the matching is immune to int/float/str differences.
    new = new.assign(**{f"key:{c}": new[c].map(canonical_key) for c in new_keys})
    base = base.assign(**{f"key:{c}": base[c].map(canonical_key) for c in base_keys})
    shared = [c for c in new_keys if c in base_keys and c not in by]
    auto_by = [
        c
        for c in shared
        if c not in STRICT_KEYS
        and not set(new[f"key:{c}"]) & set(base[f"key:{c}"])
        and len(new)
        and len(base)
    ]
    match = [c for c in shared if c not in auto_by]
    # Each side's cells: the compared keys plus its own varying keys (e.g. the new loss's parameters).
    compared = {*by, *auto_by}
    new_extra = [c for c in new_keys if c not in match and (c in compared or new[f"key:{c}"].nunique() > 1)]
    base_extra = [
        c for c in base_keys if c not in match and (c in compared or base[f"key:{c}"].nunique() > 1)
    ]
    if reference is not None:
        ref_cols = [f"key:{c}" for c in base_extra if c in compared]
        if not ref_cols:
            raise UsageError("--reference needs a compared key (--by KEY, or a key found automatically)")
        keep = np.zeros(len(base), dtype=bool)
        for column in ref_cols:
            keep |= (base[column] == canonical_key(reference)).to_numpy()
        if not keep.any():
            known = sorted({v for c in ref_cols for v in base[c]})
            raise UsageError(f"--reference {reference}: no baseline cell has it; the baseline has {', '.join(known)}")
        base = base[keep]
    new_cell_keys = [f"key:{c}" for c in (*match, *new_extra)]
    base_cell_keys = [f"key:{c}" for c in (*match, *base_extra)]
    new_groups = {g if isinstance(g, tuple) else (g,): f for g, f in new.groupby(new_cell_keys, sort=True)}
    base_groups = {g if isinstance(g, tuple) else (g,): f for g, f in base.groupby(base_cell_keys, sort=True)}
    pairs = [
        (nk, bk)
        for nk in new_groups
        for bk in base_groups
        if nk[: len(match)] == bk[: len(match)]
    ]
    with_queries = name == "recall" and k == 1
    family = {nk: sum(1 for n2, _ in pairs if n2 == nk) for nk, _ in pairs}
    rows = []
    for nk, bk in pairs:
        new_runs, base_runs = new_groups[nk], base_groups[bk]
        est = estimate_cell(
            new_runs, base_runs, layer=layer, with_queries=with_queries, hits_new=hits_new, hits_base=hits_base
        )
        m = family[nk]
        alpha = 0.05 / m
        low, high = est.interval(1 - alpha)
        row: dict[str, Any] = dict(zip(match, nk[: len(match)], strict=True))
        row |= {f"new:{c}": v for c, v in zip(new_extra, nk[len(match) :], strict=True)}
        row |= {f"base:{c}": v for c, v in zip(base_extra, bk[len(match) :], strict=True)}
        row |= {
            "mean_new": float(new_runs["value"].mean()),
            "n_new": len(new_runs),
            "mean_base": float(base_runs["value"].mean()),
            "n_base": len(base_runs),
            "diff": est.diff,
            "ci_low": low,
            "ci_high": high,
            "se": est.se,
            "df": est.df,
            "mde": power.mde(est.se, est.df, alpha=alpha),
            "method": est.method,
            "family": m,
            "p_value": power.p_value(est),
            "verdict": verdict(low, high, min_diff),
            "base_runs": " ".join(map(str, base_runs["run_id"])),
        }
        rows.append(row)
    matched_new = {nk for nk, _ in pairs}
    matched_base = {bk for _, bk in pairs}

    def describe(key: tuple[Any, ...], columns: list[str]) -> str:
        return ", ".join(f"{short_key(c)}={v or '–'}" for c, v in zip(columns, key, strict=True))

    columns = [
        *match,
        *[f"new:{c}" for c in new_extra],
        *[f"base:{c}" for c in base_extra],
        "mean_new", "n_new", "mean_base", "n_base", "diff", "ci_low", "ci_high", "se", "df", "mde",
        "method", "family", "p_value", "verdict", "base_runs",
    ]  # fmt: skip
    cells = pd.DataFrame(rows, columns=columns)
    return Comparison(
        cells,
        match,
        list(by),
        auto_by,
        metric_key(name, k),
        layer,
        unmatched_new=[describe(nk, [*match, *new_extra]) for nk in new_groups if nk not in matched_new],
        unmatched_base=[describe(bk, [*match, *base_extra]) for bk in base_groups if bk not in matched_base],
        reference=reference,
        min_diff=min_diff,
    )


def format_comparison(result: Comparison, scale: float = 100.0) -> str:
    cells = result.cells
    if cells.empty:
        lines = [
            f"no matching cells for {result.metric} (layer {result.layer}); matched on: "
            f"{', '.join(result.match_keys) or '(nothing)'}. Check that both sides hold runs of that "
            "metric and layer, and name what differs with --by KEY (e.g. --by loss.name)."
        ]
        return "\n".join(lines + _unmatched_lines(result))
    # Show only the keys that tell cells apart (constant ones are stated once, above the table).
    shown = [c for c in result.match_keys if cells[c].nunique() > 1 or c == "dataset"]
    sides = [c for c in cells.columns if c.startswith(("new:", "base:"))]
    headers = [short_key(c) for c in shown] + [
        ("matched baseline " if c.startswith("base:") else "new ") + short_key(c.split(":", 1)[1])
        for c in sides
    ]
    headers += ["new", "baseline", "diff [CI]", "MDE", "test", "verdict"]
    body = []
    for _, row in cells.iterrows():
        out = [row[c] for c in shown] + [row[c] or "–" for c in sides]
        out.append(f"{row['mean_new'] * scale:.2f} (n={int(row['n_new'])})")
        out.append(f"{row['mean_base'] * scale:.2f} (n={int(row['n_base'])})")
        if math.isnan(row["ci_low"]):
            out.append(f"{row['diff'] * scale:+.2f} [no CI: n=1 on both sides]")
            out.append("–")
        else:
            out.append(
                f"{row['diff'] * scale:+.2f} [{row['ci_low'] * scale:+.2f}, {row['ci_high'] * scale:+.2f}]"
            )
            out.append(f"{row['mde'] * scale:.2f}")
        out.append(row["method"])
        out.append(row["verdict"].upper() if row["verdict"] == "worse" else row["verdict"])
        body.append(out)
    counts = cells["verdict"].value_counts().to_dict()
    summary = ", ".join(
        f"{counts.get(v, 0)} {v}" for v in ("better", "same", "worse", "n/a") if counts.get(v)
    )
    head = [f"{result.metric}, layer {result.layer}, values x{scale:g}: {summary}"]
    if result.by_keys or result.auto_by:
        head.append(
            f"compared across: {', '.join([*result.by_keys, *result.auto_by])}"
            + (f" (found automatically: {', '.join(result.auto_by)})" if result.auto_by else "")
        )
    constant = [c for c in result.match_keys if c not in shown]
    if constant:
        head.append("matched on (equal on both sides): " + ", ".join(
            f"{short_key(c)}={cells[c].iloc[0] or '–'}" for c in constant
        ))
    family = int(cells["family"].max())
    if result.reference is not None:
        head.append(f"one named reference (--reference {result.reference}): 95% intervals, alpha 5%")
    elif family > 1:
        head.append(
            f"several baselines: each new cell is compared with up to {family} baseline cells; "
            f"Bonferroni: intervals at {100 - 5 / family:.4g}%, verdicts and MDE at alpha 5%/{family} "
            "(or name one with --reference)"
        )
    else:
        head.append("95% intervals; MDE: 80% power, 5% two-sided")
    head.append(
        "test: paired = paired t over shared seeds, welch = Welch t (different seeds), "
        "+queries = query-sample noise added from per-query hits"
        + (f"; --min-diff {result.min_diff * scale:g}" if result.min_diff else "")
    )
    table = tabulate(body, headers, tablefmt="pipe", disable_numparse=True)
    return "\n".join(head) + "\n\n" + table + "\n" + "\n".join(_unmatched_lines(result))


def _unmatched_lines(result: Comparison) -> list[str]:
    lines = []
    if result.unmatched_new:
        lines.append(f"\n{len(result.unmatched_new)} new cell(s) matched no baseline cell (not compared):")
        lines += [f"  {text}" for text in result.unmatched_new]
    if result.unmatched_base:
        lines.append(f"\n{len(result.unmatched_base)} baseline cell(s) matched no new cell:")
        lines += [f"  {text}" for text in result.unmatched_base]
    return lines
