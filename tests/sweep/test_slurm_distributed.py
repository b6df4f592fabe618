"""A data-parallel sweep cell on the real local SLURM cluster: 2 tasks (submitit's distributed
environment, gloo), preempted once, requeued, resumed from its checkpoint, finished.

Skipped like tests/sweep/test_slurm.py when the cluster is not up (unless DMLBENCH_REQUIRE_SLURM=1).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.slurm import LOCAL_PROFILE, preempt_step0_once, settled, wait_for

from dmlbench import rundir
from dmlbench.sweep import run_sweep, sweep_from_dict

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # real SLURM jobs: minutes, not the edit loop


@pytest.mark.usefixtures("slurm_cluster")
def test_two_task_cell_preempted_once_finishes(tmp_path: Path, tiny_synthshop: Path) -> None:
    from support.configs import tiny_run_config

    base = tiny_run_config(
        tiny_synthshop,
        tmp_path / "unused",
        train={"epochs": 3, "lr": 1e-3, "distributed": True},
        sampler={"name": "batch-wise", "params": {"classes_per_batch": 6, "images_per_class": 3}, "batches_per_epoch": 3},
    )
    sweep = sweep_from_dict(
        {
            "name": "ddp",
            "output_dir": str(tmp_path / "sweep"),
            "base": base,
            # the profile's resources per task, two tasks on the node: one process each
            "executor": {"kind": "slurm", "profile": LOCAL_PROFILE, "tasks_per_node": 2, "nodes": 1, "mem_gb": 4},
        }
    )
    report = run_sweep(sweep)
    (cell,) = report.cells
    task = report.submitted[cell.run_id]
    array = task.split("_")[0]
    script = (tmp_path / "sweep" / "submitit" / array / f"{array}_submission.sh").read_text()
    assert "--ntasks-per-node=2" in script and "--kill-on-bad-exit=1" in script, script

    folder = sweep.runs_dir / cell.run_id
    end = time.time() + 600
    while not (folder / rundir.CHECKPOINT).is_file():
        assert time.time() < end and not rundir.is_done(folder), "the cell never checkpointed an epoch"
        time.sleep(0.5)
    # Preempt step 0 (both tasks get the signal; task 0 checkpoints and requeues), once: see test_slurm.py
    # for why scancel is stopped as soon as the cell logs its requeue.
    preempt_step0_once(task, folder)

    (status,) = wait_for(sweep, report.cells, settled, timeout=900)
    log = (folder / rundir.LOG).read_text()
    assert status.state == "done", (status.state, status.error, log)
    assert log.count("requeueing") == 1 and "(restart 1)" in log and "(restart 2)" not in log, log
    assert log.count("data-parallel: 2 processes") == 2, log  # before and after the requeue
    assert "resuming" in log and "after epoch" in log, log
    assert log.count("sweep: SLURM job") == 2, log  # one task writes the folder, not both
    assert [row["epoch"] for row in rundir.read_history(folder)] == [1, 2, 3]
    assert rundir.read_json(folder / rundir.METRICS)["epoch"] == 3
    assert not (folder / rundir.ERROR).exists()
