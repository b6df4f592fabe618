"""Sweep files and runners for the sweep machinery tests: a small grid, the stand-in trainer (as a
`--runner` for cell processes) and the stand-in inside the run folder's real lease."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dmlbench import rundir
from dmlbench.config import Config
from dmlbench.rundir.lease import Lease
from support.paths import REPO, tests_env

STANDIN = "support.standin:standin_train_run"  # cell processes import it with tests/ on PYTHONPATH
LEASED_STANDIN = "support.sweeps:leased_standin"


def sweep_dict(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    data_root = tmp_path / "data"
    data_root.mkdir(exist_ok=True)
    return {
        "name": "t",
        "output_dir": str(tmp_path / "out"),
        "base": {"data": {"root": str(data_root)}, "train": {"epochs": 2}},
        "grid": {"seed": [0, 1], "loss.params.alpha": [2.0, 3.0]},
        "executor": {"kind": "inline"},
        **extra,
    }


TRAINED = "trained.txt"  # one line per process that trained the folder


def leased_standin(cfg: Config, run_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    from support.standin import standin_train_run

    run_dir = Path(run_dir)
    if rundir.is_done(run_dir):
        return rundir.read_json(run_dir / rundir.METRICS)
    run_dir.mkdir(parents=True, exist_ok=True)
    with Lease(run_dir):
        if rundir.is_done(run_dir):
            return rundir.read_json(run_dir / rundir.METRICS)
        with open(run_dir / TRAINED, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return standin_train_run(cfg, run_dir, progress=progress)


def start_sweep(sweep_file: Path, epoch_s: float = 1.0) -> subprocess.Popen:
    env = tests_env(STANDIN_EPOCH_S=str(epoch_s))
    return subprocess.Popen(
        [sys.executable, "-m", "dmlbench", "sweep", str(sweep_file), "--runner", LEASED_STANDIN],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
