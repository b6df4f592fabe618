"""`dmlbench compare NEW BASELINE`: per matching cell, the difference of means with a Welch 95% interval.

NEW and BASELINE are results folders (collected on the fly) or collected tables (results.csv/.parquet).
A *cell* is a configuration without its seed: runs of a cell that differ only by seed are its samples.

Matching. Cells are matched on every config key the two sides share (dataset always), except:
- the keys given with `--by` (what you changed, e.g. `loss.name` when comparing a new loss to BDL), and
- keys whose values do not overlap at all between the sides (found automatically and reported), so a new
  loss with its own parameters still meets the baseline cells of the same dataset, sampler, backbone ...

Statistics, with d = mean_new - mean_base:
- both sides n >= 2: Welch, se^2 = s1^2/n1 + s2^2/n2, Welch-Satterthwaite df, CI = d ± t_{0.975,df} se;
- one side n = 1: the other side's variance stands for both (se^2 = s^2 (1/n1 + 1/n2), df = n_other - 1);
- both n = 1: no interval, verdict `n/a` (never counted as a regression);
- zero variance on both sides: the interval is the point d.
Verdict: `worse` when the whole interval lies below -min_diff, `better` when above +min_diff, else `same`.
The exit code is 1 when any cell is `worse`, 2 when nothing matched, else 0.

>>> lo, hi = welch_interval(0.6, 0.01, 3, 0.5, 0.01, 3)
>>> round(lo, 4), round(hi, 4), verdict(lo, hi)
(0.0773, 0.1227, 'better')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from dmlbench.results.collect import config_columns, metric_key, split_metric
from dmlbench.results.tables import short_key, summarize

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


def compare_frames(
    new: pd.DataFrame,
    base: pd.DataFrame,
    *,
    metric: str = "recall@1",
    layer: str = "emb",
    by: Sequence[str] = (),
    min_diff: float = 0.0,
) -> Comparison:
    """Match cells of `new` and `base` and give each pair a difference interval and a verdict."""
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

    def cell_stats(frame: pd.DataFrame, extra: list[str], side: str) -> pd.DataFrame:
        keys = [f"key:{c}" for c in (*match, *extra)]
        if frame.empty:
            return pd.DataFrame(columns=[*keys, f"mean_{side}", f"std_{side}", f"n_{side}"])
        out = summarize(frame, keys).drop(columns="ci")
        out = out.rename(columns={"mean": f"mean_{side}", "std": f"std_{side}", "n": f"n_{side}"})
        return out.rename(columns={f"key:{c}": f"{side}:{c}" for c in extra})

    new_cells = cell_stats(new, new_extra, "new")
    base_cells = cell_stats(base, base_extra, "base")
    on = [f"key:{c}" for c in match]
    cells = (
        new_cells.merge(base_cells, on=on, how="inner") if on else new_cells.merge(base_cells, how="cross")
    )
    cells = cells.rename(columns={f"key:{c}": c for c in match})
    order = [c for c in cells.columns if c in match or c.startswith(("new:", "base:"))]
    cells = cells.sort_values(order, kind="stable").reset_index(drop=True) if order else cells
    lows, highs, verdicts = [], [], []
    for _, row in cells.iterrows():
        low, high = welch_interval(
            row["mean_new"],
            _nz(row["std_new"]),
            int(row["n_new"]),
            row["mean_base"],
            _nz(row["std_base"]),
            int(row["n_base"]),
        )
        lows.append(low)
        highs.append(high)
        verdicts.append(verdict(low, high, min_diff))
    cells["diff"] = cells["mean_new"] - cells["mean_base"] if not cells.empty else pd.Series(dtype=float)
    cells["ci_low"], cells["ci_high"], cells["verdict"] = lows, highs, verdicts
    return Comparison(cells, match, list(by), auto_by, metric_key(name, k), layer)


def _nz(std: float) -> float:
    """A single run has no sample std (NaN); the interval code only reads it when n >= 2."""
    return 0.0 if std is None or (isinstance(std, float) and math.isnan(std)) else float(std)


def format_comparison(result: Comparison, scale: float = 100.0) -> str:
    cells = result.cells
    if cells.empty:
        return (
            f"no matching cells for {result.metric} (layer {result.layer}); matched on: "
            f"{', '.join(result.match_keys) or '(nothing)'}. Check --by, --metric and --layer."
        )
    # Show only the keys that tell cells apart (constant ones are stated once, above the table).
    shown = [c for c in result.match_keys if cells[c].nunique() > 1 or c == "dataset"]
    sides = [c for c in cells.columns if c.startswith(("new:", "base:"))]
    headers = [short_key(c) for c in shown] + [
        c.split(":")[0] + " " + short_key(c.split(":", 1)[1]) for c in sides
    ]
    headers += ["new", "baseline", "diff [95% CI]", "verdict"]

    def mean_text(mean: float, std: float, n: int) -> str:
        return f"{mean * scale:.2f} (n={n})"

    body = []
    for _, row in cells.iterrows():
        out = [row[c] for c in shown] + [row[c] or "–" for c in sides]
        out.append(mean_text(row["mean_new"], row["std_new"], int(row["n_new"])))
        out.append(mean_text(row["mean_base"], row["std_base"], int(row["n_base"])))
        if math.isnan(row["ci_low"]):
            out.append(f"{row['diff'] * scale:+.2f} [no CI: n=1 on both sides]")
        else:
            out.append(
                f"{row['diff'] * scale:+.2f} [{row['ci_low'] * scale:+.2f}, {row['ci_high'] * scale:+.2f}]"
            )
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
    return "\n".join(head) + "\n\n" + tabulate(body, headers, tablefmt="pipe", disable_numparse=True)
