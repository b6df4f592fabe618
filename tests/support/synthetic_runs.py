"""Build results trees with known numbers, through the real run-folder contract (dmlbench.rundir, dmlbench.config).

Shared by test_collect.py, test_tables.py, test_compare.py and the collect benchmark. The numbers are
*inputs* chosen by the tests, so every table value and CI can be checked against an independent computation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dmlbench import rundir
from dmlbench.config import apply_overrides, config_from_dict, dump_config, run_id


def write_run(
    runs_dir: Path,
    grid: dict[str, Any],
    metrics: dict[str, dict[str, float]] | None = None,
    *,
    state: str = "done",
    sweep: str | None = "test-sweep",
    dataset: str = "synthshop",
    history: list[dict[str, Any]] | None = None,
    embeddings: dict[str, np.ndarray] | None = None,
    with_cell: bool = True,
) -> Path:
    """One run folder: `grid` are dotted config overrides (seed included); `state` done | failed | started."""
    cfg = apply_overrides(config_from_dict({"data": {"dataset": dataset}}), dict(grid))
    rid = run_id(cfg)
    run_dir = runs_dir / rid
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(run_dir / rundir.CONFIG, dump_config(cfg))
    if with_cell:
        rundir.atomic_write_json(run_dir / rundir.CELL, {"sweep": sweep, "grid": dict(grid)})
    if history is not None:
        rundir.write_history(run_dir, history)
    if embeddings is not None:
        np.savez(run_dir / "embeddings_sample.npz", **embeddings)
    if state == "failed":
        rundir.atomic_write_text(
            run_dir / rundir.ERROR,
            'Traceback (most recent call last):\n  File "x.py", line 1\nDatasetError: root not found\n',
        )
        return run_dir
    if state == "started":
        return run_dir
    layers = {
        layer: {**values, "num_queries": 100, "excluded_queries": 0}
        for layer, values in (metrics or {}).items()
    }
    rundir.atomic_write_json(
        run_dir / rundir.METRICS,
        {"run_id": rid, "dataset": dataset, "protocol": "query-gallery", "epoch": 2, "layers": layers},
    )
    rundir.mark_done(run_dir, {"run_id": rid})
    return run_dir


def recall_metrics(r1: float, r10: float | None = None) -> dict[str, float]:
    """A metrics.json layer entry with the usual keys (recall/precision@1,10, r_precision, map@r)."""
    r10 = min(1.0, r1 + 0.2) if r10 is None else r10
    return {
        "recall@1": r1,
        "recall@10": r10,
        "precision@1": r1,
        "precision@10": r1 / 2,
        "r_precision": r1 * 0.8,
        "map@r": r1 * 0.7,
    }
