"""What a tune folder shows: `dmlbench status` (trials done / running / best per method, the final
stage's cells), and `dmlbench collect` (the final stage's tables, the protocol table, and the
optimisation history per method)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
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
    """Optimisation history: each method's trial values (dots) and best so far (line), one panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if frame.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (method, part) in enumerate(frame.groupby("method", sort=True)):
        color = f"C{i}"
        ax.scatter(part["trial"], part["value"], s=12, alpha=0.5, color=color)
        ax.plot(part["trial"], part["best_so_far"], color=color, label=method)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} (mean over validation folds)")
    ax.set_title("Optimisation history (same trial budget per method)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in out:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return out


def protocol_table(folder: Path, results: pd.DataFrame) -> str:
    """The comparison table with its protocol stated above it: best validation value and the test
    metric (mean +- std over the seeds) of each method's best configuration."""
    spec = load_spec(folder)
    protocol = rundir.read_json(folder / "protocol.json") if (folder / "protocol.json").is_file() else {"methods": {}}
    metric, k = ("map_r", None) if spec.metric == "map@r" else (spec.metric.split("@")[0], int(spec.metric.split("@")[1]) if "@" in spec.metric else None)
    header = (
        f"Protocol: TPE, {spec.trials} trials per method (same budget), objective {spec.metric} ({spec.layer}) = mean over "
        f"{spec.folds} class-disjoint validation folds of the training classes; test never read while tuning; "
        f"best config retrained on the full training split with {spec.seeds} seeds, evaluated once on test."
    )
    lines = [header, "", f"| method | trials done/failed | best val {spec.metric} | test {spec.metric} | test R@1 | seeds |", "|---|---|---|---|---|---|"]
    for method in spec.methods:
        info = protocol["methods"].get(method.name, {})
        sel = results[(results.get("name") == method.name) & (results["layer"] == spec.layer)] if not results.empty else results
        cells = []
        for m, kk in ((metric, k), ("recall", 1)):
            vals = sel[(sel["metric"] == m) & ((sel["k"] == kk) if kk is not None else sel["k"].isna())]["value"] if not sel.empty else []
            cells.append(f"{np.mean(vals):.4f} ± {np.std(vals):.4f}" if len(vals) else "-")
        seeds = len(set(sel["run_id"])) if not sel.empty else 0
        done = f"{info.get('done', 0)}/{info.get('failed', 0)}"
        lines.append(f"| {method.name} | {done} | {_fmt(info.get('best'))} | {cells[0]} | {cells[1]} | {seeds} |")
    return "\n".join(lines)


def write_tune_report(folder: Path, out_dir: Path | None, plots: bool = True) -> tuple[str, list[Path]]:
    """collect on a tune folder: the final stage's report, the protocol table and the history plot."""
    from dmlbench.results.report import write_report

    out_dir = out_dir or folder / "report"
    final = folder / FINAL_DIR
    written: list[Path] = []
    frame = pd.DataFrame(columns=["name", "layer", "metric", "k", "value", "run_id"])
    if final.is_dir():
        report = write_report(final, out_dir, plots=plots)
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
    rundir.atomic_write_text(out_dir / "protocol_table.md", table + "\n")
    written.append(out_dir / "protocol_table.md")
    return table, written
