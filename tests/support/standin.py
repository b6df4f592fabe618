"""A trainer stand-in for the sweep machinery tests (`--runner standin:standin_train_run`): cells run
it in their own processes, so it lives at the top of tests/ (on PYTHONPATH there)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dmlbench import rundir
from dmlbench.config import Config, dump_config, run_id
from dmlbench.errors import DatasetError


def standin_train_run(cfg: Config, run_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Follows train_run's folder contract without training: config first, one history row and a
    checkpoint per epoch (`STANDIN_EPOCH_S` seconds each), resume after the last checkpointed
    epoch, metrics.json then DONE. Raises DatasetError when the data root does not exist."""
    run_dir = Path(run_dir)
    if rundir.is_done(run_dir):
        return rundir.read_json(run_dir / rundir.METRICS)
    if not Path(cfg.data.root).exists():
        raise DatasetError(f"dataset folder not found: {cfg.data.root}")
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(run_dir / rundir.CONFIG, dump_config(cfg))
    ckpt = run_dir / rundir.CHECKPOINT
    start = rundir.read_json(ckpt)["epoch"] if ckpt.is_file() else 0
    if start:
        rundir.append_log(run_dir, f"resuming {run_dir.name} after epoch {start}")
    history = [r for r in rundir.read_history(run_dir) if r["epoch"] <= start]
    for epoch in range(start + 1, cfg.train.epochs + 1):
        time.sleep(float(os.environ.get("STANDIN_EPOCH_S", "0")))
        history.append({"epoch": epoch, "pid": os.getpid()})
        rundir.write_history(run_dir, history)
        rundir.atomic_write_json(ckpt, {"epoch": epoch})
    result = {"run_id": run_id(cfg), "epoch": cfg.train.epochs, "layers": {}}
    rundir.atomic_write_json(run_dir / rundir.METRICS, result)
    rundir.mark_done(run_dir, {"run_id": result["run_id"]})
    return result
