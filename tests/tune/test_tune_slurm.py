"""`dmlbench tune` on the real local SLURM cluster (`slurm/local-cluster up`): trials as job arrays, a
tune killed mid-study (its jobs keep running in SLURM) and re-run: it waits for the queued cells
instead of submitting them again, and ends with exactly the planned trials per method."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import run_cli
from support.paths import REPO
from support.slurm import LOCAL_PROFILE
from support.tune import ENV, STANDIN, check_study, write_spec

from dmlbench import rundir
from dmlbench.tune.study import existing_studies

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # real SLURM jobs: minutes, not the edit loop


def test_tune_on_slurm_killed_and_rerun(slurm_cluster: None, tiny_synthshop: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, tiny_synthshop, trials=2, seeds=1, executor={"kind": "slurm", "profile": LOCAL_PROFILE})
    out = tmp_path / "tune"
    env = {**os.environ, **ENV, "STANDIN_RUN_S": "2"}
    cmd = [sys.executable, "-m", "dmlbench", "tune", str(spec), "--runner", STANDIN]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (out / "trials" / "jobs.json").is_file():  # the first job array is queued
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # the queued SLURM jobs live on
    proc.wait()
    in_flight = rundir.read_json(out / "trials" / "jobs.json")
    assert in_flight and all("_" in job for job in in_flight.values())  # SLURM array tasks
    result = run_cli("tune", str(spec), "--runner", STANDIN, env={**ENV, "STANDIN_RUN_S": "2"}, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming 2 trial(s)" in result.stdout
    check_study(out, ["bdl", "multi-similarity"], trials=2, folds=2, seeds=1)
    jobs = rundir.read_json(out / "trials" / "jobs.json")
    for run_id, job in in_flight.items():
        assert jobs[run_id] == job  # the killed run's queued cells were waited for, not submitted again
    assert len(existing_studies(out)["bdl"]) == 2
