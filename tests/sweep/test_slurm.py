"""Sweeps on a real SLURM cluster (`slurm/local-cluster up`): job arrays, a failing cell, preemption
with resume, `status`, `cancel`, and an idempotent rerun.

Skipped when `sinfo` is missing or the controller does not answer, unless DMLBENCH_REQUIRE_SLURM=1
(CI brings the cluster up and sets it), in which case a missing cluster is a failure.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest
from support.cli import run_cli
from support.paths import TESTS
from support.slurm import LOCAL_PROFILE, preempt_step0_once, settled, wait_for
from support.sweeps import STANDIN

from dmlbench import rundir
from dmlbench.sweep import Sweep, cancel_sweep, run_sweep, sweep_from_dict

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # real SLURM jobs: minutes, not the edit loop



def finished_files(sweep: Sweep) -> dict[Path, tuple[int, bytes]]:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sweep.runs_dir.glob("*/*") if p.name in ("DONE", "metrics.json")}


def test_sweep_on_slurm_fail_preempt_status_rerun(slurm_cluster: None, tmp_path: Path, tiny_synthshop: Path) -> None:
    from support.cli import run_cli
    from support.configs import tiny_run_config

    # a DataLoader worker per cell: the preemption signal reaches the worker too (same process group)
    base = tiny_run_config(tiny_synthshop, tmp_path / "unused", train={"epochs": 1, "lr": 1e-3, "num_workers": 1})
    missing = tmp_path / "no-such-dataset"
    sweep = sweep_from_dict(
        {
            "name": "ci",
            "output_dir": str(tmp_path / "sweep"),
            "base": base,
            "grid": {"seed": [0, 1], "train.epochs": [1, 4]},
            "include": [{"data.root": str(missing)}],  # passes validation, fails at run time
            "executor": {"kind": "slurm", "profile": LOCAL_PROFILE},
        }
    )
    report = run_sweep(sweep)
    cells = report.cells
    assert len(cells) == 5 and set(report.submitted) == {c.run_id for c in cells}
    assert len({j.split("_")[0] for j in report.submitted.values()}) == 1  # one job array
    assert rundir.read_json(tmp_path / "sweep" / "jobs.json") == report.submitted
    array = next(iter(report.submitted.values())).split("_")[0]
    script = (tmp_path / "sweep" / "submitit" / array / f"{array}_submission.sh").read_text()
    assert 'trap "" USR1 USR2; exec' in script, script  # cells start with preemption signals ignored

    # preempt the 4-epoch cell once its first epoch is checkpointed
    target = next(c for c in cells if c.grid == {"seed": 0, "train.epochs": 4})
    folder = sweep.runs_dir / target.run_id
    end = time.time() + 600
    while not (folder / rundir.CHECKPOINT).is_file():
        assert time.time() < end and not rundir.is_done(folder), "target cell never checkpointed an epoch"
        time.sleep(0.5)
    # Signal the job's step 0 (the task running Python) once. scancel retries for about a minute
    # (sleeping 5 s, 6 s, ...) whenever SLURM answers "Job can not be altered now", as it does for an
    # array task with pending siblings or a job that is requeueing itself, and every retry delivers
    # the signal again: the first preempts the cell; a later one would preempt the restarted cell.
    # So scancel is stopped as soon as the cell logs its requeue.
    task = report.submitted[target.run_id]
    preempt_step0_once(task, folder)

    statuses = wait_for(sweep, cells, settled, timeout=900)
    by_id = {s.run_id: s for s in statuses}
    bad = cells[-1].run_id
    assert [by_id[c.run_id].state for c in cells] == ["done"] * 4 + ["failed"], [(s.state, s.error) for s in statuses]
    assert by_id[bad].error is not None and str(missing) in by_id[bad].error

    log = (folder / rundir.LOG).read_text()
    # one signal, one requeue (dmlbench.sweep.PreemptOnce ignores repeats inside one job)
    assert log.count("requeueing") == 1 and "(restart 1)" in log and "(restart 2)" not in log, log
    assert "resuming" in log and "after epoch" in log, log  # the trainer resumed from its checkpoint
    assert [row["epoch"] for row in rundir.read_history(folder)] == [1, 2, 3, 4]
    assert rundir.read_json(folder / rundir.METRICS)["epoch"] == 4

    status = run_cli("status", str(tmp_path / "sweep"))
    assert status.returncode == 0 and status.stdout.strip().endswith("4 done, 1 failed"), status.stdout
    assert str(missing) in status.stdout

    before = finished_files(sweep)
    assert len(before) == 8
    again = run_sweep(sweep_from_dict(sweep.to_dict()))
    assert list(again.submitted) == [bad]  # only the failed cell is submitted again
    wait_for(sweep, cells, lambda st: settled(st) and not any(s.job_id == again.submitted[bad] and s.state != "failed" for s in st), 300)
    assert finished_files(sweep) == before  # no finished result was rewritten


def test_cancel_stops_queued_and_running_cells(slurm_cluster: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the stand-in trainer (tests/support/standin.py) keeps cells busy for minutes without using the CPU
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("STANDIN_EPOCH_S", "5")
    (tmp_path / "data").mkdir()
    sweep = sweep_from_dict(
        {
            "name": "cancel-me",
            "output_dir": str(tmp_path / "sweep"),
            "base": {"data": {"root": str(tmp_path / "data")}, "train": {"epochs": 60}},
            "grid": {"seed": [0, 1, 2]},
            "executor": {"kind": "slurm", "profile": LOCAL_PROFILE},
        }
    )
    report = run_sweep(sweep, runner=STANDIN)
    wait_for(sweep, report.cells, lambda st: any(s.state == "running" for s in st), timeout=120)
    cancelled = cancel_sweep(sweep.output_dir)
    assert sorted(cancelled) == sorted(report.submitted.values())
    statuses = wait_for(sweep, report.cells, lambda st: all(s.state == "cancelled" for s in st), timeout=120)
    assert {s.error for s in statuses} == {"SLURM job CANCELLED"}
    assert cancel_sweep(sweep.output_dir) == []  # nothing left to cancel
    # Cancelled cells are not finished: a re-run of the sweep submits them again.
    dry = run_sweep(sweep, dry_run=True, runner=STANDIN)
    assert [s.state for s in dry.before] == ["cancelled"] * 3 and not dry.submitted
    shown = run_cli("sweep", str(sweep.output_dir / "sweep.yaml"), "--dry-run", "--runner", STANDIN)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("would submit") == 4 and "before: 3 cancelled; would submit 3" in shown.stdout
    status = run_cli("status", str(sweep.output_dir))
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip().endswith("3 cancelled") and status.stdout.count("SLURM job CANCELLED") == 3


def test_preemption_signal_during_startup_does_not_kill_the_cell(slurm_cluster: None, tmp_path: Path, tiny_synthshop: Path) -> None:
    """Until submitit installs its handler, USR1's default action would kill Python: a signal in the
    first second of a cell (a retry of scancel reaching a requeued cell, say) failed it with
    "SLURM job FAILED". Cells start with the preemption signals ignored (`preemption_safe_python`)."""
    from support.configs import tiny_run_config

    sweep = sweep_from_dict(
        {
            "name": "early-signal",
            "output_dir": str(tmp_path / "sweep"),
            "base": tiny_run_config(tiny_synthshop, tmp_path / "unused", train={"epochs": 1}),
            "executor": {"kind": "slurm", "profile": LOCAL_PROFILE},
        }
    )
    report = run_sweep(sweep)
    task = next(iter(report.submitted.values()))
    end = time.time() + 300
    while True:  # signal the cell's step the moment it exists, long before Python has imported torch
        assert time.time() < end, f"cell {task} never started"
        job_id = subprocess.run(["squeue", "-h", "-t", "R", "-j", task, "-o", "%A"], capture_output=True, text=True).stdout.strip()
        if job_id:
            with contextlib.suppress(subprocess.TimeoutExpired):  # no scancel retries into a later phase
                if subprocess.run(["scancel", "--signal=USR1", f"{job_id}.0"], capture_output=True, timeout=3).returncode == 0:
                    break
        time.sleep(0.05)
    (status,) = wait_for(sweep, report.cells, settled, timeout=300)
    assert status.state == "done", (status.state, status.error)
