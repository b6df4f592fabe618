"""A trainer stand-in for tuning tests: follows train_run's run-folder contract (config, metrics.json,
then DONE) in milliseconds, with a known objective so TPE has something to climb.

Its score peaks at loss alpha = 2 and lr = 1e-3 and differs slightly per fold; `STANDIN_RUN_S` makes
each run take that long (for kill-and-resume tests). It refuses to evaluate on test during tuning."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from dmlbench import rundir
from dmlbench.config import Config, dump_config, run_id


def standin_score(cfg: Config) -> float:
    alpha = float(cfg.loss.params.get("alpha", cfg.loss.params.get("margin", 2.0)))
    closeness = math.log(max(alpha, 1e-6) / 2.0) ** 2 + math.log(cfg.train.lr / 1e-3) ** 2
    return 1.0 / (1.0 + closeness) + 0.01 * cfg.data.fold


def standin_tune_run(cfg: Config, run_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if rundir.is_done(run_dir):
        return rundir.read_json(run_dir / rundir.METRICS)
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(run_dir / rundir.CONFIG, dump_config(cfg))
    time.sleep(float(os.environ.get("STANDIN_RUN_S", "0")))
    value = standin_score(cfg)
    layer = {"map@r": value, "recall@1": value, "num_queries": 10, "excluded_queries": 0}
    result = {
        "run_id": run_id(cfg),
        "dataset": "synthshop",
        "protocol": "leave-one-out" if cfg.eval.split == "val" else "query-gallery",
        "epoch": cfg.train.epochs,
        "ks": [1],
        "notes": [f"split {cfg.eval.split}"],
        "layers": {"emb": layer},
    }
    rundir.atomic_write_json(run_dir / rundir.METRICS, result)
    rundir.mark_done(run_dir, {"run_id": result["run_id"]})
    return result
