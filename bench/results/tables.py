"""Paper-style tables from the long results frame: mean ± 95% t-interval over seeds, best per column marked.

A table is described by a `TableSpec` (plain data, shipped in bench/results/tables.yaml): which columns
label the rows, what goes into the columns (the K of one metric, a list of metrics, or the values of a
config key such as loss.params.beta), and filters. Every config key that varies in the results but is
neither a row nor a column key is added to the rows, so different configurations are never averaged.

Statistics over seeds (one observation per run):

    mean, sample std s (ddof=1), n runs,  CI half-width = t_{0.975, n-1} * s / sqrt(n)   (none when n = 1)

>>> round(t_halfwidth(std=1.0, n=4), 4)   # t_{0.975,3} = 3.1824 -> 3.1824 / 2
1.5912
>>> import math; math.isnan(t_halfwidth(std=1.0, n=1))
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from dmlbench.config.io import check_expansion
from dmlbench.config.keys import short_key  # noqa: F401  (here for its many readers)
from dmlbench.errors import FileFormatError, TableSpecError, did_you_mean, yaml_problem
from dmlbench.files import read_utf8
from dmlbench.results.collect import config_columns, metric_key, split_metric

PRESETS = Path(__file__).resolve().parent / "tables.yaml"  # the standard tables
# The published numbers (results/paper/*.csv) live in the repository, next to the package.
PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"

METRIC_DEFINITIONS: dict[str, str] = {
    "recall": "Recall@K = fraction of queries with at least one relevant item among the K nearest",
    "precision": "Precision@K = relevant items among the K nearest / K",
    "r_precision": "R-Precision = relevant among the R nearest / R (R = relevant items of the query)",
    "map_r": "MAP@R = (1/R) sum_{i<=R} P(i) rel(i) (Musgrave et al. 2020)",
    "attr_sim": "attr_sim@K = mean attribute cosine of the top-K retrieved items of another class",
}
CI_NOTE = (
    "mean ± 95% t-interval half-width over seeds only (t_0.975,n-1 · s/√n; none when n = 1; the query "
    "sample's noise is not in it: see the report's power section and `dmlbench compare`); "
    "n = seeds; best per column in bold; cosine similarity on L2-normalised features"
)


BOLD_OVERLAP_NOTE = (
    "Bold marks the highest mean only: where its interval overlaps another row's (or n = 1), "
    "the difference is not significant at 95%."
)


def t_halfwidth(std: float, n: int, confidence: float = 0.95) -> float:
    """Half-width of the two-sided t confidence interval of a mean; NaN when n < 2."""
    if n < 2 or not np.isfinite(std):
        return math.nan
    return float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))


def summarize(frame: pd.DataFrame, by: Sequence[str], value: str = "value") -> pd.DataFrame:
    """Per group of `by`: mean, std (ddof=1), n and the 95% t half-width `ci` of `value`.

    >>> df = pd.DataFrame({"g": ["a", "a", "a", "b"], "value": [1.0, 2.0, 3.0, 5.0]})
    >>> out = summarize(df, ["g"])
    >>> out[["g", "mean", "n"]].values.tolist()
    [['a', 2.0, 3], ['b', 5.0, 1]]
    >>> round(float(out["ci"][0]), 4), bool(np.isnan(out["ci"][1]))
    (2.4841, True)
    """
    grouped = frame.groupby(list(by), dropna=False, sort=False)[value]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    t_crit = stats.t.ppf(0.975, np.maximum(out["n"].to_numpy() - 1, 1))
    with np.errstate(invalid="ignore"):
        ci = t_crit * out["std"].to_numpy() / np.sqrt(out["n"].to_numpy())
    out["ci"] = np.where(out["n"].to_numpy() >= 2, ci, np.nan)
    return out


@dataclass(frozen=True)
class TableSpec:
    """What one table shows; see bench/results/tables.yaml for the meaning of each field."""

    name: str
    title: str = ""
    rows: tuple[str, ...] = ("loss.name",)
    columns: str = "k"
    metric: str = "recall"
    ks: tuple[int, ...] | None = None
    k: int = 1
    metrics: tuple[str, ...] = ()
    layer: str | None = "emb"
    layer_when: tuple[dict[str, Any], ...] = ()
    where: dict[str, Any] = field(default_factory=dict)
    row_labels: dict[str, str] = field(default_factory=dict)
    row_order: tuple[str, ...] = ()
    min_rows: int = 2
    min_columns: int = 1
    show_fixed_keys: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    paper: dict[str, str] = field(default_factory=dict)
    scale: float = 100.0
    decimals: int = 1

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> TableSpec:
        valid = [f.name for f in dataclasses.fields(cls) if f.name != "name"]
        for key in data:
            if key not in valid:
                raise TableSpecError(f"table '{name}': unknown field '{key}'{did_you_mean(key, valid)}")
        data = dict(data)
        for key in ("rows", "ks", "metrics", "layer_when", "row_order"):
            if data.get(key) is not None:
                value = data[key]
                data[key] = tuple(value) if isinstance(value, list | tuple) else (value,)
        if data.get("columns") == "metric" and not data.get("metrics"):
            raise TableSpecError(
                f"table '{name}': columns: metric needs a `metrics` list, e.g. [recall@1, map@r]"
            )
        data["paper"] = {str(k): str(v) for k, v in (data.get("paper") or {}).items()}
        data["row_labels"] = {str(k): str(v) for k, v in (data.get("row_labels") or {}).items()}
        data["headers"] = {str(k): str(v) for k, v in (data.get("headers") or {}).items()}
        return cls(name=name, **data)


def load_specs(path: str | Path | None = None) -> list[TableSpec]:
    """Table specs from a YAML mapping name -> fields (default: the shipped presets)."""
    path = Path(path) if path is not None else PRESETS
    if not path.is_file():
        raise TableSpecError(f"table spec file not found: {path}")
    try:
        data = yaml.safe_load(read_utf8(path)) or {}
        check_expansion(data)
    except FileFormatError as err:
        raise TableSpecError(str(err)) from None
    except yaml.YAMLError as err:
        raise TableSpecError(f"{path} is not valid YAML: {yaml_problem(err)}") from err
    if not isinstance(data, dict):
        raise TableSpecError(f"{path}: expected a mapping of table name -> spec")
    return [TableSpec.from_dict(str(name), spec or {}) for name, spec in data.items()]


def load_paper(paper_dir: Path | None = None) -> pd.DataFrame:
    """Every published number of results/paper/*.csv (one row each)."""
    paper_dir = paper_dir or PAPER_DIR
    files = sorted(Path(paper_dir).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no published numbers found: {paper_dir}/*.csv")
    text_columns = {c: str for c in ("table", "published", "ref", "layer", "sampler", "note", "ours")}
    frame = pd.concat([pd.read_csv(f, dtype=text_columns) for f in files], ignore_index=True)
    frame["k"] = frame["k"].astype("Int64")
    return frame.fillna({"layer": "", "sampler": "", "ref": "", "note": "", "ours": ""})


def _matches(frame: pd.DataFrame, where: dict[str, Any]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for column, wanted in where.items():
        if column not in frame.columns:
            return pd.Series(False, index=frame.index)
        values = wanted if isinstance(wanted, list | tuple) else [wanted]
        mask &= frame[column].isin(values)
    return mask


def sort_key(value: Any, order: Sequence[str] = ()) -> tuple[int, Any]:
    """Listed values first (in `order`), then numbers, then text, missing last."""
    if str(value) in order:
        return (-1, order.index(str(value)))
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return (2, "")
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


def is_bookkeeping(key: str) -> bool:
    """A runtime key (or inside one): it changes where or how fast a run happens, not its result.

    >>> is_bookkeeping("train.num_workers"), is_bookkeeping("track.project"), is_bookkeeping("loss.name")
    (True, True, False)
    """
    from dmlbench.config import RUNTIME_KEYS

    return any(key == k or key.startswith(f"{k}.") for k in RUNTIME_KEYS)


def _varies(series: pd.Series) -> bool:
    return series.nunique(dropna=False) > 1


@dataclass
class Table:
    """One rendered-ready table: per (row, column) cell statistics plus optional published rows.

    `extra_columns` are (header, {row: text}) pairs shown after `n` (e.g. a tune's verdicts; a row is the
    tuple of its `row_keys` values, missing ones as None); `notes` join the note below the table."""

    spec: TableSpec
    dataset: str
    row_keys: list[str]
    column_values: list[Any]
    cells: pd.DataFrame  # row keys, "column", mean, std, n, ci, best
    layer_note: str
    paper_rows: pd.DataFrame | None = None
    added_keys: list[str] = field(default_factory=list)
    extra_columns: list[tuple[str, dict[tuple[Any, ...], str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return f"{self.spec.name}_{self.dataset}"

    def column_label(self, value: Any) -> str:
        """A readable header: `R@1`, `P@10`, `MAP@R`; `beta=0.5` for a config key's value."""
        if self.spec.columns == "k":
            return readable_metric(metric_key(self.spec.metric, value))
        if self.spec.columns == "metric":
            return readable_metric(str(value))
        return f"{self.spec.columns.rsplit('.', 1)[-1]}={format_value(value)}"

    def caption(self) -> str:
        """The short caption: what, where, and what ± is; the long text is `note()`, printed below the table."""
        scale = f", ×{self.spec.scale:g}" if self.spec.scale != 1 else ""
        return f"{self.spec.title or self.spec.name} — {self.dataset}, {self.layer_note}. Mean ± 95% CI over seeds{scale}."

    def note(self) -> str:
        """Definitions, the interval's formula, the rows' extra keys and what bold means (below the table)."""
        definition = METRIC_DEFINITIONS.get(self.spec.metric if self.spec.columns != "metric" else "", "")
        parts = [f"{definition}." if definition else "", f"{CI_NOTE}."]
        if self.added_keys:
            parts.append(f"Rows also split by {', '.join(self.added_keys)} (varying in the results).")
        if self.bold_overlaps():
            parts.append(BOLD_OVERLAP_NOTE)
        return " ".join([p for p in parts if p] + self.notes)

    def bold_overlaps(self) -> bool:
        """Whether some bold (best-mean) cell's 95 % interval overlaps another row's in its column, or has
        none (one seed): then bold is not a significant win, and the caption says so."""
        for _, column in self.cells.groupby("column", sort=False):
            best = column[column["best"]]
            others = column[~column["best"]]
            if best.empty or others.empty:
                continue
            if not np.isfinite(best["ci"]).all() or not np.isfinite(others["ci"]).all():
                return True
            if (best["mean"] - best["ci"]).min() <= (others["mean"] + others["ci"]).max():
                return True
        return False


READABLE_METRICS = {"recall": "R", "precision": "P", "map_r": "MAP@R", "r_precision": "R-Prec", "attr_sim": "AttrSim"}


def readable_metric(key: str) -> str:
    """A metric key as a paper writes it.

    >>> [readable_metric(k) for k in ("recall@1", "precision@10", "map@r", "r_precision", "attr_sim@1", "other")]
    ['R@1', 'P@10', 'MAP@R', 'R-Prec', 'AttrSim@1', 'other']
    """
    name, k = split_metric(key)
    short = READABLE_METRICS.get(name)
    if short is None:
        return key
    return f"{short}@{k}" if k is not None else short


def format_value(value: Any) -> str:
    """A config value for a table or a legend: floats to 4 significant digits, missing as `–`.

    >>> format_value(0.0016051911333587634), format_value(49.92788612306116), format_value(2.0), format_value("bdl")
    ('0.001605', '49.93', '2', 'bdl')
    """
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def missing_as_none(value: Any) -> Any:
    """NaN / NA -> None, so that a row's key tuple equals another's (NaN != NaN)."""
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


def fixed_within(frame: pd.DataFrame, keys: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """The `candidates` that take one value within each group of `keys` (a function of them, e.g. a tuned
    method's own parameters): they cannot make a group average different configurations."""
    if not keys:
        return []
    groups = frame.groupby(list(keys), dropna=False, sort=False)
    return [c for c in candidates if bool((groups[c].nunique(dropna=False) <= 1).all())]


def build_table(
    frame: pd.DataFrame, spec: TableSpec, dataset: str, paper: pd.DataFrame | None = None
) -> Table | None:
    """The table `spec` describes for one dataset, or None when the results do not support it."""
    data = frame[frame["dataset"] == dataset]
    data = data[_matches(data, spec.where)] if spec.where else data
    for key in (*spec.rows, *([spec.columns] if spec.columns not in ("k", "metric") else [])):
        if key not in data.columns:
            return None
    if spec.layer is not None:
        keep = data["layer"] == spec.layer
        for rule in spec.layer_when:
            rule_rows = _matches(data, rule.get("where", {}))
            keep = keep.where(~rule_rows, data["layer"] == rule.get("layer"))
        data = data[keep]
    layer_note = f"layer {spec.layer}" if spec.layer else "all layers"
    if spec.layer_when:
        layer_note += (
            " (" + "; ".join(f"{r.get('layer')} where {r.get('where')}" for r in spec.layer_when) + ")"
        )

    if spec.columns == "k":
        data = data[data["metric"] == spec.metric]
        if spec.ks is not None:
            data = data[data["k"].isin(spec.ks)]
        data = data.assign(column=data["k"])
    elif spec.columns == "metric":
        wanted = [split_metric(m) for m in spec.metrics]
        labels = pd.Series(
            [metric_key(m, k) for m, k in zip(data["metric"], data["k"], strict=True)], index=data.index
        )
        data = data.assign(column=labels)
        data = data[data["column"].isin([metric_key(m, k) for m, k in wanted])]
    else:
        # A run without the column key (e.g. no beta) has no place in a table over its values.
        data = data[(data["metric"] == spec.metric) & (data["k"] == spec.k) & data[spec.columns].notna()]
        data = data.assign(column=data[spec.columns])
    if data.empty:
        return None

    # Every other varying config key joins the rows: different configurations are never averaged.
    fixed = {*spec.rows, spec.columns, "seed"}
    # Bookkeeping keys (where or how fast a run happened, `config.RUNTIME_KEYS`) are no hyper-parameters.
    added = [
        c for c in config_columns(data)
        if c not in fixed and _varies(data[c]) and not is_bookkeeping(c)
    ]
    if not spec.show_fixed_keys:  # keys set by the rows themselves (a tuned method's parameters) stay out
        added = [c for c in added if c not in fixed_within(data, spec.rows, added)]
    if spec.layer is None and "layer" not in fixed:
        added.append("layer")
    # The spec's rows lead, then the added keys; `layer` always last so a configuration's layers sit together.
    keys = [*spec.rows, *added]
    row_keys = [k for k in keys if k != "layer"] + (["layer"] if "layer" in keys else [])
    cells = summarize(data, [*row_keys, "column"])

    # The table must compare what the spec asks for: count distinct values of its first row key.
    n_rows = cells[spec.rows[0]].nunique(dropna=False)
    column_values = sorted(cells["column"].unique().tolist(), key=sort_key)
    if spec.columns == "metric":
        order = [metric_key(*split_metric(m)) for m in spec.metrics]
        column_values = [c for c in order if c in set(column_values)]
    # Some row must fill `min_columns` columns: else the column key never varies with the rows fixed
    # (e.g. alpha and beta that each loss sets once), and the table would be a diagonal of one-cell rows.
    widest = int(cells.groupby([*row_keys], dropna=False, sort=False)["column"].nunique().max())
    if n_rows < spec.min_rows or widest < spec.min_columns:
        return None

    # Best per column on the displayed (rounded) value, so ties on screen are all marked; a column of one
    # row has no best.
    shown = (cells["mean"] * spec.scale).round(spec.decimals)
    by_column = shown.groupby(cells["column"])
    cells["best"] = (shown == by_column.transform("max")) & (by_column.transform("count") > 1)

    paper_rows = None
    table_id = spec.paper.get(dataset)
    if paper is not None and table_id is not None and spec.columns in ("k", "metric"):
        sel = paper[(paper["table"] == table_id) & (paper["dataset"] == dataset)]
        if spec.columns == "k":
            sel = sel[sel["metric"] == spec.metric].assign(column=sel["k"])
        else:
            sel = sel.assign(column=[metric_key(m, k) for m, k in zip(sel["metric"], sel["k"], strict=True)])
        sel = sel[sel["column"].isin(column_values)]
        paper_rows = sel if not sel.empty else None
    return Table(spec, dataset, row_keys, column_values, cells, layer_note, paper_rows, added)


def build_tables(
    frame: pd.DataFrame, specs: Sequence[TableSpec] | None = None, paper: pd.DataFrame | None = None
) -> list[Table]:
    """Every table of `specs` (default: the presets) that the results support, per dataset."""
    specs = load_specs() if specs is None else specs
    if frame.empty:
        return []
    tables = []
    for dataset in sorted(frame["dataset"].dropna().unique()):
        for spec in specs:
            table = build_table(frame, spec, dataset, paper)
            if table is not None:
                tables.append(table)
    return tables
