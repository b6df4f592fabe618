"""SLURM queries: which of this user's jobs are queued or running (squeue), how finished ones ended
(sacct), and the states in which a job will still run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from dmlbench.errors import SchedulerError

# SLURM states in which a job will still run (or runs): its cell must not be submitted again.
ACTIVE_PENDING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD", "SUSPENDED"})
ACTIVE_RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"})


def run_slurm_command(cmd: list[str], timeout: float = 60) -> str:
    """The command's stdout; SchedulerError (one line) when it fails or the controller does not answer."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{' '.join(cmd[:2])} got no answer within {timeout:g} s: is the SLURM controller up?") from None
    except OSError as err:
        raise SchedulerError(f"cannot run {cmd[0]}: {err.strerror or err}") from None
    if out.returncode != 0:
        detail = (out.stderr.strip() or out.stdout.strip() or f"exit status {out.returncode}").splitlines()
        raise SchedulerError(f"{' '.join(cmd[:2])} failed: {' '.join(line.strip() for line in detail)[:300]}")
    return out.stdout


def slurm_available() -> bool:
    return shutil.which("squeue") is not None


def squeue_states() -> dict[str, str]:
    """Job id (array tasks as ARRAY_TASK) -> state, for this user's queued and running jobs."""
    user = os.environ.get("USER") or run_slurm_command(["id", "-un"]).strip()
    out = run_slurm_command(["squeue", "-r", "-h", "-u", user, "-o", "%i|%T"])
    states: dict[str, str] = {}
    for line in out.splitlines():
        job, _, state = line.partition("|")
        states[job.strip()] = state.strip()
    return states


def sacct_states(job_ids: Sequence[str]) -> dict[str, str]:
    """Final states of finished jobs (array tasks as ARRAY_TASK; tasks that never ran may appear only
    under the array's base id), e.g. CANCELLED, TIMEOUT, FAILED."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    out = run_slurm_command(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(arrays)])
    states: dict[str, str] = {}
    collapsed: dict[str, str] = {}  # tasks that never started share one row: 123_[1-5%4]
    for line in out.splitlines():
        job, _, state = line.partition("|")
        value = state.split()[0] if state.strip() else "UNKNOWN"
        for task in expand_task_ids(job.strip()):
            (collapsed if "[" in job else states)[task] = value
    return {**collapsed, **states}


def expand_task_ids(job: str) -> list[str]:
    """sacct/squeue array notation -> one id per task.

    >>> expand_task_ids("123_[0-2,5%4]"), expand_task_ids("123_7"), expand_task_ids("124")
    (['123_0', '123_1', '123_2', '123_5'], ['123_7'], ['124'])
    """
    base, sep, spec = job.partition("_[")
    if not sep:
        return [job]
    tasks: list[str] = []
    for part in spec.rstrip("]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        tasks += [f"{base}_{i}" for i in range(int(first), int(last or first) + 1)]
    return tasks
