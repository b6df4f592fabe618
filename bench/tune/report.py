"""What a tune folder shows: `dmlbench status` (trials done / running / best per method, the final
stage's cells), and `dmlbench collect` (the final stage's tables, the protocol table, and the
optimisation history per method)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from dmlbench import rundir
from dmlbench.tune.spec import load_spec
from dmlbench.tune.study import existing_studies, trial_counts

FINAL_DIR = "final"  # also dmlbench.tune.loop.FINAL_DIR (not imported: status must not import the loop)


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def tune_status_data(folder: Path) -> dict[str, Any]:
    """What `status` shows of a tune folder, as data (`status --json`): the protocol, per method the
    trials planned / asked / done / failed / running and the best so far, and the final stage's cells."""
    spec = load_spec(folder)
    trials = existing_studies(folder)
    methods = [{"method": m.name, "planned": spec.trials, **trial_counts(trials.get(m.name, []))} for m in spec.methods]
    final = folder / FINAL_DIR
    cells = None
    if (final / "sweep.yaml").is_file():
        from dmlbench.sweep.status import sweep_status

        cells = [s.__dict__ for s in sweep_status(final)[1]]
    return {
        "tune": spec.name, "folder": str(folder), "trials": spec.trials, "folds": spec.folds,
        "objective": {"metric": spec.metric, "layer": spec.layer}, "seeds": spec.seeds,
        "methods": methods, "final_cells": cells,
    }  # fmt: skip


def tune_status(folder: Path) -> str:
    """One line per method (planned / done / failed / running / best so far), then the final stage."""
    data = tune_status_data(folder)
    rows = [["method", "trials", "done", "failed", "running", f"best {data['objective']['metric']} (val)", "best params"]]
    for m in data["methods"]:
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}" for k, v in m["best_params"].items())
        rows.append([m["method"], f"{m['asked']}/{m['planned']}", m["done"], m["failed"], m["running"], _fmt(m["best"]), params])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [f"tune '{data['tune']}' in {folder}: {data['trials']} trials x {data['folds']} folds per method, objective {data['objective']['metric']} ({data['objective']['layer']}) on validation folds"]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if data["final_cells"] is not None:
        from dmlbench.sweep.status import count_states

        summary = count_states(cell["state"] for cell in data["final_cells"])
        lines.append(f"final stage ({data['seeds']} seeds per method, on test): {summary}")
    else:
        lines.append("final stage: not started (runs once every method has used its trials)")
    return "\n".join(lines)


def history_frame(folder: Path) -> pd.DataFrame:
    """One row per finished trial: method, trial number, value (NaN when failed), best so far."""
    rows: list[dict[str, Any]] = []
    for method, trials in existing_studies(folder).items():
        best = -math.inf
        for t in sorted(trials, key=lambda t: t.number):
            value = t.value if t.value is not None else math.nan
            if not math.isnan(value):
                best = max(best, value)
            rows.append({"method": method, "trial": t.number, "state": t.state.name, "value": value, "best_so_far": best if best > -math.inf else math.nan})
    return pd.DataFrame(rows, columns=["method", "trial", "state", "value", "best_so_far"])


def plot_history(frame: pd.DataFrame, stem: Path, metric: str) -> list[Path]:
    """Optimisation history: each method's trial values (markers) and best so far (line), one panel; each
    method its own colour, marker and dash, the legend right of the axes."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from dmlbench.results.plots import line_style, save_figure

    if frame.empty:
        return []
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for i, (method, part) in enumerate(frame.groupby("method", sort=True)):
        style = line_style(i)
        ax.scatter(part["trial"], part["value"], s=18, alpha=0.6, color=style["color"], marker=style["marker"])
        improved = [i for i, (b, v) in enumerate(zip(part["best_so_far"], part["value"], strict=True)) if b == v]
        ax.plot(part["trial"], part["best_so_far"], color=style["color"], linestyle=style["linestyle"], linewidth=1.8,
                marker=style["marker"], markevery=improved, label=f"{method} (best {part['value'].max():.4f})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} (mean over validation folds)")
    ax.set_title("Optimisation history (same trial budget per method)\nmarkers: trials; line: best so far", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    return save_figure(fig, stem)


TUNE_TABLES = Path(__file__).resolve().parents[1] / "results" / "tune_tables.yaml"


def _objective(metric: str) -> tuple[str, int | None]:
    from dmlbench.results.collect import split_metric

    return split_metric(metric)


def _per_seed(results: pd.DataFrame, method: str, layer: str, metric: str) -> pd.Series:
    """One method's final-stage values of `metric` on `layer`, indexed by seed."""
    name, k = _objective(metric)
    if results.empty:
        return pd.Series(dtype=float)
    sel = results[(results["name"] == method) & (results["layer"] == layer) & (results["metric"] == name)]
    sel = sel[sel["k"].isna()] if k is None else sel[sel["k"] == k]
    return sel.groupby("seed")["value"].mean().sort_index()


def verdicts(results: pd.DataFrame, methods: list[str], layer: str, metric: str) -> dict[str, dict[str, Any]]:
    """Each method against the best one (highest mean test `metric`): the difference, its interval, MDE and
    verdict by compare's statistics (paired t over the shared final-stage seeds, else Welch), Bonferroni
    over the m - 1 comparisons. {} when fewer than two methods have results."""
    from dmlbench.results import power
    from dmlbench.results.compare import verdict

    values = {m: _per_seed(results, m, layer, metric) for m in methods}
    values = {m: v for m, v in values.items() if len(v)}
    if len(values) < 2:
        return {}
    best = max(values, key=lambda m: (float(values[m].mean()), -methods.index(m)))
    family = len(values) - 1
    alpha = 0.05 / family
    out: dict[str, dict[str, Any]] = {best: {"best": best, "verdict": "best", "family": family}}
    for method, v in values.items():
        if method == best:
            continue
        b = values[best]
        shared = v.index.intersection(b.index)
        paired = len(shared) >= 2 and len(shared) == len(v) == len(b)
        est = power.paired(v[shared].to_numpy(), b[shared].to_numpy()) if paired else power.welch(v.to_numpy(), b.to_numpy())
        low, high = est.interval(1 - alpha)
        out[method] = {
            "best": best, "diff": est.diff, "ci_low": low, "ci_high": high, "mde": power.mde(est.se, est.df, alpha=alpha),
            "test": est.method, "n": len(shared) if paired else min(len(v), len(b)), "verdict": verdict(low, high),
            "family": family,
        }  # fmt: skip
    return out


def _tuned(params: dict[str, Any]) -> str:
    from dmlbench.results.tables import format_value

    return ", ".join(f"{k.rsplit('.', 1)[-1]}={format_value(v)}" for k, v in sorted(params.items()))


def protocol_header(folder: Path) -> str:
    spec = load_spec(folder)
    return (
        f"Protocol: TPE, {spec.trials} trials per method (same budget), objective {spec.metric} ({spec.layer}) = mean over "
        f"{spec.folds} class-disjoint validation folds of the training classes; test never read while tuning; "
        f"best config retrained on the full training split with {spec.seeds} seeds, evaluated once on test."
    )


def protocol_table(folder: Path, results: pd.DataFrame) -> Any:
    """The comparison table (a `Table` of dmlbench.results.tables, one row per method): the test metrics
    (mean ± 95% CI over the final-stage seeds), then the trials, the best validation value, the searched
    dimensions and tuned values, and the verdict against the best method. None without final results."""
    from dmlbench.results.tables import TableSpec, build_table, readable_metric

    spec = load_spec(folder)
    protocol = rundir.read_json(folder / "protocol.json") if (folder / "protocol.json").is_file() else {"methods": {}}
    metrics = list(dict.fromkeys([spec.metric, "recall@1"]))
    table_spec = TableSpec.from_dict("protocol", {
        "title": "Tuned methods on test (final stage)", "rows": ["name"], "headers": {"name": "method"},
        "columns": "metric", "metrics": metrics, "layer": spec.layer, "show_fixed_keys": False, "min_rows": 1,
        "row_order": [m.name for m in spec.methods],
    })  # fmt: skip
    if results.empty or "name" not in results.columns:
        return None
    datasets = results["dataset"].dropna().unique()
    table = build_table(results, table_spec, str(datasets[0])) if len(datasets) else None
    if table is None:
        return None
    names = [m.name for m in spec.methods]
    found = verdicts(results, names, spec.layer, spec.metric)
    short = readable_metric(spec.metric)
    rows: dict[str, dict[tuple[Any, ...], str]] = {"trials done/failed": {}, f"val {short}": {}, "searched": {}, "tuned": {}}
    versus = f"Δ {short} vs best [CI]"
    rows |= {versus: {}, "MDE": {}, "verdict": {}}
    for method in spec.methods:
        info = protocol["methods"].get(method.name, {})
        key = (method.name,)
        rows["trials done/failed"][key] = f"{info.get('done', 0)}/{info.get('failed', 0)}"
        best_val = info.get("best")
        rows[f"val {short}"][key] = f"{best_val * table_spec.scale:.1f}" if best_val is not None and math.isfinite(best_val) else "–"
        rows["searched"][key] = str(len(method.space))
        rows["tuned"][key] = _tuned(info.get("best_params", {})) or "–"
        v = found.get(method.name)
        if v is None:
            continue
        if v["verdict"] == "best":
            rows[versus][key], rows["MDE"][key], rows["verdict"][key] = "(best)", "–", "best"
            continue
        scale = table_spec.scale
        rows[versus][key] = (
            f"{v['diff'] * scale:+.1f} [{v['ci_low'] * scale:+.1f}, {v['ci_high'] * scale:+.1f}]"
            if math.isfinite(v["ci_low"]) else f"{v['diff'] * scale:+.1f} [no CI]"
        )
        rows["MDE"][key] = f"{v['mde'] * scale:.1f}" if math.isfinite(v["mde"]) else "–"
        rows["verdict"][key] = v["verdict"]
    table.extra_columns = list(rows.items())
    family = next(iter(found.values()))["family"] if found else 0
    table.notes.append(
        f"{protocol_header(folder)} searched: dimensions of each method's search space (train.lr and the loss's "
        "parameters, docs/tuning.md); tuned: its best trial's values; val: best mean over the validation folds."
        + (
            f" Verdict: each method against the best by test {spec.metric} (its row says best), paired t over the "
            f"shared seeds (Welch otherwise), Bonferroni over {family} comparison(s) (intervals at "
            f"{100 - 5 / family:.4g}%); MDE at 80% power; the query sample's noise is not included "
            "(`dmlbench compare` adds it for Recall@1)."
            if found else ""
        )
    )
    return table


def write_tune_report(folder: Path, out_dir: Path | None, plots: bool = True) -> tuple[str, list[Path]]:
    """collect on a tune folder: the final stage's report (one row per method), the protocol table with
    verdicts (Markdown, LaTeX, CSV) and the optimisation history."""
    from dmlbench.results.report import write_report
    from dmlbench.results.table_render import to_markdown, write_tables
    from dmlbench.results.tables import load_specs

    out_dir = out_dir or folder / "report"
    final = folder / FINAL_DIR
    written: list[Path] = []
    frame = pd.DataFrame(columns=["name", "dataset", "layer", "metric", "k", "value", "run_id", "seed"])
    if final.is_dir():
        report = write_report(final, out_dir, specs=load_specs(TUNE_TABLES), plots=plots, by="name")
        written += report.files
        frame = report.collection.frame
    history = history_frame(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    history.to_csv(out_dir / "optimisation_history.csv", index=False)
    written.append(out_dir / "optimisation_history.csv")
    spec = load_spec(folder)
    if plots:
        written += plot_history(history, out_dir / "plots" / "optimisation_history", spec.metric)
    table = protocol_table(folder, frame)
    text = to_markdown(table) if table is not None else protocol_header(folder) + "\n\n(no finished final-stage runs yet)"
    if table is not None:
        written += write_tables([table], out_dir / "tables")
    rundir.atomic_write_text(out_dir / "protocol_table.md", text + "\n")
    written.append(out_dir / "protocol_table.md")
    return text, written
