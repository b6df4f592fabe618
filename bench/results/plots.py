"""Figures from collected results and run folders, saved as PNG and PDF.

- Recall@K curves per method (mean over seeds, 95% t-interval bars) — from the long frame.
- alpha x beta heatmap of Recall@1 (SGML Figs. 7/8) — from the long frame.
- Training curves: loss and validation metric per epoch — from history.jsonl rows.
- Embedding view: PCA, t-SNE (and UMAP when installed) of a run's `embeddings_sample.npz`, coloured by
  class and by one attribute — the pictures of the SOP report, for any run.

Figures are drawn on `matplotlib.figure.Figure` objects (no pyplot, no global backend state), so this
works headless and never leaks figures between calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dmlbench.errors import UsageError, did_you_mean
from dmlbench.results.collect import config_columns, metric_key
from dmlbench.results.tables import fixed_within, format_value, is_bookkeeping, short_key, summarize

FORMATS: tuple[str, ...] = ("png", "pdf")
PROJECTION_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] | None = None) -> list[Path]:
    """`stem.<fmt>` for each format (default: FORMATS, read at call time)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats or FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


def _varying_keys(frame: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Config keys that vary (bookkeeping keys such as train.num_workers never split lines)."""
    return [
        c for c in config_columns(frame)
        if c not in exclude and not is_bookkeeping(c) and frame[c].nunique(dropna=False) > 1
    ]


def _line_keys(frame: pd.DataFrame, by: str) -> list[str]:
    """What one line is: `by`, plus the keys that vary within one value of it (never the keys `by` fixes,
    such as a tuned method's own parameters: they would only lengthen the legend)."""
    if by not in frame.columns:
        return _varying_keys(frame, ("seed",))
    others = _varying_keys(frame, exclude=(by, "seed"))
    return [by, *[k for k in others if k not in fixed_within(frame, [by], others)]]


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")


def line_style(index: int) -> dict[str, Any]:
    """Colour, marker and line style of the index-th line: no two of the first 40 lines look alike, and
    lines that share a colour (after 10) differ in marker and dash.

    >>> line_style(0)["marker"], line_style(1)["marker"], line_style(10)["color"] == line_style(0)["color"]
    ('o', 's', True)
    >>> len({(line_style(i)["color"], line_style(i)["marker"], line_style(i)["linestyle"]) for i in range(40)})
    40
    """
    from matplotlib import colormaps

    colour = colormaps["tab10"](index % 10)
    return {
        "color": colour,
        "marker": MARKERS[(index + index // 10) % len(MARKERS)],
        "linestyle": LINESTYLES[(index // 10) % len(LINESTYLES)],
    }


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """A legend entry naming the values that vary; a key a cell does not have (NaN) is left out.

    >>> _label(["loss.name", "sampler.params", "loss.params.alpha"], ["bdl", float("nan"), 2.0])
    'bdl, alpha=2'
    """
    parts = [
        format_value(v) if i == 0 else f"{short_key(k)}={format_value(v)}"
        for i, (k, v) in enumerate(zip(keys, values, strict=True))
        if i == 0 or not _is_missing(v)
    ]
    return ", ".join(parts)


def _legend_outside(ax: Any, title: str | None = None) -> None:
    """The legend right of the axes, never over the data (savefig's tight bbox keeps it in the file)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False,
                  title=title, title_fontsize=8)


def _seeds_note(n: pd.Series) -> str:
    """What a plotted value is: a single run, or a mean with its 95 % t-interval drawn.

    >>> _seeds_note(pd.Series([1, 1])), _seeds_note(pd.Series([3, 3])), _seeds_note(pd.Series([1, 3]))
    ('1 seed, no interval', 'mean ± 95% t-interval over n=3 seeds', 'mean over n=1–3 seeds; 95% t-interval where n ≥ 2')
    """
    low, high = int(n.min()), int(n.max())
    if high < 2:
        return f"{high} seed, no interval"
    if low == high:
        return f"mean ± 95% t-interval over n={high} seeds"
    return f"mean over n={low}–{high} seeds; 95% t-interval where n ≥ 2"


def plot_recall_curves(
    frame: pd.DataFrame,
    stem: Path,
    *,
    dataset: str,
    layer: str = "emb",
    metric: str = "recall",
    by: str = "loss.name",
) -> list[Path]:
    """Metric@K against K (log axis), one line per `by` value (other varying config keys split lines too)."""
    data = frame[(frame["dataset"] == dataset) & (frame["layer"] == layer) & (frame["metric"] == metric)]
    data = data[data["k"].notna()]
    if data.empty:
        return []
    keys = _line_keys(data, by)
    stats = summarize(data, [*keys, "k"]) if keys else summarize(data.assign(all="all"), ["all", "k"])
    keys = keys or ["all"]
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    all_ks = sorted(stats["k"].dropna().astype(int).unique())
    log_x = len(all_ks) > 1 and all_ks[0] > 0
    step = float(min(np.diff(all_ks))) if len(all_ks) > 1 else 1.0
    groups = list(stats.groupby(keys, dropna=False, sort=True))
    for index, (values, group) in enumerate(groups):
        values = values if isinstance(values, tuple) else (values,)
        group = group.sort_values("k")
        # Lines side by side (a few % of a K step apart), so equal values never hide a curve or its bars.
        shift = 0.035 * (index - (len(groups) - 1) / 2)
        ks = group["k"].astype(float).to_numpy()
        ks = ks * (1 + shift) if log_x else ks + shift * step
        mean = group["mean"].to_numpy() * 100
        ci = np.nan_to_num(group["ci"].to_numpy() * 100)
        # Bars clipped to [0, 100]: a fraction of queries cannot leave it (t-intervals of few seeds can).
        yerr = np.vstack([mean - np.maximum(mean - ci, 0.0), np.minimum(mean + ci, 100.0) - mean])
        ax.errorbar(ks, mean, yerr=yerr, capsize=4, elinewidth=1.4, capthick=1.4, markersize=6, linewidth=1.6,
                    label=_label(keys, values), **line_style(index))
    if log_x:
        ax.set_xscale("log")
    elif len(all_ks) == 1:
        ax.set_xlim(all_ks[0] - 0.5, all_ks[0] + 0.5)
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set_xlabel("K")
    ax.set_ylabel(f"{metric_key(metric, None).capitalize()}@K (%)")
    ax.set_title(f"{dataset}, layer {layer}: {_seeds_note(stats['n'])}", fontsize=10)
    ax.set_ylim(top=min(ax.get_ylim()[1], 100.0 + 2.0), bottom=max(ax.get_ylim()[0], 0.0 - 2.0))
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return save_figure(fig, stem)


def plot_heatmap(
    frame: pd.DataFrame,
    stem: Path,
    *,
    dataset: str,
    row_key: str = "loss.params.alpha",
    col_key: str = "loss.params.beta",
    metric: str = "recall",
    k: int = 1,
    layer: str = "emb",
) -> list[Path]:
    """Mean metric@k over a grid of two config keys (SGML Figs. 7/8), each cell annotated mean ± CI."""
    if row_key not in frame.columns or col_key not in frame.columns:
        return []
    data = frame[
        (frame["dataset"] == dataset)
        & (frame["layer"] == layer)
        & (frame["metric"] == metric)
        & (frame["k"] == k)
    ]
    data = data[data[row_key].notna() & data[col_key].notna()]
    if data.empty or data[row_key].nunique() < 2 or data[col_key].nunique() < 2:
        return []
    # One panel per combination of the other varying keys (e.g. per loss): never average configurations;
    # only panels where both keys vary (a tune's methods each fix alpha and beta once: no grid, no plot).
    others = _varying_keys(data, exclude=(row_key, col_key, "seed"))
    panels = list(data.groupby(others, dropna=False, sort=True)) if others else [((), data)]
    panels = [(v, p) for v, p in panels if p[row_key].nunique() >= 2 and p[col_key].nunique() >= 2]
    if not panels:
        return []
    data = pd.concat([p for _, p in panels])
    n_rows, n_cols = data[row_key].nunique(), data[col_key].nunique()
    fig = Figure(figsize=((1.2 * n_cols + 2.5) * len(panels), 0.8 * n_rows + 1.8), layout="constrained")
    for index, (values, panel) in enumerate(panels):
        values = values if isinstance(values, tuple) else (values,)
        ax = fig.add_subplot(1, len(panels), index + 1)
        _heatmap_panel(fig, ax, summarize(panel, [row_key, col_key]), row_key, col_key, metric_key(metric, k))
        title = _label(others, values) if others else f"{dataset}, layer {layer}"
        ax.set_title(f"{title}: {metric_key(metric, k)}", fontsize=9)
    fig.suptitle(f"{dataset}, layer {layer}: {_seeds_note(summarize(data, [row_key, col_key, *others])['n'])}", fontsize=10)
    return save_figure(fig, stem)


def _heatmap_panel(fig: Figure, ax: Any, stats: pd.DataFrame, row_key: str, col_key: str, label: str) -> None:
    means = stats.pivot(index=row_key, columns=col_key, values="mean").sort_index().sort_index(axis=1)
    cis = stats.pivot(index=row_key, columns=col_key, values="ci").reindex_like(means)
    image = ax.imshow(means.to_numpy() * 100, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label=f"{label} (%)")
    ax.set_xticks(range(means.shape[1]), [str(c) for c in means.columns])
    ax.set_yticks(range(means.shape[0]), [str(r) for r in means.index])
    ax.set_xlabel(short_key(col_key))
    ax.set_ylabel(short_key(row_key))
    lo, hi = np.nanmin(means.to_numpy()), np.nanmax(means.to_numpy())
    for i in range(means.shape[0]):
        for j in range(means.shape[1]):
            mean, ci = means.iat[i, j], cis.iat[i, j]
            if np.isnan(mean):
                continue
            text = f"{mean * 100:.1f}" + (f"\n±{ci * 100:.1f}" if np.isfinite(ci) else "")
            dark_cell = (mean - lo) < 0.5 * (hi - lo) if hi > lo else True
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark_cell else "black")


def plot_training_curves(
    history: pd.DataFrame, stem: Path, *, by: str = "loss.name", val_metric: str | None = None
) -> list[Path]:
    """Training loss and a validation metric per epoch: each run thin, the mean over seeds bold, per `by` group.

    Runs rather than a t-band: with 2-3 seeds the t-interval is wider than the curves' whole range. One
    legend for all panels, below them (a line keeps its colour and marker in every panel).
    """
    if history.empty or "epoch" not in history.columns:
        return []
    val_columns = [c for c in history.columns if c.startswith("val:")]
    if val_metric is None and val_columns:
        val_metric = "val:recall@1" if "val:recall@1" in val_columns else val_columns[0]
    # Losses of different kinds have different scales: each gets its own panel (and y axis).
    losses = sorted(history["loss.name"].dropna().unique()) if "loss.name" in history.columns else []
    loss_panels: list[tuple[str, str, Any]] = (
        [("loss", f"training loss: {name}", name) for name in losses] if len(losses) > 1 else [("loss", "training loss", None)]
    )
    panels = loss_panels + ([(val_metric, f"validation {val_metric[4:]}", None)] if val_metric else [])
    keys = _line_keys(history, by) if by in history.columns and history[by].notna().any() else ["run_id"]
    groups = list(history.groupby(keys, dropna=False, sort=True))
    styles = {(v if isinstance(v, tuple) else (v,)): line_style(i) for i, (v, _) in enumerate(groups)}
    fig = Figure(figsize=(4.2 * len(panels), 3.6 + 0.22 * len(groups)), layout="constrained")
    legend: dict[str, Any] = {}
    for index, (column, title, only_loss) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        data = history[history[column].notna()] if column in history.columns else history.iloc[0:0]
        if only_loss is not None:
            data = data[data["loss.name"] == only_loss]
        if data.empty:
            ax.set_title(f"{title}: no data")
            continue
        for values, group in data.groupby(keys, dropna=False, sort=True):
            values = values if isinstance(values, tuple) else (values,)
            mean = group.groupby("epoch")[column].mean()
            n_runs = group["run_id"].nunique()
            label = _label(keys, values) + (f" (mean of {n_runs} runs)" if n_runs > 1 else "")
            style = styles[values]
            (line,) = ax.plot(mean.index, mean.to_numpy(), markersize=4, linewidth=2, label=label, **style)
            legend.setdefault(label, line)
            if n_runs > 1:
                for _, run in group.groupby("run_id"):
                    run = run.sort_values("epoch")
                    ax.plot(run["epoch"], run[column], color=style["color"], alpha=0.35, linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (mean over the epoch's batches)" if column == "loss" else f"{column[4:]} (validation)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="outside lower center", fontsize=8, frameon=False,
                   ncol=max(1, min(3, len(legend))))
    return save_figure(fig, stem)


def _pick_attribute(attributes: np.ndarray, names: Sequence[str], wanted: str | None) -> tuple[int, str]:
    """The requested attribute, else the most balanced one (closest to half present): the most informative colouring."""
    if wanted is not None:
        if wanted not in names:
            raise UsageError(
                f"--attribute '{wanted}' is not an attribute of this run's dataset{did_you_mean(wanted, names)} "
                f"Known: {', '.join(names)}"
            )
        return list(names).index(wanted), wanted
    balance = np.abs((attributes > 0).mean(axis=0) - 0.5)
    index = int(np.argmin(balance))
    return index, names[index] if len(names) > index else f"attribute {index}"


def project_embeddings(emb: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """2-D projection of L2-normalised embeddings: pca | tsne | umap (umap-learn must be installed)."""
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    if method == "umap":
        import umap  # optional dependency

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    raise ValueError(f"unknown projection '{method}' (pca, tsne, umap)")


def available_projections() -> list[str]:
    methods = ["pca", "tsne"]
    try:
        import umap  # noqa: F401
    except ImportError:
        return methods
    return [*methods, "umap"]


def plot_embedding(
    sample: Path,
    stem: Path,
    *,
    methods: Sequence[str] | None = None,
    attribute: str | None = None,
    max_points: int = 1500,
    seed: int = 0,
    max_classes: int = 12,
) -> list[Path]:
    """Projections of `embeddings_sample.npz` coloured by class (top row: the `max_classes` largest classes
    of the sample in distinct colours, the rest grey) and by one attribute (bottom row)."""
    with np.load(sample, allow_pickle=False) as npz:
        emb, labels = npz["emb"].astype(np.float32), npz["labels"]
        attributes = npz["attributes"] if "attributes" in npz.files else None
        names = [str(n) for n in npz["attribute_names"]] if "attribute_names" in npz.files else []
    if len(emb) > max_points:  # t-SNE is quadratic: a fixed random subset keeps it to seconds
        keep = np.sort(np.random.default_rng(seed).choice(len(emb), max_points, replace=False))
        emb, labels = emb[keep], labels[keep]
        attributes = attributes[keep] if attributes is not None else None
    methods = list(methods or available_projections())
    has_attr = attributes is not None and attributes.ndim == 2 and attributes.shape[1] > 0
    if has_attr:
        assert attributes is not None  # has_attr says so; for the type checker
        names = names or [f"attribute {i}" for i in range(attributes.shape[1])]
        attr_index, attr_name = _pick_attribute(attributes, names, attribute)
        present = attributes[:, attr_index] > 0
    n_rows = 2 if has_attr else 1
    fig = Figure(figsize=(4.2 * len(methods), 4 * n_rows))
    shown, n_classes = largest_classes(labels, max_classes)
    coloured = np.isin(labels, shown)
    what = f"all {n_classes} classes" if len(shown) == n_classes else f"{len(shown)} largest of {n_classes:,} classes; rest grey"
    for col, method in enumerate(methods):
        xy = project_embeddings(emb, method, seed)
        ax = fig.add_subplot(n_rows, len(methods), col + 1)
        ax.scatter(xy[~coloured, 0], xy[~coloured, 1], c="#d0d0d0", s=4, linewidths=0)
        for i, cls in enumerate(shown):
            mask = labels == cls
            ax.scatter(xy[mask, 0], xy[mask, 1], color=class_colour(i), s=9, linewidths=0, label=f"class {cls}")
        ax.set_title(f"{PROJECTION_NAMES[method]} — by class ({what})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if has_attr:
            ax = fig.add_subplot(n_rows, len(methods), len(methods) + col + 1)
            for flag, colour, text in ((False, "#bbbbbb", "absent"), (True, "#d62728", "present")):
                mask = present == flag
                ax.scatter(xy[mask, 0], xy[mask, 1], c=colour, s=6, linewidths=0, label=f"{attr_name} {text}")
            ax.set_title(f"{PROJECTION_NAMES[method]} — by attribute '{attr_name}'", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=7, markerscale=2, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    fig.suptitle(f"{run_title(sample.parent)}: {len(emb)} embeddings (cosine / L2-normalised)", fontsize=10)
    return save_figure(fig, stem)


def class_colour(index: int) -> Any:
    """The index-th of 20 distinct class colours (tab20)."""
    from matplotlib import colormaps

    return colormaps["tab20"](index % 20)


def largest_classes(labels: np.ndarray, limit: int) -> tuple[list[Any], int]:
    """The `limit` classes with the most points (ties: the smaller label first) and the number of classes.

    >>> largest_classes(np.array([5, 5, 5, 2, 2, 9, 9, 1]), 2)
    ([5, 2], 4)
    """
    values, counts = np.unique(labels, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))
    return [values[i].item() for i in order[:limit]], len(values)


def run_title(run_dir: Path) -> str:
    """What a run is, for a figure title: dataset, backbone, loss, sampler and seed from its config.yaml
    (its folder name when there is none)."""
    from dmlbench.config.io import load_yaml
    from dmlbench.rundir import CONFIG

    try:
        config = load_yaml((run_dir / CONFIG).read_text()) or {}
    except (OSError, ValueError):
        return run_dir.name
    parts = [
        str(config.get("name") or ""),
        str((config.get("data") or {}).get("dataset", "")),
        str((config.get("model") or {}).get("backbone", "")),
        str((config.get("loss") or {}).get("name", "")),
        str((config.get("sampler") or {}).get("name", "")),
        f"seed {config.get('seed', 0)}",
    ]
    return ", ".join(p for p in parts if p) + f" ({run_dir.name})"
