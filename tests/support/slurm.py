"""The real local SLURM cluster in tests: the fixture that skips (or, with DMLBENCH_REQUIRE_SLURM=1 as in
CI, fails) when it is not up, waiting for cells to settle, and a preemption signal sent to one job step."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dmlbench import rundir
from dmlbench.sweep import CellStatus, Sweep, cell_statuses
from support.paths import REPO

LOCAL_PROFILE = str(REPO / "slurm" / "profiles" / "local.yaml")


def cluster_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "sinfo not found: SLURM is not installed (run `slurm/local-cluster up`)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"the SLURM controller does not answer (`scontrol ping`: {ping.stdout.strip() or ping.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    problem = cluster_problem()
    if problem:
        if os.environ.get("DMLBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"DMLBENCH_REQUIRE_SLURM=1 but {problem}")
        pytest.skip(problem)


def wait_for(sweep: Sweep, cells: list, until: Callable[[list[CellStatus]], bool], timeout: float) -> list[CellStatus]:
    end = time.time() + timeout
    while True:
        statuses = cell_statuses(sweep, cells)
        if until(statuses):
            return statuses
        if time.time() > end:
            raise TimeoutError(f"sweep '{sweep.name}' still at {[(s.state, s.job_id) for s in statuses]} after {timeout} s")
        time.sleep(2)


def settled(statuses: list[CellStatus]) -> bool:
    return all(s.state in ("done", "failed") for s in statuses)


def preempt_step0_once(task: str, folder: Path) -> None:
    """Send USR1 to the job step 0 of SLURM task `task` (the cell's Python) and stop scancel as soon as the
    cell in `folder` logs its requeue (see the comment at its first use for why)."""
    job_id = subprocess.run(["squeue", "-h", "-j", task, "-o", "%A"], capture_output=True, text=True).stdout.strip()
    assert job_id, f"cell {task} is no longer running"
    signaller = subprocess.Popen(["scancel", "--signal=USR1", f"{job_id}.0"], stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 120
        while "requeueing" not in (folder / rundir.LOG).read_text():
            assert signaller.poll() in (None, 0), f"scancel failed: {signaller.communicate()[1]}"
            assert time.time() < end and not rundir.is_done(folder), "the cell never logged its preemption"
            time.sleep(0.2)
    finally:
        signaller.terminate()
        signaller.wait()
