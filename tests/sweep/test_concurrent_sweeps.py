"""Two `dmlbench sweep` commands on the same sweep folder, the second started a second after the first
(a user re-running a sweep to "resume" it while it is still starting, or two people sharing a folder):
every cell is trained exactly once. The second sweep either sees the cell running (its lease is live)
or starts a job that finds the lease taken and steps aside ("busy"), never a second trainer.

The cells run `leased_standin`: the stand-in trainer of tests/support/standin.py (support.sweeps.leased_standin) inside the run folder's real lease,
taken exactly as `dmlbench.train.train_run` takes it (lease, then DONE re-checked), so the test takes
seconds; the real trainer holds the same lease (tests/train/test_train_e2e.py, tests/rundir/test_lease.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from support.sweeps import LEASED_STANDIN, TRAINED, start_sweep, sweep_dict

from dmlbench import rundir
from dmlbench.rundir.lease import Lease
from dmlbench.sweep import load_sweep, sweep_status


@pytest.mark.slow  # two sweep commands and six cell processes, each importing torch
def test_two_concurrent_local_sweeps_train_each_cell_once(tmp_path: Path) -> None:
    data = sweep_dict(
        tmp_path,
        grid={"seed": [0, 1, 2]},
        executor={"kind": "local", "local_parallelism": 3, "timeout_min": 5},
    )
    data["base"]["train"]["epochs"] = 4
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump(data))
    first = start_sweep(sweep_file)
    time.sleep(1.0)
    second = start_sweep(sweep_file)
    outputs = [proc.communicate(timeout=600) for proc in (first, second)]
    for proc, (out, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0 and "Traceback" not in err, out + err
    sweep = load_sweep(sweep_file)
    _, statuses = sweep_status(sweep.output_dir)
    assert [s.state for s in statuses] == ["done"] * 3
    for status in statuses:
        folder = sweep.runs_dir / status.run_id
        trainers = (folder / TRAINED).read_text().split()
        assert len(trainers) == 1, (status.run_id, trainers, outputs)  # trained exactly once
        assert [row["epoch"] for row in rundir.read_history(folder)] == [1, 2, 3, 4]
        assert {row["pid"] for row in rundir.read_history(folder)} == {int(trainers[0])}  # one writer
        assert not (folder / "lease.json").exists()


def test_a_cell_whose_folder_is_busy_steps_aside_without_an_error(tmp_path: Path) -> None:
    """A duplicate job finds the lease taken: it returns "skipped", writes no error.txt (the cell is not
    failed) and says so in run.log."""
    from dmlbench.config import config_from_dict, config_to_dict
    from dmlbench.sweep import run_cell

    cfg = config_from_dict({"data": {"root": str(tmp_path)}, "train": {"epochs": 1}})
    folder = tmp_path / "run"
    with Lease(folder):
        result = run_cell(config_to_dict(cfg), folder, LEASED_STANDIN)
    assert result["skipped"].startswith(f"{folder} is being trained by ")
    assert not (folder / rundir.ERROR).exists() and not (folder / TRAINED).exists()
    assert "sweep: not started: " in (folder / rundir.LOG).read_text()



@pytest.mark.slow  # one sweep command and two cell processes, each importing torch
def test_a_cell_another_sweeps_job_trains_keeps_that_jobs_id(tmp_path: Path) -> None:
    """A local and a SLURM sweep at once: the local sweep chose its cells before the SLURM sweep submitted
    one of them, whose job then holds the cell's lease. The local job of that cell steps aside, and
    jobs.json keeps the SLURM job's id (under the sweep's lock), not `local:PID`."""
    from dmlbench.sweep import expand
    from dmlbench.sweep.executor import record_jobs
    from dmlbench.sweep.submit import sweep_lock

    data = sweep_dict(tmp_path, grid={"seed": [0, 1]}, executor={"kind": "local", "local_parallelism": 1, "timeout_min": 5})
    data["base"]["train"]["epochs"] = 3
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump(data))
    local = start_sweep(sweep_file, epoch_s=2.0)
    sweep = load_sweep(sweep_file)
    first, second = expand(sweep, validate=False)
    deadline = time.time() + 300
    while not (sweep.runs_dir / first.run_id / "lease.json").exists():  # the first cell trains ...
        assert time.time() < deadline and local.poll() is None, local.communicate()
        time.sleep(0.1)
    with Lease(sweep.runs_dir / second.run_id):  # ... while a SLURM job starts on the second
        with sweep_lock(sweep.output_dir):  # as `dmlbench sweep` records its jobs
            record_jobs(sweep.output_dir, {second.run_id: "999999_1"})
        out, err = local.communicate(timeout=600)
    assert local.returncode == 0 and "Traceback" not in err, out + err
    assert f"busy   {second.run_id}" in out, out
    jobs = rundir.read_json(sweep.output_dir / "jobs.json")
    assert jobs[second.run_id] == "999999_1" and jobs[first.run_id].startswith("local:"), jobs
