"""Two `dmlbench sweep` commands on one sweep against the real SLURM cluster (`slurm/local-cluster up`):
the second started a second after the first, while its array is being submitted and starting, and a
third while the cells run. Every cell is submitted once and trained once.

Cells run `support.sweeps.leased_standin` (the stand-in trainer inside the run folder's lease)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from support.slurm import LOCAL_PROFILE, settled, wait_for
from support.sweeps import TRAINED, start_sweep

from dmlbench import rundir
from dmlbench.sweep import expand, load_sweep

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # real SLURM jobs: minutes, not the edit loop
EPOCH_S = 2.0


@pytest.mark.usefixtures("slurm_cluster")
def test_rerunning_a_starting_and_running_sweep_trains_each_cell_once(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(
        yaml.safe_dump(
            {
                "name": "twice",
                "output_dir": str(tmp_path / "sweep"),
                "base": {"data": {"root": str(tmp_path / "data")}, "train": {"epochs": 40}},
                "grid": {"seed": [0, 1, 2]},
                "executor": {"kind": "slurm", "profile": LOCAL_PROFILE},
            }
        )
    )
    # cells of 40 epochs x 2 s: still running when the third sweep comes, however slowly the CLI starts
    first = start_sweep(sweep_file, EPOCH_S)
    time.sleep(1.0)
    second = start_sweep(sweep_file, EPOCH_S)
    outputs = [proc.communicate(timeout=300) for proc in (first, second)]
    for proc, (out, err) in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0 and "Traceback" not in err, out + err
    sweep = load_sweep(sweep_file)
    cells = expand(sweep, validate=False)
    jobs = rundir.read_json(sweep.output_dir / "jobs.json")
    assert set(jobs) == {c.run_id for c in cells}
    assert "submitted 3" in outputs[0][0] + outputs[1][0] and "submitted 0" in outputs[0][0] + outputs[1][0], outputs

    # re-run once the cells train (their leases are live)
    wait_for(sweep, cells, lambda st: any(s.state == "running" for s in st), timeout=300)
    third = start_sweep(sweep_file, EPOCH_S)
    out, err = third.communicate(timeout=300)
    assert third.returncode == 0 and "submitted 0" in out, out + err
    assert rundir.read_json(sweep.output_dir / "jobs.json") == jobs  # nothing submitted twice

    statuses = wait_for(sweep, cells, settled, timeout=600)
    assert [s.state for s in statuses] == ["done"] * 3, [(s.state, s.error) for s in statuses]
    for cell in cells:
        folder = sweep.runs_dir / cell.run_id
        trainers = (folder / TRAINED).read_text().split()
        assert len(trainers) == 1, (cell.run_id, trainers)
        assert [row["epoch"] for row in rundir.read_history(folder)] == list(range(1, 41))
    array_ids = {j.split("_")[0] for j in jobs.values()}
    assert len(array_ids) == 1
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID", "-j", ",".join(array_ids)], capture_output=True, text=True)
    assert len([ln for ln in acct.stdout.splitlines() if ln.strip()]) == 3, acct.stdout  # three tasks, no others
