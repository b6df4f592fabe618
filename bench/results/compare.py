"""`dmlbench compare NEW [BASELINE]`: does the new result hold up against its reference? One gate, one exit code.

NEW and BASELINE are results folders: a tree of run folders (collected on the fly), a collected folder
holding results.csv (such as the committed results/baseline), or a results.csv/.parquet itself. Without
BASELINE, NEW holds both sides: the reference runs are NEW's cells whose --by value is --reference
(the regression workflow: one sweep of the new loss and the reference loss on the same cached features).
A *cell* is a configuration without its seed: runs of a cell that differ only by seed are its samples.

The question (the gate), on ONE declared primary metric and layer (--metric, --layer; recall@1 of emb):
(a) a change to an existing loss: nothing compared across (no --by), each new cell against the same
    cell before; two-sided;
(b) a new idea (--by loss.name, or found automatically): each new cell against ONE reference cell,
    --reference NAME or, by default, the best baseline cell on the primary metric. The other baseline
    cells are shown as information, marked `exploratory`, and never decide the exit code (no
    correction is made for them, so do not read them as verdicts).
Verdicts, from the 95% interval of d = new - reference and the margin m = --min-diff (points, >= 0):
  worse        the whole interval below -m: worse by more than the margin (exit 1);
  better       the whole interval above 0 (superior);
  same         m = 0 and the interval holds 0;
  non-inferior m > 0, the interval above -m but not above 0 (not worse by m: a passed non-inferiority test);
  inconclusive m > 0, the interval reaches below -m (the data cannot rule out a loss of m; exit 0).
MDE: the smallest true shortfall the gate catches with 80% power, m + (t_{0.975,df} + t_{0.8,df}) se;
`same` or `inconclusive` could have missed anything smaller.

Refused (exit 2, one line naming the key): results that differ in what was measured -- dataset, data root
(by its folder name), dataset size (number of queries, of images), galleries, tier, backbone, image size,
epochs, batches per epoch, subset -- unless the key is given with --by or --allow KEY. A run whose metric
is NaN or missing: exit 1 naming the run. Unreadable query hits: exit 2.

Matching. Cells are matched on every other config key the two sides share, except keys whose values do
not overlap at all between the sides (found automatically and reported, so a new loss with its own
parameters still meets the baseline cells). Cells of either side that matched nothing are listed.

Estimator (dmlbench.results.power):
- seeds: paired t over per-seed differences when both cells hold the same seeds AND every run of both
  has the same environment fingerprint (environment.json: feature hash, device, library versions,
  threads); Welch's t otherwise;
- plus, for recall@1, the query sample's noise from the per-query hits (query_hits.npz), clustered by
  the queries' class, minus the seed x query interaction counted once; without hits, or for another
  metric, the verdict says `seeds only`;
- plus, when the environments differ (or one side records none, as the committed results/baseline), a
  between-environment variance (power.BETWEEN_ENV_SD; provisional until measured from cross-environment
  reruns, docs/regression.md); the header says so and names the parts that differ;
- zero variance (identical runs, no query noise): the interval is d +- one query (1/queries): no verdict
  finer than the data can show; n = 1 on both sides: no interval, `n/a`.

>>> verdict(0.01, 0.03), verdict(-0.01, 0.02), verdict(-0.05, -0.01), verdict(float("nan"), 0.0)
('better', 'same', 'worse', 'n/a')
>>> verdict(0.0512, 0.0592, 0.06), verdict(-0.02, 0.01, 0.03), verdict(-0.04, 0.01, 0.03)
('better', 'non-inferior', 'inconclusive')
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from dmlbench.config import normalise_key
from dmlbench.errors import BrokenResultError, UsageError
from dmlbench.results import power
from dmlbench.results.collect import (
    ENV_PREFIX,
    SETUP_KEYS,
    SETUP_PREFIX,
    config_columns,
    metric_key,
    split_metric,
)
from dmlbench.results.tables import short_key

EXIT_WORSE = 1
EXIT_NO_MATCH = 2
# What was measured: never matched away automatically; results that differ in one are refused.
STRICT_KEYS = frozenset({"dataset", "data.dataset", "model.backbone", *SETUP_KEYS})
# The same for facts that are no config keys: checked, never matched on.
STRICT_FACTS = ("num_queries", f"{SETUP_PREFIX}images", f"{SETUP_PREFIX}galleries")
FACT_NAMES = {"num_queries": "dataset size (queries)", f"{SETUP_PREFIX}images": "dataset size (images)",
              f"{SETUP_PREFIX}galleries": "galleries"}  # fmt: skip


def welch_interval(
    mean_new: float,
    std_new: float,
    n_new: int,
    mean_base: float,
    std_base: float,
    n_base: int,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Welch interval of mean_new - mean_base from summary statistics; (nan, nan) when unknowable."""
    diff = mean_new - mean_base
    if n_new >= 2 and n_base >= 2:
        v1, v2 = std_new**2 / n_new, std_base**2 / n_base
        se, df = math.sqrt(v1 + v2), (v1 + v2) ** 2 / max(v1**2 / (n_new - 1) + v2**2 / (n_base - 1), 1e-300)
    elif n_new >= 2 or n_base >= 2:
        std, df = (std_new, n_new - 1) if n_new >= 2 else (std_base, n_base - 1)
        se = std * math.sqrt(1 / n_new + 1 / n_base)
    else:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se if se else 0.0
    return diff - half, diff + half


def verdict(low: float, high: float, min_diff: float = 0.0) -> str:
    """The gate's verdict from a difference interval and the margin (module docstring)."""
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    if high < -min_diff:
        return "worse"
    if low > 0:
        return "better"
    if min_diff <= 0:
        return "same"
    return "non-inferior" if low > -min_diff else "inconclusive"


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


def key_value(column: str, value: Any) -> str:
    """canonical_key, except that a data root is compared by its folder name (absolute paths differ by machine).

    >>> key_value("data.root", "/srv/lab/data/synthshop-large"), key_value("data.root", "data/synthshop-large/")
    ('synthshop-large', 'synthshop-large')
    """
    text = canonical_key(value)
    return PurePath(text).name if column == "data.root" and text else text


@dataclass
class Comparison:
    cells: pd.DataFrame  # one row per matched (new cell, baseline cell); `role`: gate | exploratory
    match_keys: list[str]
    by_keys: list[str]
    auto_by: list[str] = field(default_factory=list)
    metric: str = "recall@1"
    layer: str = "emb"
    unmatched_new: list[str] = field(default_factory=list)  # new cells that met no baseline cell
    unmatched_base: list[str] = field(default_factory=list)
    reference: str | None = None
    min_diff: float = 0.0
    allowed: list[str] = field(default_factory=list)  # strict keys that differ, compared on purpose (--allow)
    unrecorded: list[str] = field(default_factory=list)  # strict keys that one side does not record

    @property
    def gate(self) -> pd.DataFrame:
        return self.cells[self.cells["role"] == "gate"] if not self.cells.empty else self.cells

    @property
    def any_worse(self) -> bool:
        return bool((self.gate["verdict"] == "worse").any()) if not self.cells.empty else False

    def exit_code(self) -> int:
        if self.cells.empty:
            return EXIT_NO_MATCH
        return EXIT_WORSE if self.any_worse else 0


Hits = Mapping[str, Mapping[str, np.ndarray]]  # run_id -> {"positions", "classes", <layer>: hits}


# -- step 1: select the primary metric and refuse NaN or missing values -------------------------------------


def select(frame: pd.DataFrame, metric: str, layer: str, side: str) -> pd.DataFrame:
    """The rows of `metric` on `layer`; a run that lacks them while others have them, or whose value is
    NaN, stops the comparison (BrokenResultError, exit 1) naming the run."""
    name, k = split_metric(metric)
    sel = (frame["metric"] == name) & (frame["layer"] == layer)
    sel &= frame["k"].isna() if k is None else frame["k"] == k
    chosen = frame[sel.fillna(False)]
    if chosen.empty:
        return chosen
    where = chosen.get("path", chosen["run_id"])
    bad = chosen["value"].isna()
    if bad.any():
        run = chosen[bad].iloc[0]
        raise BrokenResultError(
            f"{side} run {run['run_id']} ({where[bad].iloc[0]}): {metric} of layer {layer} is NaN; "
            "rerun it or remove it from the results"
        )
    missing = sorted(set(frame["run_id"].astype(str)) - set(chosen["run_id"].astype(str)))
    if missing:
        raise BrokenResultError(
            f"{side} run {missing[0]}: no {metric} for layer {layer}, which its other runs have"
            + (f" (and {len(missing) - 1} more run(s))" if len(missing) > 1 else "")
        )
    return chosen


# -- step 2: the keys: refuse what cannot be compared, match on the rest ---------------------------------


@dataclass
class KeyPlan:
    match: list[str]
    auto_by: list[str]
    new_extra: list[str]
    base_extra: list[str]
    allowed: list[str]
    unrecorded: list[str]
    compared: list[str]  # --by keys and those found automatically


def _recorded(frame: pd.DataFrame, column: str) -> set[str]:
    if column not in frame.columns:
        return set()
    return {key_value(column, v) for v in frame[column]} - {""}


def plan_keys(new: pd.DataFrame, base: pd.DataFrame, by: Sequence[str], allow: Sequence[str]) -> KeyPlan:
    """Which keys the cells match on, which are compared across; refuses (UsageError) a strict key that
    differs between the sides unless it is in `by` or `allow`."""
    new_keys = list(dict.fromkeys(["dataset", *config_columns(new)]))
    base_keys = list(dict.fromkeys(["dataset", *config_columns(base)]))
    allowed, unrecorded = [], []
    for column in [*sorted(STRICT_KEYS), *STRICT_FACTS]:
        if column in by or (column == "data.dataset" and "dataset" in by):
            continue
        a, b = _recorded(new, column), _recorded(base, column)
        if not a or not b:
            if a or b:
                unrecorded.append(FACT_NAMES.get(column, column))
            continue
        if a & b:
            continue
        if column in allow or (column == "data.dataset" and "dataset" in allow):
            allowed.append(column)
            continue
        raise UsageError(
            f"cannot compare: {FACT_NAMES.get(column, column)} differs (new: {', '.join(sorted(a))}; "
            f"baseline: {', '.join(sorted(b))}); compare like with like, or pass --allow {column} to compare anyway"
        )
    shared = [c for c in new_keys if c in base_keys and c not in by]
    auto_by = [
        c for c in shared
        if (c not in STRICT_KEYS or c in allowed) and not _recorded(new, c) & _recorded(base, c) and len(new) and len(base)
    ]  # fmt: skip
    match = [c for c in shared if c not in auto_by]
    compared = {*by, *auto_by}

    def extra(frame: pd.DataFrame, keys: list[str]) -> list[str]:
        return [
            c for c in keys if c not in match and (c in compared or frame[c].map(canonical_key).nunique() > 1)
        ]

    return KeyPlan(
        match, auto_by, extra(new, new_keys), extra(base, base_keys), allowed, unrecorded, sorted(compared)
    )


def describe_cell(key: tuple[Any, ...], columns: list[str], hide: Collection[str] = ()) -> str:
    """`name=value, ...` of a cell, each shown name once (dataset and data.dataset are one key).

    >>> describe_cell(("synthshop", "synthshop", "bdl"), ["dataset", "data.dataset", "loss.name"])
    'dataset=synthshop, loss=bdl'
    """
    parts = [f"{short_key(c)}={v or '–'}" for c, v in zip(columns, key, strict=True) if c not in hide]
    return ", ".join(dict.fromkeys(parts))


# -- step 3: pair the cells, and name each new cell's one reference --------------------------------------


def group_cells(frame: pd.DataFrame, columns: list[str]) -> dict[tuple[str, ...], pd.DataFrame]:
    keyed = frame.assign(**{f"key:{c}": frame[c].map(lambda v, c=c: key_value(c, v)) for c in columns})
    if not columns:
        return {(): keyed} if len(keyed) else {}
    groups = keyed.groupby([f"key:{c}" for c in columns], sort=True)
    return {g if isinstance(g, tuple) else (g,): f for g, f in groups}


def pair_cells(
    new_groups: dict[tuple[str, ...], pd.DataFrame],
    base_groups: dict[tuple[str, ...], pd.DataFrame],
    plan: KeyPlan,
    reference: str | None,
) -> list[tuple[tuple[str, ...], tuple[str, ...], str]]:
    """(new cell, baseline cell, role) for every matching pair; one `gate` per new cell: the baseline cell
    whose compared value is `reference`, else the best baseline cell (highest mean of the primary metric)."""
    n = len(plan.match)
    compared_at = [n + i for i, c in enumerate(plan.base_extra) if c in plan.compared]
    out = []
    for nk in new_groups:
        matched = [bk for bk in base_groups if bk[:n] == nk[:n]]
        if not matched:
            continue
        if reference is not None:
            gates = [bk for bk in matched if any(bk[i] == canonical_key(reference) for i in compared_at)]
        else:
            gates = [max(matched, key=lambda bk: float(base_groups[bk]["value"].mean()))]
        out += [(nk, bk, "gate" if bk in gates[:1] else "exploratory") for bk in matched]
    return out


# -- step 4: the estimate of one pair (seeds, queries, environments) -------------------------------------


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


def environment_difference(new_runs: pd.DataFrame, base_runs: pd.DataFrame) -> list[str] | None:
    """None when every run of both sides has one fingerprint (or neither side records any: results from
    before fingerprints, taken as one machine); else the fingerprint parts that differ, or why unknown."""

    def prints(runs: pd.DataFrame) -> list[dict[str, str]]:
        columns = [c for c in runs.columns if c.startswith(ENV_PREFIX)]
        return [{c[len(ENV_PREFIX) :]: canonical_key(row[c]) for c in columns} for _, row in runs.iterrows()]

    new_p, base_p = prints(new_runs), prints(base_runs)
    known = lambda ps: bool(ps) and all(any(p.values()) for p in ps)  # noqa: E731
    if not known(new_p) and not known(base_p):
        return None
    if not known(new_p) or not known(base_p):
        return ["not recorded by the " + ("new" if not known(new_p) else "baseline") + " runs"]
    everything = new_p + base_p
    parts = sorted({k for p in everything for k in p if len({q.get(k, "") for q in everything}) > 1})
    return parts or None


def estimate_cell(
    new_runs: pd.DataFrame,
    base_runs: pd.DataFrame,
    *,
    layer: str = "emb",
    with_queries: bool = False,
    hits_new: Hits | None = None,
    hits_base: Hits | None = None,
    env_sd: float = power.BETWEEN_ENV_SD,
) -> power.Estimate:
    """Paired t when both cells hold the same seeds in one environment (n >= 2), else Welch; plus the
    query noise, plus the between-environment variance when the environments differ (module docstring)."""
    new_seeds, base_seeds = new_runs["seed"].tolist(), base_runs["seed"].tolist()
    same_env = environment_difference(new_runs, base_runs) is None
    same_seeds = (
        len(new_seeds) >= 2
        and sorted(new_seeds) == sorted(base_seeds)
        and len(set(new_seeds)) == len(new_seeds)
        and not any(pd.isna(s) for s in new_seeds)
    )
    paired = same_seeds and same_env
    if paired:  # row i of both sides (values and hit matrices) is then seed i
        new_runs, base_runs = new_runs.sort_values("seed"), base_runs.sort_values("seed")
        est = power.paired(new_runs["value"].to_numpy(), base_runs["value"].to_numpy())
    else:
        est = power.welch(new_runs["value"].to_numpy(), base_runs["value"].to_numpy())
    if with_queries:
        new_m, base_m = hit_matrix(new_runs, hits_new, layer), hit_matrix(base_runs, hits_base, layer)
        if new_m is not None and base_m is not None and np.array_equal(new_m.positions, base_m.positions):
            clusters = new_m.classes if new_m.classes is not None else base_m.classes
            est = est.with_queries(
                power.query_variance(new_m.hits, base_m.hits, paired=paired, clusters=clusters)
            )
    if not same_env:
        est = est.with_environment(env_sd**2)
    return est


# -- step 5: the rows ------------------------------------------------------------------------------------


def resolution(runs: pd.DataFrame) -> float:
    """One query's share of a per-query mean (1/queries): the finest difference the data can show."""
    if "num_queries" not in runs.columns:
        return math.nan
    counts = pd.to_numeric(runs["num_queries"], errors="coerce").dropna()
    return 1.0 / float(counts.min()) if len(counts) and counts.min() > 0 else math.nan


def build_row(
    new_runs: pd.DataFrame, base_runs: pd.DataFrame, est: power.Estimate, role: str, min_diff: float
) -> dict[str, Any]:
    low, high = est.interval()
    mde = power.mde(est.se, est.df)
    method, notes = est.method, []
    if est.se == 0 and math.isfinite(est.df):  # identical runs: no verdict finer than one query
        r = resolution(pd.concat([new_runs, base_runs]))
        low, high, mde = est.diff - r, est.diff + r, r
        method += " (no variance)"
    if not math.isnan(mde):
        mde += min_diff
    if "+queries" not in est.method and est.method != "none":
        notes.append("seeds only")
    if role == "exploratory":
        notes.append("exploratory")
    return {
        "mean_new": float(new_runs["value"].mean()),
        "n_new": len(new_runs),
        "mean_base": float(base_runs["value"].mean()),
        "n_base": len(base_runs),
        "diff": est.diff,
        "ci_low": low,
        "ci_high": high,
        "se": est.se,
        "df": est.df,
        "mde": mde,
        "method": method,
        "role": role,
        "p_value": power.p_value(est),
        "verdict": verdict(low, high, min_diff),
        "note": ", ".join(notes),
        "environment": ", ".join(environment_difference(new_runs, base_runs) or []),
        "base_runs": " ".join(map(str, base_runs["run_id"])),
    }


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
    allow: Sequence[str] = (),
    env_sd: float = power.BETWEEN_ENV_SD,
) -> Comparison:
    """Select, check the keys, pair the cells, estimate each pair and build its row (module docstring).

    `min_diff` is a fraction (the CLI's --min-diff is in table points, x100)."""
    new, base = select(new, metric, layer, "new"), select(base, metric, layer, "baseline")
    by = [normalise_key(b) for b in by]
    allow = [normalise_key(a) for a in allow]
    plan = plan_keys(new, base, by, allow)
    compared = plan.compared
    if reference is not None and not any(c in compared for c in plan.base_extra):
        raise UsageError("--reference needs a compared key (--by KEY, or a key found automatically)")
    new_groups = group_cells(new, [*plan.match, *plan.new_extra])
    base_groups = group_cells(base, [*plan.match, *plan.base_extra])
    if reference is not None:
        at = [len(plan.match) + i for i, c in enumerate(plan.base_extra) if c in compared]
        known = sorted({bk[i] for bk in base_groups for i in at})
        if canonical_key(reference) not in known:
            raise UsageError(
                f"--reference {reference}: no baseline cell has it; the baseline has {', '.join(known)}"
            )
    pairs = pair_cells(new_groups, base_groups, plan, reference)
    name, k = split_metric(metric)
    with_queries = name == "recall" and k == 1
    rows = []
    for nk, bk, role in pairs:
        new_runs, base_runs = new_groups[nk], base_groups[bk]
        est = estimate_cell(new_runs, base_runs, layer=layer, with_queries=with_queries, hits_new=hits_new,
                            hits_base=hits_base, env_sd=env_sd)  # fmt: skip
        row: dict[str, Any] = dict(zip(plan.match, nk[: len(plan.match)], strict=True))
        row |= {f"new:{c}": v for c, v in zip(plan.new_extra, nk[len(plan.match) :], strict=True)}
        row |= {f"base:{c}": v for c, v in zip(plan.base_extra, bk[len(plan.match) :], strict=True)}
        rows.append(row | build_row(new_runs, base_runs, est, role, min_diff))
    matched_new, matched_base = {nk for nk, _, _ in pairs}, {bk for _, bk, _ in pairs}
    # keys with one value in every cell of both sides say nothing about why a cell met nothing
    hide = {
        c
        for i, c in enumerate(plan.match)
        if c != "dataset" and len({k[i] for k in [*new_groups, *base_groups]}) == 1
    }
    columns = [
        *plan.match, *[f"new:{c}" for c in plan.new_extra], *[f"base:{c}" for c in plan.base_extra],
        "mean_new", "n_new", "mean_base", "n_base", "diff", "ci_low", "ci_high", "se", "df", "mde",
        "method", "role", "p_value", "verdict", "note", "environment", "base_runs",
    ]  # fmt: skip
    return Comparison(
        pd.DataFrame(rows, columns=columns),
        plan.match,
        list(by),
        plan.auto_by,
        metric_key(name, k),
        layer,
        unmatched_new=[
            describe_cell(nk, [*plan.match, *plan.new_extra], hide)
            for nk in new_groups
            if nk not in matched_new
        ],
        unmatched_base=[
            describe_cell(bk, [*plan.match, *plan.base_extra], hide)
            for bk in base_groups
            if bk not in matched_base
        ],
        reference=reference,
        min_diff=min_diff,
        allowed=plan.allowed,
        unrecorded=plan.unrecorded,
    )


def split_one_folder(
    frame: pd.DataFrame, by: Sequence[str], reference: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(new, reference) from one results tree holding both: the reference is the cells whose --by value is
    `reference` (the regression workflow's sweep of the new loss and the reference loss)."""
    if not by or reference is None:
        raise UsageError(
            "with one results folder, name what differs and the reference: --by KEY --reference NAME"
        )
    key = normalise_key(by[0])
    if key not in frame.columns:
        raise UsageError(f"--by {by[0]}: the results have no column {key}")
    is_ref = frame[key].map(canonical_key) == canonical_key(reference)
    if not is_ref.any():
        known = sorted(set(frame[key].map(canonical_key)) - {""})
        raise UsageError(
            f"--reference {reference}: no run has {key}={reference}; the results have {', '.join(known)}"
        )
    if is_ref.all():
        raise UsageError(f"every run has {key}={reference}: nothing new to compare with it")
    return frame[~is_ref], frame[is_ref]
